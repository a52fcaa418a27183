"""Speed and memory of MAML, first-order MAML and Reptile on the same tasks, in one run.

Every method meta-trains the same sinusoid network on the same pre-sampled episodes (meta-batch
of 25 tasks, K = 10 support and 10 query points, inner SGD alpha = 0.01, Adam 1e-3 as
meta-optimizer for MAML and first-order MAML, Reptile's plain ``eps = 1`` update) for each
combination of hidden width (1-W-W-1 ReLU) and number of inner steps. Timing: ``--iterations``
meta-iterations in one jitted ``lax.scan`` over the episodes (compiled and run once first), the
median of ``--repeats`` runs, each ended by ``jax.block_until_ready``. Memory: XLA's compiled
memory analysis of one jitted meta-iteration (``jax.jit(update).lower(...).compile()
.memory_analysis()``): temporary buffers (the intermediate values, which second-order MAML keeps
for its backward pass through the inner loop) and the total with arguments and outputs; plus the
process's peak resident memory (``resource.getrusage``), which is cumulative over the run.

Usage:
    nice -n 10 python benchmarks/fewshot_speed.py --json-out benchmarks/results/fewshot_speed.json

One JSON document goes to stdout (and to ``--json-out``); ``python benchmarks/render.py`` renders
it (:func:`render`) into this benchmark's section of ``benchmarks/RESULTS.md``, between
``<!-- fewshot_speed:begin -->`` and ``<!-- fewshot_speed:end -->``; ``--results-md`` writes
that section of a file directly.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import optax

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common
import fewshot_common as common

import learned_opt as lo
from learned_opt import fewshot

BEGIN_MARKER = "<!-- fewshot_speed:begin -->"
END_MARKER = "<!-- fewshot_speed:end -->"
ALPHA = 0.01
LABELS = {"maml": "MAML", "first_order_maml": "first-order MAML", "reptile": "Reptile"}


def make_learners(apply, num_inner_steps: int) -> dict[str, fewshot.FewShotLearner]:
    adam = optax.adam(1e-3)
    return {
        "maml": fewshot.maml(
            apply, inner=ALPHA, num_inner_steps=num_inner_steps, meta_optimizer=adam
        ),
        "first_order_maml": fewshot.first_order_maml(
            apply, inner=ALPHA, num_inner_steps=num_inner_steps, meta_optimizer=adam
        ),
        "reptile": fewshot.reptile(
            apply, inner=ALPHA, num_inner_steps=num_inner_steps, meta_step_size=1.0
        ),
    }


def measure(
    learner: fewshot.FewShotLearner,
    params: Any,
    episodes: fewshot.Episodes,
    repeats: int,
) -> dict[str, Any]:
    """Times meta-iterations over ``episodes`` (leading iteration axis) and reads XLA's memory."""
    state = learner.init(params)
    one = jax.tree.map(lambda a: a[0], episodes)
    memory = _common.xla_memory(jax.jit(learner.update).lower(state, one).compile())
    run = jax.jit(lambda state, episodes: jax.lax.scan(learner.update, state, episodes))
    jax.block_until_ready(run(state, episodes))  # compile and warm up
    times = list(_common.time_calls(lambda: run(state, episodes), repeats).seconds)
    iterations = episodes.support[0].shape[0]
    median = statistics.median(times)
    out = {
        "iterations_per_s": iterations / median,
        "ms_per_iteration": 1e3 * median / iterations,
        "times_s": times,
        "peak_rss_mib_so_far": _common.peak_rss_mib(),
    }
    if "error" not in memory:
        out["temp_bytes"], out["total_bytes"] = memory["temp_bytes"], memory["peak_bytes"]
    return out


def run(args: argparse.Namespace, log: Callable[[str], None]) -> dict[str, Any]:
    rows = []
    for width in args.widths:
        family = lo.tasks.Sinusoid(hidden_sizes=(width, width))
        params = family.init(None, jax.random.key(0))
        episodes = jax.vmap(
            lambda k, family=family: fewshot.sample_episodes(family, k, args.meta_batch, 10, 10)
        )(jax.random.split(jax.random.key(1), args.iterations))
        for steps in args.inner_steps:
            for name, learner in make_learners(family.apply, steps).items():
                row = {"method": name, "width": width, "inner_steps": steps}
                row.update(measure(learner, params, episodes, args.repeats))
                log(
                    f"width {width}, {steps} inner steps, {name}: "
                    f"{row['iterations_per_s']:.0f} it/s, temp {row.get('temp_bytes')} bytes"
                )
                rows.append(row)
    return {
        "benchmark": "fewshot_speed",
        "command": _common.command_line("benchmarks/fewshot_speed.py", args.argv),
        "machine": _common.machine(),
        "settings": {
            "meta_batch": args.meta_batch,
            "k_support": 10,
            "k_query": 10,
            "iterations": args.iterations,
            "repeats": args.repeats,
        },
        "rows": rows,
    }


