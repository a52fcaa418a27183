"""Stability of the generalist's recipe: shortened runs of benchmarks/train_generalist.py at
several meta-training seeds, with the spread of their validation scores.

Each seed runs the recipe unchanged but for ``--meta-steps`` (default 300, the meta-step the
shipped ``lstm_general`` was selected at), validating every 100 meta-steps on the same
validation-split problems against the same tuned Adam::

    python benchmarks/generalist_seeds.py                 # seeds 1 2 3 (~10 min each, 2 cores)

The document goes to ``benchmarks/results/generalist_seeds.json``; ``python
benchmarks/render.py`` renders it into RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common
import train_generalist

SECTION = "generalist_seeds"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--meta-steps", type=int, default=300)
    p.add_argument("--validation-tasks", type=int, default=8)
    p.add_argument("--results-dir", type=Path, default=common.RESULTS_DIR)
    args = p.parse_args(argv)
    runs = []
    with tempfile.TemporaryDirectory() as folder:
        for seed in args.seeds:
            results = Path(folder) / f"seed{seed}.json"
            train_generalist.main(
                [
                    "--seed", str(seed), "--meta-steps", str(args.meta_steps),
                    "--validation-tasks", str(args.validation_tasks),
                    "--out", str(Path(folder) / f"seed{seed}.msgpack"), "--results", str(results),
                ]
            )  # fmt: skip
            runs.append(json.loads(results.read_text()))
    doc = {
        "command": common.command_line("benchmarks/generalist_seeds.py", argv),
        "machine": common.machine(),
        "meta_steps": args.meta_steps,
        "runs": runs,
    }
    common.emit_json(doc, args.results_dir / f"{SECTION}.json")
    return doc


def render(doc: dict[str, Any]) -> str:
    """The Markdown body of the seeds section: per seed, the selected step and its scores."""
    names = list(train_generalist.VALIDATION)
    adam = doc["runs"][0]["adam_validation"]
    rows, scores = [], []
    for run in doc["runs"]:
        best = run["selected"]
        scores.append(best["score"])
        history = ", ".join(f"{h['score']:+.2f}" for h in run["history"])
        cells = " | ".join(f"{best[n]:.3g} ({best[n] / adam[n]['final']:.2g}x)" for n in names)
        rows.append(
            f"| {run['seed']} | {best['meta_step']} | {cells} | {best['score']:+.2f} | {history} "
            f"| {run['meta_training_seconds'] / 60:.0f} |"
        )
    spread = (
        f"median {statistics.median(scores):+.2f}, range [{min(scores):+.2f}, {max(scores):+.2f}]"
    )
    return (
        "\n".join(
            [
                "## Stability of the generalist's recipe over seeds "
                "(benchmarks/generalist_seeds.py)",
                "",
                f"Command: `{doc['command']}`",
                "",
                f"{common.machine_line(doc['machine'])}",
                "",
                f"The recipe of `lstm_general`, shortened to {doc['meta_steps']} meta-steps, "
                "at each seed; the validation problems, tuned Adam and the score are those "
                "of the section above (median validation loss, in brackets its ratio to "
                "tuned Adam's; score: the mean clipped log ratio, negative beats tuned Adam "
                "on average).",
                "",
                "| seed | selected meta-step | "
                + " | ".join(f"`{n}`" for n in names)
                + " | score | score every 100 meta-steps | meta-training (min) |",
                "|" + "---|" * (len(names) + 5),
                *rows,
                "",
                f"Selected score over {len(scores)} seeds: {spread}.",
            ]
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
