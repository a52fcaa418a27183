"""The ``learned-opt`` command line: ``meta-train`` and ``evaluate``.

Examples::

    learned-opt meta-train --family mlp --meta-steps 300 --out runs/digits
    learned-opt meta-train --config docs/examples/digits.toml   # the same options from TOML
    learned-opt meta-train --out runs/digits --resume            # continue a stopped run
    learned-opt evaluate runs/digits/optimizer.msgpack --family mlp --steps 100

Every argument is checked before anything is written. Exit status: 0 on success; 2 for bad
usage, with one line on stderr naming the argument and what was expected; 1 for a failure at
run time (no intact checkpoint to resume from, meta-training that cannot go on, a full disk).
``--debug`` shows the Python traceback instead of the one line.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import shutil
import sys
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal, get_args

#: ``--optimizer`` names: the LSTM optimizer, the Meta-LSTM and the learned rule.
OptimizerName = Literal["lstm", "meta_lstm", "rule"]
#: ``--estimator`` names: truncated backprop and PES.
EstimatorName = Literal["tbptt", "pes"]
OPTIMIZERS: tuple[OptimizerName, ...] = get_args(OptimizerName)
ESTIMATORS: tuple[EstimatorName, ...] = get_args(EstimatorName)

#: What a ``meta-train`` writes in ``--out`` (and ``--overwrite`` removes).
RUN_FILES = (
    "config.json",
    "metrics.jsonl",
    "checkpoints",
    "optimizer.msgpack",
    "optimizer_last.msgpack",
    "meta_training.png",
)
#: Architecture flags -> constructor fields, and the optimizers that have them.
_ARCHITECTURE_FLAGS = {
    "hidden_size": ("--hidden-size", ("lstm", "meta_lstm")),
    "layers": ("--layers", ("lstm",)),
    "momentum_size": ("--momentum-size", ("lstm",)),
    "output_scale": ("--output-scale", ("lstm",)),
    "normalized_inputs": ("--normalized-inputs", ("lstm",)),
    "no_loss_input": ("--no-loss-input", ("lstm", "meta_lstm")),
}
#: Library argument names -> the flag that sets them (to name the flag in errors).
_FLAGS = {
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


class UsageError(Exception):
    """Bad usage of the command line: one line on stderr and exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise UsageError(message.removeprefix("argument "))


def _number(kind: type, minimum: float | None = None, exclusive: bool = False) -> Callable:
    """An argparse type: an int or float (at least, or above, ``minimum``)."""
    bound = "" if minimum is None else f" {'>' if exclusive else '>='} {minimum}"
    expected = f"expected {'an integer' if kind is int else 'a finite number'}{bound}"

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{expected}, got {text!r}") from None
        low_ok = minimum is None or (value > minimum if exclusive else value >= minimum)
        if not (math.isfinite(value) and low_ok):
            raise argparse.ArgumentTypeError(f"{expected}, got {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


def _horizon(text: str) -> int | tuple[int, int]:
    """``N`` or ``LOW:HIGH`` (random horizons)."""
    parts = text.split(":")
    if len(parts) not in (1, 2):
        raise argparse.ArgumentTypeError(f"expected N or LOW:HIGH (integers), got {text!r}")
    values = tuple(_number(int, 1)(p) for p in parts)
    return values[0] if len(values) == 1 else values


def _value(text: str) -> Any:
    """Parses an option value: JSON scalars, or comma-separated lists of them as a tuple."""
    if "," in text:
        return tuple(_value(t) for t in text.split(",") if t)
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _options(pairs: list[str], flag: str) -> dict[str, Any]:
    options = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"{flag}: expected NAME=VALUE, got {pair!r}")
        options[name.strip()] = _value(text.strip())
    return options


@contextlib.contextmanager
def _blame(flag: str | None = None) -> Iterator[None]:
    """Turns a library ``ValueError``/``TypeError`` into a usage error naming the flag.

    Without ``flag``, the flag is looked up from the argument the message names.
    """
    try:
        yield
    except (ValueError, TypeError) as e:
        message = str(e)
        name = message.split(":", 1)[0]
        where = flag or _FLAGS.get(name)
        if where is None:
            raise UsageError(message) from e
        if where in _FLAGS.values():
            message = message.split(": ", 1)[-1]
        raise UsageError(f"{where}: {message}") from e