def _mib(value: int | None) -> str:
    return "n/a" if value is None else f"{value / 2**20:.2f}"


def render(result: dict[str, Any]) -> str:
    """The Markdown of the few-shot speed section of RESULTS.md (no markers), from its JSON."""
    settings = result["settings"]
    lines = [
        "## Few-shot meta-iteration speed and memory",
        "",
        f"Command: `{result['command']}`",
        "",
        common.machine_line(result["machine"]),
        "",
        f"Sinusoid 1-W-W-1 ReLU network, meta-batch {settings['meta_batch']} tasks, K = 10 "
        f"support + 10 query points, the same {settings['iterations']} pre-sampled meta-batches "
        f"for every method; median of {settings['repeats']} timed runs of one jitted scan. "
        "Memory: XLA's compiled memory analysis of one jitted meta-iteration (temporaries, and "
        "the total with arguments and outputs)."
        + (
            " CPU only: no GPU was available to this run."
            if result["machine"]["backend"] == "cpu"
            else ""
        ),
        "",
        "| width W | inner steps | method | meta-iterations/s | ms/iteration | speed vs MAML "
        "| temp MiB | total MiB |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    rows = result["rows"]
    maml = {(r["width"], r["inner_steps"]): r for r in rows if r["method"] == "maml"}
    for r in rows:
        ref = maml[(r["width"], r["inner_steps"])]
        lines.append(
            f"| {r['width']} | {r['inner_steps']} | {LABELS[r['method']]} | "
            f"{r['iterations_per_s']:.0f} | {r['ms_per_iteration']:.3f} | "
            f"{r['iterations_per_s'] / ref['iterations_per_s']:.2f}x | "
            f"{_mib(r.get('temp_bytes'))} | {_mib(r.get('total_bytes'))} |"
        )
    lines += ["", *findings(rows)]
    lines += [
        "",
        f"Peak resident memory of the whole process: {rows[-1]['peak_rss_mib_so_far']:.0f} MiB.",
    ]
    return "\n".join(lines) + "\n"


def findings(rows: list[dict[str, Any]]) -> list[str]:
    """First-order MAML's speed-up and memory saving over MAML, against the paper's ~33%."""
    by_key = {(r["width"], r["inner_steps"], r["method"]): r for r in rows}
    speedups: list[float] = []
    memory: list[float] = []
    per_width: dict[int, dict[int, float]] = {}
    for (width, steps, method), r in by_key.items():
        if method == "first_order_maml":
            ref = by_key[(width, steps, "maml")]
            speedups.append(r["iterations_per_s"] / ref["iterations_per_s"])
            per_width.setdefault(width, {})[steps] = speedups[-1]
            if "temp_bytes" in r:
                memory.append(r["temp_bytes"] / ref["temp_bytes"])
    grows = all(len(s) > 1 and s[max(s)] > s[min(s)] for s in per_width.values())
    out = [
        f"- First-order MAML runs {min(speedups):.2f}x to {max(speedups):.2f}x as many "
        "meta-iterations per second as MAML here (the MAML paper: about 33% faster, i.e. 1.33x, "
        "on mini-ImageNet with a GPU)"
        + (
            "; at every width the gap grows with the number of inner steps, through which MAML "
            "back-propagates."
            if grows
            else "."
        )
    ]
    if memory:
        out.append(
            f"- Its temporary memory is {min(memory):.0%} to {max(memory):.0%} of MAML's, which "
            "keeps the inner loop's intermediate values for the second-order backward pass."
        )
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[40, 160])
    parser.add_argument("--inner-steps", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--meta-batch", type=int, default=25)
    parser.add_argument("--iterations", type=int, default=100, help="meta-iterations per timing")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="tiny settings (smoke test)")
    parser.add_argument("--json-out", type=Path, default=None)
    parser.add_argument("--results-md", type=Path, default=None)
    parser.add_argument(
        "--from-json", type=Path, default=None, help="re-render a saved run instead of running"
    )
    args = parser.parse_args(argv)
    args.argv = argv
    if args.quick:
        args.widths, args.inner_steps, args.iterations, args.repeats = [8], [1], 5, 1
    if min(*args.widths, *args.inner_steps, args.meta_batch, args.iterations, args.repeats) < 1:
        parser.error("all sizes and counts must be positive")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)
    result = json.loads(args.from_json.read_text()) if args.from_json else run(args, log)
    _common.emit_json(result, args.json_out)
    if args.results_md:
        section = f"{BEGIN_MARKER}\n{render(result)}{END_MARKER}\n"
        _common.write_section(args.results_md, section, BEGIN_MARKER, END_MARKER)
        log(f"wrote section of {args.results_md}")
    return result


if __name__ == "__main__":
    main()
