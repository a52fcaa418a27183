"""Regenerates every section of ``benchmarks/RESULTS.md`` with one command.

Runs each benchmark script in a fresh process with the arguments that produced the published
tables: the ones that measure speed first, each alone on the machine, then the others two at a
time (``--jobs``; each is mostly single-threaded on CPU). Each script writes its JSON document
to ``results/<section>.json`` and its figures to ``figures/`` of the output directory; then
``render.py`` rewrites RESULTS.md (and, for the published results, the README's table) from
them.

Usage:
    python benchmarks/run_all.py                      # everything, into benchmarks/ (CPU: < 1 h)
    python benchmarks/run_all.py --only l2l_mnist meta_lstm_gates
    python benchmarks/run_all.py --quick --out /tmp/smoke   # smoke test of every script

``--quick`` runs every script on tiny settings and must be given ``--out`` (a smoke test never
overwrites the published results). A summary with each script's exit status and wall time is
printed as JSON; the exit status is non-zero if any script failed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

HERE = Path(__file__).resolve().parent


class Benchmark(NamedTuple):
    """One run of a benchmark script.

    Attributes:
        script: file name in ``benchmarks/`` without ``.py``.
        full: arguments of the published run; ``{out}`` is the output directory.
        quick: arguments of the smoke test.
        timed: it measures speed, so it runs alone on the machine.

    Every benchmark ``name`` of :data:`BENCHMARKS`, full or quick, writes its JSON document to
    ``results/<name>.json`` of the output directory (:func:`document`).
    """

    script: str
    full: list[str]
    quick: list[str]
    timed: bool = False


STUDY = ["--plots-dir", "{out}/figures", "--results-dir", "{out}/results"]
QUICK = ["--quick", "--baselines", "adam", "nag"]
FEWSHOT_SINUSOID = [
    *("--json-out", "{out}/results/fewshot_sinusoid.json"),
    *("--plot", "{out}/figures/fewshot_sinusoid.png"),
]
BENCHMARKS: dict[str, Benchmark] = {
    "l2l_mnist": Benchmark(
        "l2l_study", ["--suites", "lstm_mnist", *STUDY], [*QUICK, "--suites", "lstm_mnist", *STUDY]
    ),
    "l2l_digits": Benchmark(
        "l2l_study",
        ["--suites", "lstm_digits", *STUDY],
        [*QUICK, "--suites", "lstm_digits", *STUDY],
    ),
    "l2l_quadratic": Benchmark(
        "l2l_study",
        ["--suites", "rnnprop_quadratic", *STUDY],
        [*QUICK, "--suites", "rnnprop_quadratic", *STUDY],
    ),
    "l2l_meta_lstm": Benchmark(
        "l2l_study",
        ["--suites", "meta_lstm_digits", *STUDY],
        [*QUICK, "--suites", "meta_lstm_digits", *STUDY],
    ),
    "l2l_general": Benchmark(
        "l2l_study",
        ["--suites", "lstm_general", "--tasks", "50", "--tune-tasks", "10", *STUDY],
        [*QUICK, "--suites", "lstm_general", *STUDY],
    ),
    "main_job": Benchmark(
        "main_job",
        ["--results-dir", "{out}/results"],
        ["--quick", "--seeds", "0", "--results-dir", "{out}/results"],
    ),
    "generalist": Benchmark(
        "train_generalist",
        ["--out", "{out}/lstm_general.msgpack", "--results", "{out}/results/generalist.json"],
        [
            *("--meta-steps", "1", "--validation-tasks", "2"),
            *("--out", "{out}/lstm_general.msgpack", "--results", "{out}/results/generalist.json"),
        ],
    ),
    "generalist_seeds": Benchmark(
        "generalist_seeds",
        ["--results-dir", "{out}/results"],
        [
            *("--seeds", "1", "--meta-steps", "1", "--validation-tasks", "2"),
            *("--results-dir", "{out}/results"),
        ],
    ),
    "ablation": Benchmark(
        "ablation",
        ["--all", "--results", "{out}/results/ablation.json"],
        [
            "--all",
            "--quick",
            "--results",
            "{out}/results/ablation.json",
            "--checkpoints",
            "{out}/ablation_checkpoints",
        ],
    ),
    "faults": Benchmark(
        "faults", ["--out", "{out}/results/faults.json"], ["--out", "{out}/results/faults.json"]
    ),
    "l2l_ablation": Benchmark(
        "l2l_ablation",
        ["--results-dir", "{out}/results"],
        ["--quick", "--results-dir", "{out}/results"],
    ),
    "meta_lstm_gates": Benchmark("meta_lstm_gates", STUDY, ["--quick", *STUDY]),
    "generalization": Benchmark(
        "generalization",
        ["--results-dir", "{out}/results"],
        [
            "--quick",
            "--no-tune-learned",
            "--optimizers",
            "lstm_digits",
            "--results-dir",
            "{out}/results",
            "--problems",
            "least_squares_1e4",
            "mlp_deep",
        ],
    ),
    "fewshot_sinusoid": Benchmark(
        "fewshot_sinusoid", FEWSHOT_SINUSOID, ["--quick", *FEWSHOT_SINUSOID]
    ),
    "fewshot_glyphs": Benchmark(
        "fewshot_glyphs",
        ["--json-out", "{out}/results/fewshot_glyphs.json"],
        ["--quick", "--json-out", "{out}/results/fewshot_glyphs.json"],
    ),
    "step_cost": Benchmark(
        "step_cost",
        ["--out", "{out}/results/step_cost.json"],
        ["--sizes", "1e3", "--repeats", "1", "--out", "{out}/results/step_cost.json"],
        timed=True,
    ),
    "meta_throughput": Benchmark(
        "meta_throughput",
        ["--out", "{out}/results/meta_throughput.json"],
        ["--quick", "--out", "{out}/results/meta_throughput.json"],
        timed=True,
    ),
    "fewshot_speed": Benchmark(
        "fewshot_speed",
        ["--json-out", "{out}/results/fewshot_speed.json"],
        ["--quick", "--json-out", "{out}/results/fewshot_speed.json"],
        timed=True,
    ),
}


def command(name: str, out: Path, quick: bool) -> list[str]:
    """The command line that runs benchmark ``name`` writing into ``out``."""
    bench = BENCHMARKS[name]
    args = [a.format(out=out) for a in (bench.quick if quick else bench.full)]
    return [sys.executable, _script(bench.script), *args]


def document(name: str, out: Path) -> Path:
    """Where benchmark ``name`` run into ``out`` writes its JSON document."""
    return out / "results" / f"{name}.json"


def _script(name: str) -> str:
    script = HERE / f"{name}.py"
    return str(script.relative_to(Path.cwd()) if script.is_relative_to(Path.cwd()) else script)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="+", choices=list(BENCHMARKS), default=list(BENCHMARKS))
    p.add_argument("--quick", action="store_true", help="tiny settings (smoke test)")
    p.add_argument("--out", type=Path, help="output directory (default: benchmarks/)")
    p.add_argument("--jobs", type=int, default=2, help="untimed benchmarks run this many at a time")
    args = p.parse_args(argv)
    if args.quick and args.out is None:
        p.error("--quick needs --out: a smoke test must not overwrite benchmarks/RESULTS.md")
    out = (args.out or HERE).resolve()
    if out.is_relative_to(Path.cwd()):  # record short, reproducible commands in RESULTS.md
        out = out.relative_to(Path.cwd())
    (out / "figures").mkdir(parents=True, exist_ok=True)
    summary: dict[str, dict[str, float]] = {}

    def start(name: str) -> tuple[str, subprocess.Popen, float]:
        cmd = command(name, out, args.quick)
        print(f"[run_all] {' '.join(cmd)}", file=sys.stderr, flush=True)
        return name, subprocess.Popen(cmd, stdout=subprocess.DEVNULL), time.perf_counter()

    def finish(name: str, proc: subprocess.Popen, t0: float) -> None:
        summary[name] = {"returncode": proc.wait(), "seconds": time.perf_counter() - t0}

    # Timed benchmarks first, each alone; then the others, --jobs at a time.
    for name in [n for n in args.only if BENCHMARKS[n].timed]:
        finish(*start(name))
    queue = [n for n in args.only if not BENCHMARKS[n].timed]
    running: list[tuple[str, subprocess.Popen, float]] = []
    while queue or running:
        while queue and len(running) < max(1, args.jobs):
            running.append(start(queue.pop(0)))
        time.sleep(0.5)
        for job in [j for j in running if j[1].poll() is not None]:
            running.remove(job)
            finish(*job)
    render = [sys.executable, _script("render"), "--results-dir", str(out / "results")]
    render += ["--results-md", str(out / "RESULTS.md")]
    if out.resolve() != HERE:
        render.append("--results-only")  # the README and model cards show published results
    print(f"[run_all] {' '.join(render)}", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    summary["render"] = {"returncode": subprocess.call(render), "seconds": time.perf_counter() - t0}
    print(json.dumps(summary, indent=2))
    return int(any(s["returncode"] for s in summary.values()))


if __name__ == "__main__":
    sys.exit(main())