def _add_family(p: argparse.ArgumentParser) -> None:
    p.add_argument("--family", default="mlp", help="task family (quadratic, mlp, conv, ...)")
    p.add_argument(
        "--family-option",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="family option, repeatable (e.g. dataset=mnist, hidden_sizes=20,20); every "
        "constructor option of the family; in a --config file, the [family_options] table",
    )
    p.add_argument("--debug", action="store_true", help="show the traceback of an error")


def build_parser() -> argparse.ArgumentParser:
    """The ``learned-opt`` argument parser (its errors raise :class:`UsageError`)."""
    parser = _Parser(prog="learned-opt", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    train = sub.add_parser(
        "meta-train",
        help="meta-train a learned optimizer on a task family",
        description="Meta-train a learned optimizer. Defaults equal the library's except "
        "where an option's help says why.",
    )
    train.add_argument(
        "--config",
        type=Path,
        help="TOML file with any of these options (command-line options override it), plus "
        "[family_options] and [optimizer_options] tables; see docs/examples/digits.toml",
    )
    _add_family(train)
    train.add_argument("--optimizer", choices=OPTIMIZERS, default="lstm")
    arch = "(default: the optimizer's own)"
    train.add_argument("--hidden-size", type=_number(int, 1), help=f"hidden units {arch}")
    train.add_argument("--layers", type=_number(int, 1), help=f"LSTM layers, lstm {arch}")
    train.add_argument(
        "--momentum-size", type=_number(int, 0), help=f"momentum LSTM units, lstm {arch}"
    )
    train.add_argument("--output-scale", type=_number(float), help=f"lstm output scale {arch}")
    train.add_argument(
        "--normalized-inputs",
        action="store_true",
        default=None,
        help="lstm: add RNNprop inputs g/sqrt(v), m/sqrt(v)",
    )
    train.add_argument(
        "--no-loss-input", action="store_true", default=None, help="do not feed the loss"
    )
    train.add_argument(
        "--optimizer-option",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="any constructor option of the optimizer, repeatable (e.g. input_bias=-1,0 "
        "for meta_lstm); in a --config file, the [optimizer_options] table",
    )
    train.add_argument(
        "--random-scaling",
        type=_number(float, 0.0),
        default=0.0,
        metavar="S",
        help="meta-train on the family with each coordinate rescaled by exp(U[-S, S]) "
        "(Lv et al. 2017); validation uses the unscaled family",
    )
    train.add_argument(
        "--init-from",
        metavar="FILE",
        help="start from this optimizer file (or a pretrained name): its architecture and "
        "weights replace the architecture options above",
    )
    train.add_argument("--meta-steps", type=_number(int, 0), default=300)
    train.add_argument("--unroll", type=_number(int, 1), default=20, help="steps per truncation")
    train.add_argument(
        "--horizon",
        type=_horizon,
        default=100,
        metavar="N|LOW:HIGH",
        help="inner steps before a task resets, a multiple of --unroll; LOW:HIGH draws each "
        "run's horizon log-uniformly (random horizons)",
    )
    train.add_argument("--tasks", type=_number(int, 1), default=8, help="tasks per meta-step")
    train.add_argument("--estimator", choices=ESTIMATORS, default="tbptt")
    train.add_argument(
        "--task-chunk",
        type=_number(int, 1),
        help="tasks run at once (lax.map over chunks), a divisor of --tasks; default 1 on "
        "CPU (differs from the library's all-at-once vmap: one task at a time is faster on "
        "CPU), all on accelerators",
    )
    train.add_argument("--pes-std", type=_number(float, 0.0, exclusive=True), default=0.01)
    train.add_argument("--second-order", action="store_true")
    train.add_argument(
        "--meta-loss",
        choices=("sum", "log_mean"),
        default="log_mean",
        help="default log_mean (the library's default is L2L's sum): the mean log-loss "
        "weighs every phase of a run alike whatever the family's loss scale",
    )
    train.add_argument(
        "--meta-lr",
        type=_number(float, 0.0, exclusive=True),
        default=3e-3,
        help="Adam's learning rate, default 3e-3 (the library's default Adam uses 1e-3): "
        "the rate the shipped optimizers were meta-trained with (docs/pretrained.md)",
    )
    train.add_argument(
        "--clip-norm",
        type=_number(float, 0.0, exclusive=True),
        default=1.0,
        help="clip the meta-gradient to this global norm",
    )
    train.add_argument(
        "--max-task-grad-norm",
        type=_number(float, 0.0, exclusive=True),
        default=1e6,
        help="mask a task whose meta-gradient norm exceeds this",
    )
    train.add_argument("--seed", type=_number(int, 0), default=0)
    train.add_argument("--out", type=Path, default=Path("runs/latest"))
    train.add_argument("--checkpoint-every", type=_number(int, 1), default=50)
    train.add_argument(
        "--validate-every",
        type=_number(int, 0),
        default=50,
        help="meta-steps between validations on held-out training tasks; the best meta-"
        "parameters are saved as optimizer.msgpack (0: save the last ones)",
    )
    train.add_argument("--validate-tasks", type=_number(int, 1), default=32)
    resume = train.add_mutually_exclusive_group()
    resume.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from its newest intact checkpoint (the same "
        "settings are required)",
    )
    resume.add_argument(
        "--overwrite",
        action="store_true",
        help="remove the run files already in --out (config, metrics, checkpoints, "
        "optimizer files, plot) before starting",
    )
    train.add_argument("--no-progress", action="store_true")
    train.add_argument(
        "--distributed",
        action="store_true",
        help="call jax.distributed.initialize() first (multi-host GPU/TPU)",
    )

    ev = sub.add_parser("evaluate", help="compare a trained optimizer with tuned baselines")
    ev.add_argument("optimizer_file", help="an optimizer file or a pretrained name")
    _add_family(ev)
    ev.add_argument("--steps", type=_number(int, 1), default=100)
    ev.add_argument(
        "--loss-scale",
        type=_number(float, 0.0, exclusive=True),
        default=1.0,
        help="multiply the tasks' loss",
    )
    ev.add_argument("--tasks", type=_number(int, 1), default=100, help="held-out test tasks")
    ev.add_argument(
        "--tune-tasks", type=_number(int, 1), default=16, help="training tasks for lr tuning"
    )
    ev.add_argument("--baselines", default="adam,sgd,rmsprop,nag")
    ev.add_argument("--seed", type=_number(int, 0), default=0)
    ev.add_argument(
        "--out", type=Path, help="directory for the PNG and JSON (default: beside the file)"
    )
    return parser


def _subparser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    return parser._subparsers._group_actions[0].choices[command]


def _config_value(action: argparse.Action, value: Any) -> Any:
    """A TOML value checked as the command line would check the same option."""
    if action.nargs == 0:  # a flag
        if not isinstance(value, bool):
            raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")
        return value
    if action.dest == "horizon" and isinstance(value, list):
        value = ":".join(str(v) for v in value)
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise argparse.ArgumentTypeError(f"expected a single value, got {value!r}")
    value = action.type(str(value)) if action.type is not None else str(value)
    if action.choices is not None and value not in action.choices:
        choices = ", ".join(map(repr, action.choices))
        raise argparse.ArgumentTypeError(f"expected one of {choices}, got {value!r}")
    return value


def _read_config(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise UsageError(f"--config: no such file {path}")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"--config: {path} is not valid TOML ({e})") from e
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"--config: cannot read {path} ({e})") from e


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Parses ``argv``, applying a ``--config`` TOML file (the command line overrides it)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.family_options = _options(args.family_option, "--family-option")
    args.optimizer_options = (
        _options(args.optimizer_option, "--optimizer-option")
        if args.command == "meta-train"
        else {}
    )
    if getattr(args, "config", None) is None:
        return args
    config = _read_config(args.config)
    tables = {}
    for table in ("family_options", "optimizer_options"):
        tables[table] = config.pop(table, {})
        if not isinstance(tables[table], dict):
            raise UsageError(f"--config: {args.config}: [{table}] must be a table")
    sub = _subparser(parser, args.command)
    actions = {a.dest: a for a in sub._actions if a.dest not in ("help", "config")}
    actions.pop("family_option")
    actions.pop("optimizer_option")
    defaults = {}
    for name, value in config.items():
        dest = name.replace("-", "_")
        if dest not in actions:
            known = ", ".join(sorted(actions) + list(tables))
            raise UsageError(f"--config: {args.config}: unknown option {name!r}; known: {known}")
        try:
            defaults[dest] = _config_value(actions[dest], value)
        except argparse.ArgumentTypeError as e:
            raise UsageError(f"--config: {args.config}: {name}: {e}") from e
    sub.set_defaults(**defaults)
    args = parser.parse_args(argv)  # command-line options override the file
    args.family_options = tables["family_options"] | _options(args.family_option, "--family-option")
    args.optimizer_options = tables["optimizer_options"] | _options(
        args.optimizer_option, "--optimizer-option"
    )
    return args


