"""The ``learned-opt`` arguments: the parser, typed values and ``--config`` TOML files."""

from __future__ import annotations

import argparse
import json
import math
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, get_args

#: ``--optimizer`` names: the LSTM optimizer, the Meta-LSTM and the learned rule.
OptimizerName = Literal["lstm", "meta_lstm", "rule"]
#: ``--estimator`` names: truncated backprop and PES.
EstimatorName = Literal["tbptt", "pes"]
OPTIMIZERS: tuple[OptimizerName, ...] = get_args(OptimizerName)
ESTIMATORS: tuple[EstimatorName, ...] = get_args(EstimatorName)


class UsageError(Exception):
    """Bad usage of the command line: one line on stderr and exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise UsageError(message.removeprefix("argument "))


def _number(kind: type, minimum: float | None = None, exclusive: bool = False) -> Callable:
    """An argparse type: an int (``>= minimum``) or a finite float (above or at ``minimum``).

    The messages read like the library's: ``expected an integer >= 1``, ``expected a finite
    number > 0.0``.
    """
    if kind is int:
        expected = "expected an integer" + ("" if minimum is None else f" >= {minimum}")
    elif minimum is None:
        expected = "expected a finite number"
    else:
        expected = f"expected a finite number {'>' if exclusive else '>='} {float(minimum)}"

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
    parser = _Parser(
        prog="learned-opt",
        description="Meta-train learned optimizers and compare them with tuned baselines.",
    )
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
        help="call jax.distributed.initialize() first (several hosts); JAX finds the "
        "coordinator, the number of processes and this process's id on Cloud TPU and under "
        "SLURM or Open MPI, elsewhere give them with the next three options",
    )
    train.add_argument(
        "--coordinator",
        metavar="HOST:PORT",
        help="address of process 0, the same on every host (implies --distributed)",
    )
    train.add_argument(
        "--num-processes",
        type=_number(int, 1),
        help="how many processes take part, one a host (implies --distributed)",
    )
    train.add_argument(
        "--process-id",
        type=_number(int, 0),
        help="this process's id, 0 to --num-processes - 1; process 0 writes the run's files "
        "(implies --distributed)",
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
    ev.add_argument(
        "--no-tune-step-size",
        action="store_true",
        help="run the learned optimizer only with its own step size (by default it also runs "
        "with its step size tuned on the same grid and tasks as Adam's learning rate)",
    )
    ev.add_argument("--seed", type=_number(int, 0), default=0)
    ev.add_argument(
        "--out", type=Path, help="directory for the PNG and JSON (default: beside the file)"
    )
    return parser


def subparser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    """The parser of ``command`` (a subcommand of ``parser``)."""
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return actions[0].choices[command]


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
    parse: Callable[[str], Any] = action.type if callable(action.type) else str
    value = parse(str(value))
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
    sub = subparser(parser, args.command)
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
