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

Compiled programs are kept in ``$LEARNED_OPT_CACHE_DIR`` (default ``~/.cache/learned_opt/jax``;
``off`` turns this off) and loaded by later runs instead of compiled again.
"""

from __future__ import annotations

import os
import sys

from learned_opt.cli.arguments import ESTIMATORS as ESTIMATORS
from learned_opt.cli.arguments import OPTIMIZERS as OPTIMIZERS
from learned_opt.cli.arguments import UsageError as UsageError
from learned_opt.cli.arguments import build_parser as build_parser
from learned_opt.cli.arguments import parse_args as parse_args
from learned_opt.cli.evaluate import evaluate as evaluate
from learned_opt.cli.meta_train import meta_train as meta_train
from learned_opt.compilation_cache import enable_compilation_cache
from learned_opt.meta.checkpoint import CheckpointError
from learned_opt.meta.trainer import MetaTrainingError


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
        try:  # programs compiled by earlier runs are loaded, not compiled again
            enable_compilation_cache()
        except ValueError as e:  # a bad $LEARNED_OPT_CACHE_DIR
            raise UsageError(str(e)) from e
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.showwarning = _show_warning
            {"meta-train": meta_train, "evaluate": evaluate}[args.command](args)
    except UsageError as e:
        if debug:
            raise
        print(f"{prog}: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    except (CheckpointError, MetaTrainingError, OSError) as e:  # failures at run time
        if debug:
            raise
        print(f"{prog}: error: {e}", file=sys.stderr)
        raise SystemExit(1) from None


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"learned-opt: warning: {message}", file=sys.stderr)