# --- building the pieces (every constructor validates its arguments) -------------------------


def _tuples(options: dict[str, Any]) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}


def _family(args: argparse.Namespace):
    import learned_opt as lo

    if args.family not in lo.tasks.FAMILIES:
        known = sorted(lo.tasks.FAMILIES)
        raise UsageError(f"--family: unknown {args.family!r}; known: {known}")
    with _blame("--family-option"):
        return lo.tasks.get_family(args.family, **_tuples(args.family_options))


def _architecture_options(args: argparse.Namespace) -> dict[str, Any]:
    """The architecture flags given, as constructor options (refused where they do not apply)."""
    given = {k: getattr(args, k) for k in _ARCHITECTURE_FLAGS if getattr(args, k) is not None}
    for name in given:
        flag, optimizers = _ARCHITECTURE_FLAGS[name]
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


def _make_optimizer(args: argparse.Namespace):
    import learned_opt as lo

    classes = {
        "lstm": lo.LSTMOptimizer,
        "meta_lstm": lo.MetaLSTMOptimizer,
        "rule": lo.LearnedRule,
    }
    options = _architecture_options(args)
    extra = _tuples(args.optimizer_options)
    cls = classes[args.optimizer]
    with _blame():
        try:
            return cls(**{**extra, **options})  # the flags override the options
        except TypeError as e:
            if "unexpected keyword" not in str(e):
                raise
            raise UsageError(f"--optimizer-option: {cls.__name__}: {e}") from e


