"""Cost of one step of the shipped learned optimizers against Adam, and the strict matmul roofline.

For every parameter count N (a dict of four float32 tensors summing to N) this times the jitted
``tx.update(grads, state, params, value=loss)`` of every shipped optimizer
(``lo.load_pretrained(name)`` for each name of ``lo.list_pretrained()``, its meta-parameters as
shipped), of each shipped architecture with ``state_dtype="bfloat16"``, and of
``optax.adam(1e-3)``: compiled and warmed up first, the state donated to the update (XLA writes
the new state over the old one) and fed back from step to step; the median of at least
``--repeats`` steps, each ended by ``jax.block_until_ready``.

The roofline is measured in the same run, at the same N: the per-coordinate matmuls a step
performs (shapes read off the meta-parameters: each LSTM layer's ``(N, input + hidden) @
(input + hidden, 4 hidden)``, the output projection, the Meta-LSTM's gate vectors), each jitted
alone and writing into a donated output buffer that earlier calls touched already (*strict*: no
page faults, no allocation). The step's *fraction of the strict roofline* is their summed time
over the step's time: the step's matmul GFLOP/s over the bare matmuls'. A matmul writing into
freshly allocated memory runs several times slower on CPU (a page fault per 4 KiB on first
touch), so a roofline measured that way flatters the step; it is not used.

Bytes of optimizer state per parameter come from ``jax.eval_shape(tx.init, params)`` at N = 1e6,
for every architecture and both state dtypes.

Usage:
    nice -n 10 python benchmarks/step_cost.py

writes ``benchmarks/results/step_cost.json`` (``--out``); ``benchmarks/render.py`` renders it.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

import learned_opt as lo

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common
from _common import fmt

# It reports first-call times: they must be compilations, not loads from the cache _common enables.
lo.enable_compilation_cache("off")

PyTree = Any

SECTION = "step_cost"
SIZES = (10_000, 100_000, 1_000_000)
#: Target: the LSTM step at this fraction of the strict roofline at 1e6 parameters.
ROOFLINE_TARGET = 0.5
TARGET_N = 1_000_000
MIN_TIME = 0.3  # seconds of timed calls per cell at least: fast steps repeat more
ADAM = "optax.adam(1e-3)"


class Case(NamedTuple):
    """One optimizer to time."""

    name: str
    tx: optax.GradientTransformationExtraArgs
    opt: lo.LearnedOptimizer | None
    meta_params: PyTree


def make_cases() -> list[Case]:
    """Every shipped optimizer, each shipped architecture with bfloat16 state, and Adam."""
    cases, seen = [], set()
    for name in lo.list_pretrained():
        opt, meta_params = lo.load_pretrained(name)
        cases.append(Case(name, opt.as_optax(meta_params), opt, meta_params))
        key = (type(opt).__name__, tuple(sorted(opt.config().items())))
        if key not in seen:
            seen.add(key)
            low = type(opt)(**{**opt.config(), "state_dtype": "bfloat16"})
            cases.append(
                Case(f"{name}, bfloat16 state", low.as_optax(meta_params), low, meta_params)
            )
    cases.append(Case(ADAM, optax.with_extra_args_support(optax.adam(1e-3)), None, None))
    return cases


def state_architectures() -> list[tuple[str, Any]]:
    """``(label, tx)`` of every architecture whose state bytes are reported."""
    out: list[tuple[str, Any]] = []
    shipped: dict[tuple[str, tuple[tuple[str, Any], ...]], tuple[str, Any]] = {}
    for name in lo.list_pretrained():
        opt, _ = lo.load_pretrained(name)
        shipped.setdefault((type(opt).__name__, tuple(sorted(opt.config().items()))), (name, opt))
    architectures = [(f"{name} (shipped)", opt) for name, opt in shipped.values()]
    architectures += [
        ("LSTMOptimizer()", lo.LSTMOptimizer()),
        ("LSTMOptimizer(momentum_size=20)", lo.LSTMOptimizer(momentum_size=20)),
        ("MetaLSTMOptimizer()", lo.MetaLSTMOptimizer()),
        ("LearnedRule()", lo.LearnedRule()),
    ]
    for label, opt in architectures:
        for dtype in ("float32", "bfloat16"):
            variant = type(opt)(**{**opt.config(), "state_dtype": dtype})
            out.append((f"{label}, {dtype}", variant.as_optax(variant.init(jax.random.key(0)))))
    out.append((ADAM, optax.adam(1e-3)))
    return out


def make_params(n: int) -> dict[str, jax.Array]:
    """Four float32 tensors with ``n`` coordinates in all (1/2, 1/4, 1/8 and the rest of n)."""
    sizes = [n // 2, n // 4, n // 8]
    sizes.append(n - sum(sizes))
    params = {}
    for k, size in enumerate(sizes):
        shape = (size // 100, 100) if size % 100 == 0 else (size,)
        params[f"layer{k}"] = jax.random.normal(jax.random.key(k), shape, jnp.float32)
    return params


def tree_nbytes(tree: PyTree) -> int:
    """Bytes of all the arrays (or shape structs) in ``tree``."""
    return sum(math.prod(x.shape) * jnp.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree))


def matmul_shapes(case: Case) -> list[tuple[int, int]]:
    """``(K, M)`` of every per-coordinate matmul ``(N, K) @ (K, M)`` in one step of ``case``."""
    mp, opt = case.meta_params, case.opt
    if isinstance(opt, lo.LSTMOptimizer):
        shapes = [tuple(layer["w"].shape) for layer in mp["layers"]]
        shapes.append(tuple(mp["out"]["w"].shape))
        if "momentum" in mp:
            shapes.append(tuple(mp["momentum"]["w"].shape))
        return shapes
    if isinstance(opt, lo.MetaLSTMOptimizer):
        # Each gate's weights are (hidden + 2,): h @ w[:-2], plus two elementwise terms.
        gates = [(mp[name]["w"].shape[0] - 2, 1) for name in ("forget", "input")]
        return [tuple(mp["lstm"]["w"].shape), *gates]
    return []


def summarize(timing: _common.Timing) -> dict[str, Any]:
    """Median and min in ms, the number of calls and the page faults per call."""
    return {
        "calls": len(timing.seconds),
        "median_ms": 1e3 * timing.median,
        "min_ms": 1e3 * min(timing.seconds),
        "page_faults_per_call": timing.page_faults,
    }


def time_update(case: Case, params: PyTree, grads: PyTree, repeats: int) -> dict[str, Any]:
    """Times ``case.tx.update`` jitted with the state donated, the new state fed back."""
    loss = jnp.float32(1.0)

    def update(g: PyTree, state: PyTree, p: PyTree, value: jax.Array) -> tuple[PyTree, PyTree]:
        return case.tx.update(g, state, p, value=value)

    state = jax.tree.map(jnp.copy, case.tx.init(params))  # no two leaves share a buffer
    t0 = time.perf_counter()
    compiled = jax.jit(update, donate_argnums=(1,)).lower(grads, state, params, loss).compile()
    compile_s = time.perf_counter() - t0
    holder = {"state": state}
    del state

    def call() -> PyTree:
        updates, holder["state"] = compiled(grads, holder["state"], params, loss)
        return updates, holder["state"]

    timing = _common.time_calls(call, repeats, MIN_TIME, warmup=2)
    return {**summarize(timing), "compile_s": compile_s}


def time_matmul(n: int, k: int, m: int, repeats: int) -> dict[str, Any]:
    """Times a jitted ``(n, k) @ (k, m)`` float32 matmul writing into a donated, touched buffer."""
    a = jax.random.normal(jax.random.key(1), (n, k), jnp.float32)
    b = jax.random.normal(jax.random.key(2), (k, m), jnp.float32) / math.sqrt(k)
    fn = jax.jit(lambda a, b, out: a @ b, donate_argnums=(2,), keep_unused=True)
    holder = {"out": jnp.zeros((n, m), jnp.float32)}

    def call() -> jax.Array:
        holder["out"] = fn(a, b, holder["out"])
        return holder["out"]

    timing = _common.time_calls(call, repeats, MIN_TIME, warmup=2)
    return {**summarize(timing), "flops": 2 * n * k * m}


def measure(n: int, cases: list[Case], repeats: int) -> tuple[dict[str, Any], list[dict]]:
    """The strict roofline's matmuls and every case's step at ``n`` parameters."""
    params = make_params(n)
    grads = jax.tree.map(lambda p: 1e-3 * jnp.sin(p), params)
    roof: dict[str, Any] = {}
    for case in cases:
        for k, m in matmul_shapes(case):
            if f"{k}x{m}" not in roof:
                roof[f"{k}x{m}"] = {"k": k, "m": m, **time_matmul(n, k, m, repeats)}
                gc.collect()
    rows = []
    for case in cases:
        row: dict[str, Any] = {"optimizer": case.name, "n": n}
        row.update(time_update(case, params, grads, repeats))
        gc.collect()
        shapes = matmul_shapes(case)
        if shapes:
            flops = sum(2 * n * k * m for k, m in shapes)
            roof_ms = sum(roof[f"{k}x{m}"]["median_ms"] for k, m in shapes)
            row["matmul_shapes"] = [[n, k, m] for k, m in shapes]
            row["matmul_flops"] = flops
            row["gflops"] = flops / (row["median_ms"] * 1e-3) / 1e9
            row["strict_roofline_gflops"] = flops / (roof_ms * 1e-3) / 1e9
            row["strict_roofline_fraction"] = roof_ms / row["median_ms"]
        log(
            f"  {case.name:36s} {row['median_ms']:9.3f} ms"
            + (f"  {row['strict_roofline_fraction']:.2f} of strict" if shapes else "")
        )
        rows.append(row)
    return roof, rows


def one_core(args: argparse.Namespace) -> dict[str, Any]:
    """The learned optimizers and their roofline at N = 1e6 in a child pinned to one core."""
    core = min(os.sched_getaffinity(0))
    cmd = [sys.executable, str(Path(__file__).resolve()), "--one-core-worker"]
    cmd += ["--repeats", str(args.repeats), "--sizes", str(TARGET_N)]
    done = subprocess.run(
        cmd,
        preexec_fn=lambda: os.sched_setaffinity(0, {core}),
        stdout=subprocess.PIPE,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        return {"error": f"the one-core worker exited with status {done.returncode}"}
    return {"core": core, **json.loads(done.stdout)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Times every case and the roofline at every size; returns the JSON document."""
    busy = _common.cpu_busy_fraction()
    doc: dict[str, Any] = {
        "command": _common.command_line("benchmarks/step_cost.py", args.argv),
        "machine": _common.machine(),
        "niceness": os.nice(0),
        "cpu_busy_fraction_before_start": busy,
        "load_average_start": list(os.getloadavg()),
        "repeats": args.repeats,
        "sizes": args.sizes,
        "rows": [],
        "roofline": {},
        "state_bytes_per_param": {},
    }
    t_start = time.perf_counter()
    n_state = 1_000_000
    for label, tx in state_architectures():
        shapes = jax.eval_shape(tx.init, jax.eval_shape(lambda: make_params(n_state)))
        doc["state_bytes_per_param"][label] = tree_nbytes(shapes) / n_state
    cases = make_cases()
    load_during = []
    for n in args.sizes:
        log(f"N = {n:.0e}")
        doc["roofline"][str(n)], rows = measure(n, cases, args.repeats)
        adam = next(r for r in rows if r["optimizer"] == ADAM)
        for row in rows:
            row["ratio_to_adam"] = row["median_ms"] / adam["median_ms"]
        doc["rows"].extend(rows)
        load_during.append({"n": n, "load_average": list(os.getloadavg())})
    if TARGET_N in args.sizes and len(os.sched_getaffinity(0)) > 1:
        log(f"N = {TARGET_N:.0e}, one core")
        doc["one_core"] = one_core(args)
        load_during.append({"n": TARGET_N, "load_average": list(os.getloadavg())})
    doc["load_during"] = load_during
    doc["wall_s"] = time.perf_counter() - t_start
    doc["load_average_end"] = list(os.getloadavg())
    return doc


