"""The pieces of a command-line run, built from its arguments: every constructor validates, and a
library error becomes a :class:`~learned_opt.cli.arguments.UsageError` naming the flag."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from learned_opt.cli.arguments import UsageError

#: Architecture flags -> constructor fields, and the optimizers that have them.
ARCHITECTURE_FLAGS = {
    "hidden_size": ("--hidden-size", ("lstm", "meta_lstm")),
    "layers": ("--layers", ("lstm",)),
    "momentum_size": ("--momentum-size", ("lstm",)),
    "output_scale": ("--output-scale", ("lstm",)),
    "normalized_inputs": ("--normalized-inputs", ("lstm",)),
    "no_loss_input": ("--no-loss-input", ("lstm", "meta_lstm")),
}
#: Library argument names -> the flag that sets them (to name the flag in errors).
FLAGS = {
    "unroll_length": "--unroll",
    "horizon": "--horizon",
    "meta_loss": "--meta-loss",
    "task_chunk": "--task-chunk",
    "std": "--pes-std",
    "second_order": "--second-order",
    "num_tasks": "--tasks",
    "clip_norm": "--clip-norm",
    "max_task_grad_norm": "--max-task-grad-norm",
    "hidden_size": "--hidden-size",
    "num_layers": "--layers",
    "momentum_size": "--momentum-size",
    "output_scale": "--output-scale",
    "normalized_inputs": "--normalized-inputs",
    "use_loss": "--no-loss-input",
}


@contextlib.contextmanager
def blame(flag: str | None = None) -> Iterator[None]:
    """Turns a library ``ValueError``/``TypeError`` into a usage error naming the flag.

    Without ``flag``, the flag is looked up from the argument the message names.
    """
    try:
        yield
    except (ValueError, TypeError) as e:
        message = str(e)
        name = message.split(":", 1)[0]
        where = flag or FLAGS.get(name)
        if where is None:
            raise UsageError(message) from e
        if where in FLAGS.values():
            message = message.split(": ", 1)[-1]
        raise UsageError(f"{where}: {message}") from e


def tuples(options: dict[str, Any]) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}


def make_family(args: argparse.Namespace):
    import learned_opt as lo

    if args.family not in lo.tasks.FAMILIES:
        known = sorted(lo.tasks.FAMILIES)
        raise UsageError(f"--family: unknown {args.family!r}; known: {known}")
    with blame("--family-option"):
        return lo.tasks.get_family(args.family, **tuples(args.family_options))


def architecture_options(args: argparse.Namespace) -> dict[str, Any]:
    """The architecture flags given, as constructor options (refused where they do not apply)."""
    given = {k: getattr(args, k) for k in ARCHITECTURE_FLAGS if getattr(args, k) is not None}
    for name in given:
        flag, optimizers = ARCHITECTURE_FLAGS[name]
        if args.init_from is not None:
            raise UsageError(f"{flag}: not allowed with --init-from (the file sets it)")
        if args.optimizer not in optimizers:
            raise UsageError(f"{flag}: not an option of --optimizer {args.optimizer}")
    if args.init_from is not None and args.optimizer_options:
        raise UsageError("--optimizer-option: not allowed with --init-from (the file sets them)")
    renamed = {"layers": "num_layers", "no_loss_input": "use_loss"}
    options = {renamed.get(k, k): v for k, v in given.items()}
    if "use_loss" in options:
        options["use_loss"] = not options["use_loss"]
    return options


def make_optimizer(args: argparse.Namespace):
    import learned_opt as lo

    classes = {
        "lstm": lo.LSTMOptimizer,
        "meta_lstm": lo.MetaLSTMOptimizer,
        "rule": lo.LearnedRule,
    }
    options = architecture_options(args)
    extra = tuples(args.optimizer_options)
    cls = classes[args.optimizer]
    with blame():
        try:
            return cls(**{**extra, **options})  # the flags override the options
        except TypeError as e:
            if "unexpected keyword" not in str(e):
                raise
            raise UsageError(f"--optimizer-option: {cls.__name__}: {e}") from e


def load_optimizer(source: str, flag: str):
    """``(optimizer, meta_params)`` from a file, or from a pretrained name if no such file."""
    import learned_opt as lo

    path = Path(source)
    if not path.exists():
        if source in lo.list_pretrained():
            return lo.load_pretrained(source)
        raise UsageError(
            f"{flag}: no such file or pretrained optimizer {source!r}; pretrained: "
            f"{lo.list_pretrained()}"
        )
    if not path.is_file():
        raise UsageError(f"{flag}: {path} is a folder, expected an optimizer file")
    try:
        return lo.load(path)
    except (ValueError, OSError) as e:
        raise UsageError(f"{flag}: {e}") from e


def check_out_is_a_folder(out: Path | None) -> None:
    if out is not None and out.exists() and not out.is_dir():
        raise UsageError(f"--out: {out} is a file, expected a folder")
