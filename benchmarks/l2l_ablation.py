"""What each change to meta-training did: four stages of the digits optimizer, side by side.

Each stage is one change to the L2L recipe, trained with the command below; the first three
files are kept in ``benchmarks/weights/``, the last ships as ``lo.pretrained("lstm_digits")``:

1. ``digits_l2l`` (the L2L paper's optimizer: log/sign gradient and loss inputs)::

       learned-opt meta-train --family mlp --meta-steps 200 --out runs/digits_l2l

2. ``digits_norm``: + the RNNprop inputs g/√v̂, m̂/√v̂ of Lv et al. (2017)::

       learned-opt meta-train --family mlp --meta-steps 300 --normalized-inputs \
           --out runs/digits_norm

3. ``digits_2l``: + 150 meta-steps on two-hidden-layer networks, from stage 2 (a broader
   training family)::

       learned-opt meta-train --family mlp --family-option hidden_sizes=20,20 \
           --init-from runs/digits_norm/optimizer.msgpack --meta-steps 150 --out runs/digits_2l

4. ``lstm_digits``: + 150 more meta-steps with every coordinate of the two-layer networks
   rescaled at random by exp(U[-3, 3]), from stage 3 (the random scaling of Lv et al. 2017)::

       learned-opt meta-train --family mlp --family-option hidden_sizes=20,20 \
           --random-scaling 3 --init-from runs/digits_2l/optimizer.msgpack --meta-steps 150 \
           --out runs/lstm_digits

Every stage is evaluated untuned on the same 100 held-out tasks of the L2L columns (on the
digits, plus MNIST at 100 steps when it is installed), next to Adam tuned per column on
training tasks (learning rate over half-decades 1e-4 … 10): one ``lo.evaluation.compare`` per
column, each stage's ratio of medians to tuned Adam with a paired bootstrap interval.

Usage:
    python benchmarks/l2l_ablation.py
    python benchmarks/l2l_ablation.py --quick --results-dir /tmp/smoke/results

It writes ``benchmarks/results/l2l_ablation.json`` (``--results-dir``); ``python
benchmarks/render.py`` then rewrites its section of RESULTS.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common
import l2l_study

import learned_opt as lo
from learned_opt import evaluation

SECTION = "l2l_ablation"
WEIGHTS = Path(__file__).resolve().parent / "weights"
STAGES = {
    "digits_l2l": "1. L2L inputs (log/sign gradient, loss)",
    "digits_norm": "2. + RNNprop inputs",
    "digits_2l": "3. + two-layer networks",
    "lstm_digits": "4. + random scaling (shipped)",
}


def load_stage(name: str):
    path = WEIGHTS / f"{name}.msgpack"
    return lo.load(path) if path.exists() else lo.load_pretrained(name)


def columns(quick: bool) -> list[l2l_study.Column]:
    cols = [c for c in l2l_study.SUITES["lstm_digits"]() if "dataset shift" not in c.label]
    cols.append(l2l_study.Column("MNIST, 100 steps", "mlp", {"dataset": "mnist"}, 100))
    return cols[:1] if quick else cols


def run(args: argparse.Namespace) -> dict[str, Any]:
    stages = {name: load_stage(name) for name in STAGES}
    rows, skipped = [], []
    for column in columns(args.quick):
        if (missing := l2l_study.missing_dataset(column)) is not None:
            skipped.append(f"{column.label}: dataset {missing!r} is not installed")
            continue
        comparison = evaluation.compare(
            l2l_study.make_family(column),
            column.steps if not args.quick else 5,
            stages,
            tune_keys=evaluation.task_keys(args.seed, args.tune_tasks, "train"),
            test_keys=evaluation.task_keys(args.seed, args.tasks, "test"),
            baselines=("adam",),
            grid=args.grid,
            tune_learned=False,
        )
        print(f"{column.label}: " + ", ".join(
            f"{k} {v.median:.4g}" for k, v in comparison.runs.items()
        ), file=sys.stderr, flush=True)  # fmt: skip
        rows.append({"label": column.label, "comparison": comparison.to_dict()})
    return {
        "command": common.command_line("benchmarks/l2l_ablation.py", args.argv),
        "machine": common.machine(),
        "stages": STAGES,
        "settings": {
            "tasks": args.tasks,
            "tune_tasks": args.tune_tasks,
            "seed": args.seed,
            "quick": args.quick,
        },
        "columns": rows,
        "skipped": skipped,
    }


def render(doc: dict[str, Any]) -> str:
    """The Markdown body of this benchmark's section of RESULTS.md."""
    columns = l2l_study.comparisons(doc)
    stages = doc["stages"]
    header = ["problem", "steps", *stages.values(), "Adam (tuned)"]
    lines = [
        "## What each change to meta-training did (benchmarks/l2l_ablation.py)",
        "",
        f"Command: `{doc['command']}`",
        "",
        f"{common.machine_line(doc['machine'])} The four stages of the digits optimizer (the "
        "commands are in the script's docstring), untuned, on the same "
        f"{doc['settings']['tasks']} held-out tasks; Adam tuned per problem on "
        f"{doc['settings']['tune_tasks']} training tasks. Cells: median [5th, 95th percentile] "
        "of the final loss, then the stage's ratio of medians to tuned Adam with its paired "
        "bootstrap interval (*win*/*loss* only where the interval excludes 1).",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for column, c in columns:
        cells = [f"{c.runs[n].cell()}<br>{c.ratio(n, 'adam').cell()}" for n in stages]
        cells.append(f"{c.runs['adam'].cell()}<br>{c.runs['adam'].hyperparams_cell()}")
        lines.append(f"| {column['label']} | {c.num_steps} | " + " | ".join(cells) + " |")
    if not l2l_study.has_intervals([c for _, c in columns]):
        lines += ["", l2l_study.no_interval_note("ablation results")]
    if doc["skipped"]:
        lines += ["", "Skipped (data not installed): " + "; ".join(doc["skipped"]) + "."]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", type=int, default=100)
    p.add_argument("--tune-tasks", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="smoke test: 4 tasks, 5 steps")
    p.add_argument("--results-dir", type=Path, default=common.RESULTS_DIR)
    args = p.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else argv
    args.grid = evaluation.DEFAULT_GRID
    if args.quick:
        args.tasks, args.tune_tasks, args.grid = 4, 2, (1e-2, 1e-1)
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    t0 = time.perf_counter()
    doc = run(args)
    doc["seconds"] = time.perf_counter() - t0
    common.emit_json(doc, args.results_dir / f"{SECTION}.json")
    return doc


if __name__ == "__main__":
    main()