def _load_optimizer(source: str, flag: str):
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


def _check_out_is_a_folder(out: Path | None) -> None:
    if out is not None and out.exists() and not out.is_dir():
        raise UsageError(f"--out: {out} is a file, expected a folder")


def _file_digest(path: str) -> str:
    return "sha256:" + hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _run_config(args: argparse.Namespace) -> dict[str, Any]:
    """What defines a command-line run beyond the trainer's own configuration."""
    init = None
    if args.init_from is not None:
        init = _file_digest(args.init_from) if Path(args.init_from).is_file() else args.init_from
    return {
        "seed": args.seed,
        "meta_optimizer": {"name": "adam", "learning_rate": args.meta_lr},
        "validation": {"every": args.validate_every, "tasks": args.validate_tasks},
        "init_from": init,
    }


def _make_trainer(args: argparse.Namespace, optimizer, family):
    import jax
    import optax

    import learned_opt as lo

    train_family = family
    if args.random_scaling:
        with _blame("--random-scaling"):
            train_family = lo.tasks.RandomScaling(family, args.random_scaling)
    chunk = args.task_chunk
    if chunk is None and jax.default_backend() == "cpu":
        chunk = 1
    with _blame():
        if args.estimator == "pes":
            estimator = lo.PES(
                args.unroll, args.horizon, args.meta_loss, std=args.pes_std, task_chunk=chunk
            )
        else:
            estimator = lo.TruncatedBackprop(
                args.unroll,
                args.horizon,
                args.meta_loss,
                second_order=args.second_order,
                task_chunk=chunk,
            )
        return lo.MetaTrainer(
            optimizer,
            train_family,
            estimator,
            optax.adam(args.meta_lr),
            num_tasks=args.tasks,
            clip_norm=args.clip_norm,
            max_task_grad_norm=args.max_task_grad_norm,
            run_config=_run_config(args),
        )


def _existing_run(out: Path) -> list[str]:
    return [name for name in RUN_FILES if (out / name).exists()]


def _check_out(args: argparse.Namespace, config: dict[str, Any]) -> None:
    """Refuses an ``--out`` holding another run, or a resume of a run with other settings."""
    from learned_opt.meta.checkpoint import config_differences

    out: Path = args.out
    _check_out_is_a_folder(out)
    existing = _existing_run(out) if out.is_dir() else []
    if not existing or args.overwrite:
        return
    if not args.resume:
        raise UsageError(
            f"--out: {out} holds another run ({', '.join(existing)}); pass --resume to "
            f"continue it or --overwrite to replace it"
        )
    stored_path = out / "config.json"
    if not stored_path.is_file():
        raise UsageError(
            f"--resume: {out} holds run files but no config.json to check them against; "
            f"pass --overwrite to replace them"
        )
    try:
        stored = json.loads(stored_path.read_text())
    except (ValueError, OSError) as e:
        raise UsageError(f"--resume: {stored_path} is unreadable ({e})") from e
    names = ("the run", "this command")
    differences = config_differences(stored, json.loads(json.dumps(config)), names)
    if differences:
        raise UsageError(
            f"--resume: {out} holds a run with other settings: {'; '.join(differences)}"
        )


