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
training tasks (learning rate over half-decades 1e-4 … 10).

Usage:
    python benchmarks/l2l_ablation.py --results-md benchmarks/RESULTS.md \
        --json-out benchmarks/l2l_ablation.json
    python benchmarks/l2l_ablation.py --quick

One JSON document goes to stdout (and to ``--json-out``); ``--results-md`` rewrites this
benchmark's section of the file, between ``<!-- l2l_ablation:begin -->`` and
``<!-- l2l_ablation:end -->``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import jax

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common
import l2l_study

import learned_opt as lo
from learned_opt import evaluation

BEGIN_MARKER = "<!-- l2l_ablation:begin -->"
END_MARKER = "<!-- l2l_ablation:end -->"
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
    cols = [c for c in l2l_study.mlp_columns("digits") if "dataset shift" not in c.label]
    cols.append(l2l_study.Column("MNIST, 100 steps", "mlp", {"dataset": "mnist"}, 100))
    return cols[:1] if quick else cols


def run(args: argparse.Namespace) -> dict[str, Any]:
    stages = {name: load_stage(name) for name in STAGES}
    test = evaluation.task_keys(args.seed, args.tasks, "test")
    tune = evaluation.task_keys(args.seed, args.tune_tasks, "train")
    rows, skipped = [], []
    for column in columns(args.quick):
        if (missing := l2l_study.missing_dataset(column)) is not None:
            skipped.append(f"{column.label}: dataset {missing!r} is not installed")
            continue
        family = l2l_study.make_family(column)
        steps = column.steps if not args.quick else 5
        row = {"label": column.label, "steps": steps, "results": {}}
        for name, (optimizer, meta_params) in stages.items():
            curves = evaluation.learned_curves(family, optimizer, meta_params, test, steps)
            row["results"][name] = evaluation.summarize(curves.final)
        adam = evaluation.tune_baseline(family, "adam", tune, steps, args.grid)
        curves = evaluation.train_curves(family, adam.transformation(), test, steps)
        row["results"]["adam"] = {**adam.hyperparams, **evaluation.summarize(curves.final)}
        print(f"{column.label}: " + ", ".join(
            f"{k} {v['median']:.4g}" for k, v in row["results"].items()
        ), file=sys.stderr, flush=True)  # fmt: skip
        rows.append(row)
    return {
        "machine": {"cpu": common.cpu_model(), "backend": jax.default_backend()},
        "tasks": args.tasks,
        "tune_tasks": args.tune_tasks,
        "rows": rows,
        "skipped": skipped,
    }


def render_markdown(result: dict[str, Any], command: str) -> str:
    header = ["problem", "steps", *STAGES.values(), "Adam (tuned)"]
    lines = [
        BEGIN_MARKER,
        "## What each change to meta-training did (benchmarks/l2l_ablation.py)",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {result['machine']['cpu']}, backend {result['machine']['backend']}. The "
        "four stages of the digits optimizer (the commands are in the script's docstring), "
        f"untuned, on the same {result['tasks']} held-out tasks; Adam tuned per problem on "
        f"{result['tune_tasks']} training tasks. Cells: median [5th, 95th percentile] of the "
        "final loss; bold marks the lowest median of each row.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for row in result["rows"]:
        r = row["results"]
        best = min(r, key=lambda k: r[k]["median"])
        cells = []
        for name in [*STAGES, "adam"]:
            cell = l2l_study._cell(r[name])
            cells.append(f"**{cell}**" if name == best else cell)
        lines.append(f"| {row['label']} | {row['steps']} | " + " | ".join(cells) + " |")
    if result["skipped"]:
        lines += ["", "Skipped (data not installed): " + "; ".join(result["skipped"]) + "."]
    lines += ["", END_MARKER]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", type=int, default=100)
    p.add_argument("--tune-tasks", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="smoke test: 4 tasks, 5 steps")
    p.add_argument("--json-out", type=Path)
    p.add_argument("--results-md", type=Path)
    args = p.parse_args(argv)
    args.grid = evaluation.DEFAULT_GRID
    if args.quick:
        args.tasks, args.tune_tasks, args.grid = 4, 2, (1e-2, 1e-1)
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    t0 = time.perf_counter()
    result = run(args)
    result["seconds"] = time.perf_counter() - t0
    common.emit_json(result, args.json_out)
    if args.results_md:
        command = "python benchmarks/l2l_ablation.py " + " ".join(argv or sys.argv[1:])
        section = render_markdown(result, command)
        common.write_section(args.results_md, section, BEGIN_MARKER, END_MARKER)
    return result


if __name__ == "__main__":
    main()