def render(doc: dict[str, Any]) -> str:
    """The Markdown body of the step-cost section of RESULTS.md."""
    m = doc["machine"]
    busy = doc.get("cpu_busy_fraction_before_start")
    loads = [doc["load_average_start"][0], *(d["load_average"][0] for d in doc["load_during"])]
    cpus = m.get("cpus_usable") or m.get("cpu_count")
    lines = [
        "## Optimizer step cost (benchmarks/step_cost.py)",
        "",
        f"Generated by `{doc['command']}` at niceness {doc['niceness']}. "
        + _common.machine_line(m),
        "",
        f"**CPU-only figures** (backend `{m['backend']}`; no GPU was available for this run). "
        f"The machine was shared: {fmt(100 * busy if busy is not None else None, '.0f')}% of "
        f"its CPUs were busy with other work in the second before the run, and the 1-minute "
        f"load average on its {cpus} usable cores was "
        f"{min(loads):.1f} to {max(loads):.1f} during it ({doc['wall_s']:.0f} s), so every time "
        "below includes contention and is an upper bound of the step's cost on a quiet machine; "
        "the fractions compare timings taken under the same load minutes apart.",
        "",
        "A step is the jitted `tx.update(grads, state, params, value=loss)` of the shipped "
        "optimizer (`lo.load_pretrained`), the state donated and fed back; median of at least "
        f"{doc['repeats']} steps (fast cells repeat for {MIN_TIME:g} s). *Strict roofline*: the "
        "step's per-coordinate matmuls (shapes from the meta-parameters), each jitted alone "
        "writing into an already-touched buffer, timed in the same run; *fraction* = their time "
        "/ the step's time. Faults: minor page faults per step.",
        "",
        "| optimizer | N | ms/step | ratio to Adam | matmul GFLOP/s | strict roofline GFLOP/s "
        "| fraction of strict roofline | faults/step |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in doc["rows"]:
        lines.append(
            f"| {row['optimizer']} | {row['n']:.0e} | {row['median_ms']:.3f} "
            f"| {row['ratio_to_adam']:.1f} | {fmt(row.get('gflops'), '.1f')} "
            f"| {fmt(row.get('strict_roofline_gflops'), '.1f')} "
            f"| {fmt(row.get('strict_roofline_fraction'), '.2f')} "
            f"| {row['page_faults_per_call']} |"
        )
    single = doc.get("one_core", {})
    if "rows" in single:
        lines += [
            "",
            f"The learned optimizers at N = 1e6 again, in a child process pinned to core "
            f"{single['core']} (XLA then runs one thread), the strict roofline measured in that "
            "process too.",
        ]
        everywhere = {(r["optimizer"], r["n"]): r["median_ms"] for r in doc["rows"]}
        faster = [
            r["optimizer"]
            for r in single["rows"]
            if r["median_ms"] < everywhere.get((r["optimizer"], r["n"]), 0.0)
        ]
        if faster:
            lines[-1] += (
                f" The step of {len(faster)} of the {len(single['rows'])} took less time on one "
                "core than on all of them: its many small per-chunk operations are each split "
                "over the threads and wait for the slowest (on a shared machine often a "
                "preempted one), while a bare matmul waits once."
            )
        lines += [
            "",
            "| optimizer | N | ms/step, one core | strict roofline GFLOP/s, one core "
            "| fraction of strict roofline, one core |",
            "|---|---:|---:|---:|---:|",
        ]
        for row in single["rows"]:
            lines.append(
                f"| {row['optimizer']} | {row['n']:.0e} | {row['median_ms']:.3f} "
                f"| {fmt(row.get('strict_roofline_gflops'), '.1f')} "
                f"| {fmt(row.get('strict_roofline_fraction'), '.2f')} |"
            )
    elif single:
        lines += ["", f"The one-core measurement failed: {single['error']}."]
    lines += [
        "",
        "Optimizer state, bytes per parameter (`jax.eval_shape(tx.init, params)` at N = 1e6; "
        "the arrays only, counters included):",
        "",
        "| architecture | state dtype | bytes/param |",
        "|---|---|---:|",
    ]
    for label, value in doc["state_bytes_per_param"].items():
        name, _, dtype = label.rpartition(", ")
        if not name:
            name, dtype = label, "float32"
        lines.append(f"| {name} | {dtype} | {value:.1f} |")
    lines += ["", *findings(doc)]
    return "\n".join(lines) + "\n"


def findings(doc: dict[str, Any]) -> list[str]:
    """The target, per shipped learned optimizer at N = 1e6, stated plainly."""
    out = []
    single = {r["optimizer"]: r for r in doc.get("one_core", {}).get("rows", [])}
    for row in doc["rows"]:
        fraction = row.get("strict_roofline_fraction")
        if row["n"] != TARGET_N or fraction is None:
            continue
        verdict = "meets" if fraction >= ROOFLINE_TARGET else "does not meet"
        text = (
            f"- `{row['optimizer']}` at N = 1e6: {fraction:.2f} of the strict roofline "
            f"({row['gflops']:.1f} of {row['strict_roofline_gflops']:.1f} GFLOP/s) on all "
            f"cores; it {verdict} the target of {ROOFLINE_TARGET:g}. Its step costs "
            f"{row['ratio_to_adam']:.0f} times Adam's."
        )
        pinned = single.get(row["optimizer"], {}).get("strict_roofline_fraction")
        if pinned is not None:
            verdict = "meets" if pinned >= ROOFLINE_TARGET else "does not meet"
            text += f" On one core: {pinned:.2f}, which {verdict} it."
        out.append(text)
    if not out:
        out.append(f"- No run at N = {TARGET_N:.0e}: the roofline target was not measured.")
    return ["Against the target (at least 0.5 of the strict roofline at 1e6 parameters):", "", *out]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes", type=float, nargs="+", default=SIZES, help="parameter counts N (1e4 1e5 1e6)"
    )
    parser.add_argument(
        "--repeats", type=int, default=5, help="timed steps per cell at least (median taken)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=_common.RESULTS_DIR / f"{SECTION}.json",
        help="where the JSON document goes (default benchmarks/results/step_cost.json)",
    )
    parser.add_argument("--one-core-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats: expected a positive integer")
    if any(s < 1 or s != int(s) for s in args.sizes):
        parser.error("--sizes: expected positive whole numbers")
    args.sizes = [int(s) for s in args.sizes]
    args.argv = sys.argv[1:] if argv is None else argv
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    # Donating the state's zero-size spec arrays leaves them unused; that is expected.
    warnings.filterwarnings("ignore", message="Some donated buffers were not usable")
    if args.one_core_worker:
        learned = [case for case in make_cases() if case.opt is not None]
        roof, rows = measure(args.sizes[0], learned, args.repeats)
        print(json.dumps({"roofline": roof, "rows": rows}))
        return
    _common.emit_json(run(args), args.out)


if __name__ == "__main__":
    main()