def meta_train(args: argparse.Namespace) -> None:
    """``learned-opt meta-train``: validates everything, then writes and runs."""
    if args.distributed:
        import jax

        jax.distributed.initialize()
    import jax

    import learned_opt as lo
    from learned_opt._files import atomic_write_bytes
    from learned_opt.meta import checkpoint

    family = _family(args)
    initial = None
    if args.init_from is not None:
        _architecture_options(args)  # refuses architecture options beside --init-from
        optimizer, initial = _load_optimizer(args.init_from, "--init-from")
    else:
        optimizer = _make_optimizer(args)
    trainer = _make_trainer(args, optimizer, family)
    config = trainer.config()
    _check_out(args, config)
    out: Path = args.out
    ckpt_dir, log_path = out / "checkpoints", out / "metrics.jsonl"
    with _blame():  # the estimator checks the tasks against task_chunk and the devices
        jax.eval_shape(trainer.initial_state, jax.random.key(0))
    state = None
    if args.resume and checkpoint.steps(ckpt_dir):
        state = trainer.restore_checkpoint(ckpt_dir)
        if int(state.step) > args.meta_steps:
            raise UsageError(
                f"--meta-steps: expected at least the {int(state.step)} meta-steps the run in "
                f"{out} has taken, got {args.meta_steps}"
            )
        print(f"resumed from meta-step {int(state.step)} ({ckpt_dir})", file=sys.stderr)

    # Everything is checked: from here on the run writes.
    if args.overwrite:
        for name in _existing_run(out):
            target = out / name
            shutil.rmtree(target) if target.is_dir() else target.unlink()
    if state is None:
        state = trainer.init(jax.random.key(args.seed), initial)
    atomic_write_bytes(out / "config.json", json.dumps(config, indent=2, sort_keys=True).encode())
    t0 = time.perf_counter()
    state = trainer.run(
        state,
        args.meta_steps,
        checkpoint_dir=ckpt_dir,
        checkpoint_every=args.checkpoint_every,
        log_path=log_path,
        progress=not args.no_progress,
        callback=_keep_best(args, trainer, family, out / "optimizer.msgpack", log_path),
    )
    last = jax.device_get(state.meta_params)
    lo.save(out / "optimizer_last.msgpack", optimizer, last)
    if not args.validate_every:
        lo.save(out / "optimizer.msgpack", optimizer, last)
    metrics = [json.loads(line) for line in log_path.read_text().splitlines()]
    if metrics:
        from learned_opt.plotting import plot_meta_training

        plot_meta_training(metrics, out / "meta_training.png")
    validations = [m["validation"] for m in metrics if "validation" in m]
    print(
        json.dumps(
            {
                "optimizer_file": str(out / "optimizer.msgpack"),
                "meta_steps": int(state.step),
                "seconds": round(time.perf_counter() - t0, 1),
                "final_meta_loss": metrics[-1]["meta_loss"] if metrics else None,
                "best_validation": min(validations, default=None),
                "masked_tasks": int(sum(m["masked_tasks"] for m in metrics)),
            }
        )
    )


