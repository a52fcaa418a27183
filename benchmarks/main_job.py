"""The README's main job at several seeds: does the optimizer it meta-trains beat tuned Adam?

Runs the README's set-up command, ``learned-opt meta-train --family mlp --meta-steps 200``
then ``learned-opt evaluate``, once per meta-training seed (``--seeds``), through the command
line's own entry point. Meta-training keeps the checkpoint with the best median loss on
validation-split tasks; ``evaluate`` tunes every baseline on training-split tasks and reports
on 100 test-split tasks (the three splits never share a task), so the stopping point is chosen
on tasks the result is not reported on. Per seed: the ratio of the learned optimizer's median
final loss to tuned Adam's with its paired bootstrap interval, and the meta-training time.
Also the time to beat Adam, restated: the meta-training seconds to the validation-selected
checkpoint, with its test-task verdict (median over seeds, and the success rate)::

    python benchmarks/main_job.py                    # seeds 0 1 2 (~20 min on 2 cores)
    python benchmarks/main_job.py --quick --results-dir /tmp/job   # smoke test

The document goes to ``benchmarks/results/main_job.json``; ``python benchmarks/render.py``
renders it into RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common

from learned_opt import cli, evaluation

SECTION = "main_job"
#: The README's set-up command, after ``pip install -e . &&`` (the seed and folder added).
META_TRAIN = ["meta-train", "--family", "mlp", "--meta-steps", "200", "--no-progress"]
EVALUATE = ["evaluate", "--family", "mlp"]


def run_seed(seed: int, folder: Path, quick: bool) -> dict[str, Any]:
    """Meta-trains and evaluates at one seed; returns the summary and the comparison."""
    out = folder / f"seed{seed}"
    meta = [*META_TRAIN, "--seed", str(seed), "--out", str(out)]
    evaluate = [*EVALUATE, str(out / "optimizer.msgpack"), "--out", str(out)]
    if quick:
        meta += ["--meta-steps", "4", "--validate-every", "2", "--validate-tasks", "2"]
        evaluate += ["--steps", "10", "--tasks", "8", "--tune-tasks", "2", "--baselines", "adam"]
    t = time.perf_counter()
    cli.main(meta)
    train_seconds = time.perf_counter() - t
    cli.main(evaluate)
    comparison = evaluation.Comparison.from_dict(json.loads((out / "eval_mlp.json").read_text()))
    metrics = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    validated = [m for m in metrics if "validation" in m]
    best = min(validated, key=lambda m: m["validation"])
    # Seconds to the selected checkpoint: the run's wall-clock up to that meta-step.
    per_step = train_seconds / max(m["step"] for m in metrics)
    return {
        "seed": seed,
        "meta_train": [*meta[:-2]],
        "train_seconds": train_seconds,
        "selected_meta_step": best["step"],
        "seconds_to_selected": per_step * best["step"],
        "validation": [[m["step"], m["validation"]] for m in validated],
        "comparison": comparison.to_dict(),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--quick", action="store_true", help="smoke test: 4 meta-steps, 8 tasks")
    p.add_argument("--results-dir", type=Path, default=common.RESULTS_DIR)
    args = p.parse_args(argv)
    t0, cpu0 = time.perf_counter(), time.process_time()
    with tempfile.TemporaryDirectory() as folder:
        seeds = [run_seed(s, Path(folder), args.quick) for s in args.seeds]
    doc = {
        "command": common.command_line("benchmarks/main_job.py", argv),
        "machine": common.machine(),
        "quick": args.quick,
        "seeds": seeds,
        "seconds": time.perf_counter() - t0,
        "cpu_seconds": time.process_time() - cpu0,
    }
    common.emit_json(doc, args.results_dir / f"{SECTION}.json")
    return doc


def render(doc: dict[str, Any]) -> str:
    """The Markdown body of the main-job section of RESULTS.md."""
    rows, wins, seconds = [], 0, []
    for s in doc["seeds"]:
        c = evaluation.Comparison.from_dict(s["comparison"])
        ratio = c.ratio("learned", "adam")
        wins += ratio.verdict == "win"
        seconds.append(s["seconds_to_selected"])
        adam = c.runs["adam"]
        rows.append(
            f"| {s['seed']} | {s['train_seconds'] / 60:.1f} | {s['selected_meta_step']} "
            f"({s['seconds_to_selected']:.0f} s) | {c.runs['learned'].cell()} | "
            f"{adam.cell()} ({adam.hyperparams_cell()}) | {ratio.cell()} | {c.best_baseline} |"
        )
    n = len(doc["seeds"])
    first = evaluation.Comparison.from_dict(doc["seeds"][0]["comparison"])
    return (
        "\n".join(
            [
                "## The README's main job at several seeds (benchmarks/main_job.py)",
                "",
                f"Command: `{doc['command']}`",
                "",
                f"{common.machine_line(doc['machine'])} {doc['seconds'] / 60:.0f} min in all.",
                "",
                "Each seed runs the README's set-up command (`learned-opt meta-train --family mlp "
                "--meta-steps 200 --seed S`, then `learned-opt evaluate`). The checkpoint is the "
                "best on validation-split tasks; Adam and the other baselines are tuned on "
                f"{first.num_tune_tasks} training-split tasks; everything reports on "
                f"{first.num_tasks} test-split tasks. Time to beat Adam: the meta-training "
                "wall-clock to the selected checkpoint, counted as a success where its test-task "
                "interval against tuned Adam lies below 1.",
                "",
                "| seed | meta-training (min) | selected meta-step (time) "
                "| learned: median [5%, 95%] | tuned Adam | learned / tuned Adam "
                "| best tuned baseline |",
                "|---|---|---|---|---|---|---|",
                *rows,
                "",
                f"Beats tuned Adam (interval below 1) at **{wins} of {n}** seeds; median time "
                f"to the selected checkpoint {statistics.median(seconds):.0f} s.",
            ]
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