def _keep_best(args, trainer, family, path: Path, log_path: Path):
    """A ``MetaTrainer.run`` callback: validate every ``args.validate_every`` meta-steps.

    Validation trains ``args.validate_tasks`` tasks of ``family``'s training split (without any
    random scaling) for one horizon with the current meta-parameters and takes the median
    final loss; the best meta-parameters so far are saved to ``path``. Test tasks (the
    ``"test"`` split of ``evaluate``) are never used.
    """
    if not args.validate_every:
        return None
    import jax
    import numpy as np

    import learned_opt as lo
    from learned_opt import evaluation

    keys = evaluation.task_keys(args.seed, args.validate_tasks, "train")
    horizon = args.horizon if isinstance(args.horizon, int) else args.horizon[1]
    logged = [json.loads(x) for x in log_path.read_text().splitlines()] if log_path.exists() else []
    best = min((m["validation"] for m in logged if "validation" in m), default=np.inf)

    def callback(step, metrics, state):
        nonlocal best
        if step % args.validate_every and step != args.meta_steps:
            return None
        meta_params = jax.device_get(state.meta_params)
        curves = evaluation.learned_curves(family, trainer.optimizer, meta_params, keys, horizon)
        value = float(np.median(np.where(np.isfinite(curves.final), curves.final, np.inf)))
        if value < best or not path.exists():
            best = min(best, value)
            lo.save(path, trainer.optimizer, meta_params)
        return {"validation": value}

    return callback


def evaluate(args: argparse.Namespace) -> None:
    """``learned-opt evaluate``: the learned optimizer against tuned baselines."""
    import learned_opt as lo
    from learned_opt import evaluation
    from learned_opt.plotting import plot_loss_curves

    family = _family(args)
    if args.loss_scale != 1.0:
        family = lo.tasks.ScaledLoss(family, args.loss_scale)
    baselines = [b for b in args.baselines.split(",") if b]
    unknown = [b for b in baselines if b not in evaluation.BASELINES]
    if unknown:
        raise UsageError(f"--baselines: unknown {unknown}; known: {sorted(evaluation.BASELINES)}")
    _check_out_is_a_folder(args.out)
    optimizer, meta_params = _load_optimizer(args.optimizer_file, "optimizer_file")
    source = Path(args.optimizer_file)
    out = args.out or (source.parent if source.exists() else Path("."))
    test = evaluation.task_keys(args.seed, args.tasks, "test")
    tune = evaluation.task_keys(args.seed, args.tune_tasks, "train")
    results, curves = {}, {}
    name = f"learned ({type(optimizer).__name__})"
    c = evaluation.train_curves(family, optimizer.as_optax(meta_params), test, args.steps)
    results[name], curves[name] = {"lr": None, **evaluation.summarize(c.final)}, c.losses
    for base in baselines:
        tuned = evaluation.tune_baseline(family, base, tune, args.steps)
        c = evaluation.train_curves(family, tuned.transformation(), test, args.steps)
        results[base] = {**tuned.hyperparams, **evaluation.summarize(c.final)}
        curves[base] = c.losses
    out.mkdir(parents=True, exist_ok=True)
    png = out / f"eval_{family.name}.png"
    plot_loss_curves(curves, png, title=f"{family.name}: {args.tasks} held-out tasks")
    print(f"final loss after {args.steps} steps on {args.tasks} held-out {family.name} tasks")
    print(f"{'optimizer':<28}{'lr':>9}{'median':>11}{'q05':>11}{'q95':>11}{'finite':>8}")
    for n, r in results.items():
        lr = "-" if r["lr"] is None else f"{r['lr']:.0e}"
        print(
            f"{n:<28}{lr:>9}{r['median']:>11.4g}{r['q05']:>11.4g}{r['q95']:>11.4g}"
            f"{r['finite']:>8.0%}"
        )
    (out / f"eval_{family.name}.json").write_text(json.dumps(results, indent=2))
    print(f"wrote {png}")


def main(argv: list[str] | None = None) -> None:
    """Runs the command line; exits 2 for bad usage and 1 for a failure at run time."""
    import warnings

    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv
    command = next((a for a in argv if a in ("meta-train", "evaluate")), None)
    prog = f"learned-opt {command}" if command else "learned-opt"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    try:
        args = parse_args(argv)
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.showwarning = _show_warning
            {"meta-train": meta_train, "evaluate": evaluate}[args.command](args)
    except UsageError as e:
        if debug:
            raise
        print(f"{prog}: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    except _run_time_errors() as e:
        if debug:
            raise
        print(f"{prog}: error: {e}", file=sys.stderr)
        raise SystemExit(1) from None


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"learned-opt: warning: {message}", file=sys.stderr)


def _run_time_errors() -> tuple[type[BaseException], ...]:
    """Failures at run time (exit status 1): damaged checkpoints, stuck meta-training, I/O."""
    from learned_opt.meta.checkpoint import CheckpointError
    from learned_opt.meta.trainer import MetaTrainingError

    return (CheckpointError, MetaTrainingError, OSError)


if __name__ == "__main__":
    main()
