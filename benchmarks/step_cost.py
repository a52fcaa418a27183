"""Cost of one optimizer step: learned optimizers' ``tx.update`` against Adam, SGD and rooflines.

For every parameter count N (a dict of four float32 tensors summing to N) this times the jitted
``tx.update`` of ``LSTMOptimizer()``, ``LSTMOptimizer(momentum_size=20)``, ``MetaLSTMOptimizer()``,
``LearnedRule()``, ``optax.adam(1e-3)`` and ``optax.sgd(1e-2)`` -- compiled and warmed up first,
then the median of ``--repeats`` steps, each ended by ``jax.block_until_ready``, the state fed
back from step to step. Every optimizer is timed twice: with the state argument donated to the
jitted update (``donate_argnums``; XLA then writes the new state over the old one) and without.

Two rooflines are measured in the same run, at the same N:

* matmul roofline: the bare per-coordinate matmuls a learned optimizer's step performs, with the
  shapes read off its meta-parameters (default LSTM: ``(N, 23) @ (23, 80)``, ``(N, 40) @ (40, 80)``
  and ``(N, 20) @ (20, 1)``), each jitted alone and timed like the steps; roofline GFLOP/s = their
  FLOPs / their summed time. Timed both writing a freshly allocated output (the plain
  ``jnp.matmul``) and writing into a donated, already-touched buffer.
* memory roofline: a jitted elementwise ``x * a`` over an array the size of the default LSTM's
  state, in place (donated) and into a fresh output, gives GB/s; the step's minimum traffic is
  reading the gradients (and the parameters where the optimizer reads them) and the state and
  writing the state and the updates once, at the in-place bandwidth. The roofline with the
  longer time binds.

Both are measured because on CPU a fresh output costs a page fault per 4 KiB page on first
touch, which on small VMs can cost more than the arithmetic; the JSON records minor page faults
per step next to every timing.

Usage:
    python benchmarks/step_cost.py --results-md benchmarks/RESULTS.md --json-out step_cost.json

One JSON document goes to stdout (and to ``--json-out``); ``--results-md`` rewrites this
benchmark's section of the file, between ``<!-- step_cost:begin -->`` and
``<!-- step_cost:end -->``.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import math
import os
import shlex
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import learned_opt as lo

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common
from _common import fmt as _fmt

PyTree = Any

BEGIN_MARKER = "<!-- step_cost:begin -->"
END_MARKER = "<!-- step_cost:end -->"
SECTION_TITLE = "## Optimizer step cost (benchmarks/step_cost.py)"
CPU_SIZES = (1e4, 1e5, 1e6)
GPU_EXTRA_SIZES = (1e7, 1e8)
ROOFLINE_TARGET = 0.5
MAX_BANDWIDTH_FLOATS = 2**30  # 4 GiB: the bandwidth array stops growing with N beyond this
REFERENCE = "LSTMOptimizer()"
MIN_TIME = 0.3  # seconds of timed calls per cell at least: fast steps get more repeats


@dataclasses.dataclass(frozen=True)
class Case:
    """One optimizer to time: an optax transformation and, for learned ones, its architecture."""

    name: str
    tx: optax.GradientTransformationExtraArgs
    opt: lo.LearnedOptimizer | None = None
    meta_params: PyTree = None


def make_cases() -> list[Case]:
    """The optimizers of the benchmark, learned ones with freshly initialised meta-parameters."""
    cases = []
    key = jax.random.key(0)
    learned: list[tuple[str, lo.LearnedOptimizer]] = [
        (REFERENCE, lo.LSTMOptimizer()),
        ("LSTMOptimizer(momentum_size=20)", lo.LSTMOptimizer(momentum_size=20)),
        ("MetaLSTMOptimizer()", lo.MetaLSTMOptimizer()),
        ("LearnedRule()", lo.LearnedRule()),
    ]
    for name, opt in learned:
        meta_params = opt.init(key)
        cases.append(Case(name, opt.as_optax(meta_params), opt, meta_params))
    cases.append(Case("optax.adam(1e-3)", optax.with_extra_args_support(optax.adam(1e-3))))
    cases.append(Case("optax.sgd(1e-2)", optax.with_extra_args_support(optax.sgd(1e-2))))
    return cases


def make_params(n: int) -> dict[str, jax.Array]:
    """Four float32 tensors with ``n`` coordinates in all (1/2, 1/4, 1/8 and the rest of n)."""
    sizes = [n // 2, n // 4, n // 8]
    sizes.append(n - sum(sizes))
    params = {}
    for k, size in enumerate(sizes):
        shape = (size // 10, 10) if size % 10 == 0 else (size,)
        params[f"layer{k}"] = jax.random.normal(jax.random.key(k), shape, jnp.float32)
    return params


def tree_nbytes(tree: PyTree) -> int:
    """Bytes of all the arrays in ``tree``."""
    return sum(int(np.prod(leaf.shape)) * leaf.dtype.itemsize for leaf in jax.tree.leaves(tree))


def matmul_shapes(case: Case) -> list[tuple[int, int]]:
    """``(K, M)`` of every per-coordinate matmul ``(N, K) @ (K, M)`` in one step of ``case``.

    Read off the meta-parameters' shapes: the fused gate weights ``(input + hidden, 4 hidden)``
    of every LSTM layer (and of the momentum LSTM), the output projection, the Meta-LSTM's
    ``h @ w`` gate vectors and the learned rule's ``features @ coef``.
    """
    mp = case.meta_params
    if isinstance(case.opt, lo.LSTMOptimizer):
        shapes = [tuple(layer["w"].shape) for layer in mp["layers"]]
        shapes.append(tuple(mp["out"]["w"].shape))
        if "momentum" in mp:
            shapes.append(tuple(mp["momentum"]["w"].shape))
        return shapes
    if isinstance(case.opt, lo.MetaLSTMOptimizer):
        # Each gate's weights are (hidden + 2,): h @ w[:-2], plus two elementwise terms.
        gates = [(mp[name]["w"].shape[0] - 2, 1) for name in ("forget", "input")]
        return [tuple(mp["lstm"]["w"].shape), *gates]
    if isinstance(case.opt, lo.LearnedRule):
        return [(mp["coef"].shape[0], 1)]
    return []


def state_bound(case: Case) -> float | None:
    """The optimizer state's size per parameter in bytes implied by the architecture."""
    opt = case.opt
    if isinstance(opt, lo.LSTMOptimizer):
        return 2 * opt.num_layers * opt.hidden_size * 4 + 2 * opt.momentum_size * 4
    if isinstance(opt, lo.MetaLSTMOptimizer):
        return 2 * opt.hidden_size * 4 + 2 * 4  # LSTM carry, previous forget and input gates
    if isinstance(opt, lo.LearnedRule):
        return (len(opt.decays) + 1) * 4  # momenta and the squared-gradient EMA
    if case.name.startswith("optax.adam"):
        return 8.0
    if case.name.startswith("optax.sgd"):
        return 0.0
    return None


def reads_params(case: Case) -> bool:
    """Whether the optimizer's step reads the parameters (more memory traffic)."""
    return bool(case.opt is not None and case.opt.needs_params)


def _block(tree: PyTree) -> None:
    jax.block_until_ready(tree)


def summarize(times: list[float]) -> dict[str, Any]:
    """Median, min and quartiles in ms; every time too when there are few."""
    q1, _, q3 = statistics.quantiles(times, n=4) if len(times) > 1 else (times[0],) * 3
    stats = {
        "calls": len(times),
        "median_ms": 1e3 * statistics.median(times),
        "min_ms": 1e3 * min(times),
        "q1_ms": 1e3 * q1,
        "q3_ms": 1e3 * q3,
    }
    if len(times) <= 20:
        stats["times_ms"] = [round(1e3 * t, 4) for t in times]
    return stats


def time_update(
    case: Case, params: PyTree, grads: PyTree, donate: bool, repeats: int
) -> dict[str, Any]:
    """Times ``case.tx.update`` jitted, the new state fed back into the next call."""
    loss = jnp.float32(1.0)

    def update(g: PyTree, state: PyTree, p: PyTree, value: jax.Array) -> tuple[PyTree, PyTree]:
        return case.tx.update(g, state, p, value=value)

    state = case.tx.init(params)
    state_bytes = tree_nbytes(state)
    leaves = [leaf for leaf in jax.tree.leaves(state) if leaf.size]
    aliased = len(leaves) - len({id(leaf) for leaf in leaves})
    if aliased and donate:
        # XLA refuses to donate one buffer twice; copy the leaves that share one.
        state = jax.tree.map(jnp.copy, state)
    t0 = time.perf_counter()
    compiled = (
        jax.jit(update, donate_argnums=(1,) if donate else ())
        .lower(grads, state, params, loss)
        .compile()
    )
    compile_s = time.perf_counter() - t0
    holder = {"state": state}
    del state

    def call() -> tuple[PyTree, PyTree]:
        updates, holder["state"] = compiled(grads, holder["state"], params, loss)
        return updates, holder["state"]

    _block(call())  # warm-up
    times, faults = _common.time_calls(call, repeats, MIN_TIME)
    return {
        **summarize(times),
        "compile_s": compile_s,
        "page_faults_per_step": faults,
        "state_bytes": state_bytes,
        "init_state_shared_leaves": aliased,
    }


def time_matmul(n: int, k: int, m: int, in_place: bool, repeats: int) -> dict[str, Any]:
    """Times a jitted ``(n, k) @ (k, m)`` float32 matmul, its output fresh or a donated buffer."""
    a = jax.random.normal(jax.random.key(1), (n, k), jnp.float32)
    b = jax.random.normal(jax.random.key(2), (k, m), jnp.float32) / math.sqrt(k)
    if in_place:
        fn = jax.jit(lambda a, b, out: a @ b, donate_argnums=(2,), keep_unused=True)
        holder = {"out": jnp.zeros((n, m), jnp.float32)}

        def call() -> jax.Array:
            holder["out"] = fn(a, b, holder["out"])
            return holder["out"]

    else:
        fn = jax.jit(jnp.matmul)

        def call() -> jax.Array:
            return fn(a, b)

    _block(call())
    _block(call())
    times, faults = _common.time_calls(call, repeats, MIN_TIME)
    return {**summarize(times), "flops": 2 * n * k * m, "page_faults_per_call": faults}


def time_bandwidth(num_floats: int, in_place: bool, repeats: int) -> dict[str, Any]:
    """GB/s of a jitted ``x * a`` over ``num_floats`` float32 (read + write), in place or not."""
    fn = jax.jit(lambda x: x * 1.0000001, donate_argnums=(0,) if in_place else ())
    holder = {"x": jnp.ones((num_floats,), jnp.float32)}

    def call() -> jax.Array:
        out = fn(holder["x"])
        if in_place:
            holder["x"] = out
        return out

    _block(call())
    _block(call())
    times, faults = _common.time_calls(call, repeats, MIN_TIME)
    stats = summarize(times)
    moved = 2 * 4 * num_floats
    stats["bytes"] = moved
    stats["gb_per_s"] = moved / (stats["median_ms"] * 1e-3) / 1e9
    stats["page_faults_per_call"] = faults
    return stats


def roofline_for_size(
    n: int, cases: list[Case], repeats: int, log: Callable[[str], None]
) -> dict[str, Any]:
    """Bare matmul timings for every shape the learned optimizers use, and memory bandwidth."""
    matmuls: dict[str, Any] = {}
    for case in cases:
        for k, m in matmul_shapes(case):
            key = f"{k}x{m}"
            if key in matmuls:
                continue
            entry = {"k": k, "m": m}
            for label, in_place in (("fresh", False), ("in_place", True)):
                try:
                    entry[label] = time_matmul(n, k, m, in_place, repeats)
                except Exception as err:  # e.g. out of memory at large N on a GPU
                    entry[label] = {"error": f"{type(err).__name__}: {err}"[:300]}
                gc.collect()
            log(
                f"  matmul (N,{k})@({k},{m}): fresh "
                f"{entry['fresh'].get('median_ms', float('nan')):.3f} ms, in place "
                f"{entry['in_place'].get('median_ms', float('nan')):.3f} ms"
            )
            matmuls[key] = entry
    reference = next(c for c in cases if c.name == REFERENCE)
    state_floats = min(n * int(state_bound(reference) // 4), MAX_BANDWIDTH_FLOATS)
    bandwidth = {}
    for label, in_place in (("in_place", True), ("fresh", False)):
        try:
            bandwidth[label] = time_bandwidth(state_floats, in_place, repeats)
        except Exception as err:
            bandwidth[label] = {"error": f"{type(err).__name__}: {err}"[:300]}
        gc.collect()
    log(
        f"  bandwidth over {state_floats * 4 / 1e6:.1f} MB: in place "
        f"{bandwidth['in_place'].get('gb_per_s', float('nan')):.1f} GB/s, fresh output "
        f"{bandwidth['fresh'].get('gb_per_s', float('nan')):.1f} GB/s"
    )
    return {"matmuls": matmuls, "bandwidth": bandwidth, "bandwidth_array_floats": state_floats}


def analyse_row(row: dict[str, Any], case: Case, n: int, roof: dict[str, Any]) -> None:
    """Adds FLOPs, GFLOP/s, roofline times and fractions to a timed row (in place)."""
    shapes = matmul_shapes(case)
    flops = sum(2 * n * k * m for k, m in shapes)
    if shapes:
        row["matmul_shapes"] = [[n, k, m] for k, m in shapes]
        row["matmul_flops"] = flops
    bw_in = roof["bandwidth"]["in_place"]
    for label in ("donated", "not_donated"):
        timing = row[label]
        step_ms = timing.get("median_ms")
        if not step_ms:
            continue
        if shapes:
            timing["achieved_gflops"] = flops / (step_ms * 1e-3) / 1e9
            for kind in ("fresh", "in_place"):
                parts = [roof["matmuls"][f"{k}x{m}"][kind] for k, m in shapes]
                if all("median_ms" in part for part in parts):
                    roof_ms = sum(part["median_ms"] for part in parts)
                    timing[f"matmul_roofline_{kind}"] = {
                        "ms": roof_ms,
                        "gflops": flops / (roof_ms * 1e-3) / 1e9,
                        "fraction": roof_ms / step_ms,
                    }
        if "gb_per_s" in bw_in:
            # Minimum traffic: read the gradients (and the parameters where used) and the
            # state, write the state and the updates, all at the in-place bandwidth: a lower
            # bound. Writing to newly allocated memory costs more (see page_faults_per_step).
            state_bytes = timing["state_bytes"]
            min_bytes = 2 * state_bytes + 2 * 4 * n + (4 * n if reads_params(case) else 0)
            mem_ms = 1e3 * min_bytes / (bw_in["gb_per_s"] * 1e9)
            timing["memory_roofline"] = {
                "min_bytes": min_bytes,
                "ms": mem_ms,
                "fraction": mem_ms / step_ms,
            }
        compute_ms = timing.get("matmul_roofline_fresh", {}).get("ms")
        mem_ms = timing.get("memory_roofline", {}).get("ms")
        if compute_ms is not None and mem_ms is not None:
            timing["binding_roofline"] = "matmul" if compute_ms >= mem_ms else "memory"
        elif mem_ms is not None:
            timing["binding_roofline"] = "memory"


def run(args: argparse.Namespace, log: Callable[[str], None]) -> dict[str, Any]:
    """Times every optimizer and the rooflines at every size; returns the JSON document."""
    backend = jax.default_backend()
    if args.sizes:
        sizes = [int(s) for s in args.sizes]
    else:
        sizes = [int(s) for s in CPU_SIZES]
        if backend == "gpu":
            sizes += [int(s) for s in GPU_EXTRA_SIZES]
    busy = _common.cpu_busy_fraction()
    result: dict[str, Any] = {
        "benchmark": "step_cost",
        "command": "python benchmarks/step_cost.py " + shlex.join(sys.argv[1:]),
        "machine": _common.machine(),
        "cpu_busy_fraction_before_start": busy,
        "load_average_start": list(os.getloadavg()),
        "repeats": args.repeats,
        "sizes": sizes,
        "rows": [],
        "rooflines": {},
    }
    cases = make_cases()
    t_start = time.perf_counter()
    for n in sizes:
        log(f"N = {n:.0e}")
        params = make_params(n)
        grads = jax.tree.map(lambda p: 1e-3 * jnp.sin(p), params)
        roof = roofline_for_size(n, cases, args.repeats, log)
        result["rooflines"][str(n)] = roof
        rows = []
        for case in cases:
            row: dict[str, Any] = {"optimizer": case.name, "n": n}
            for label, donate in (("donated", True), ("not_donated", False)):
                try:
                    row[label] = time_update(case, params, grads, donate, args.repeats)
                except Exception as err:
                    row[label] = {"error": f"{type(err).__name__}: {err}"[:300]}
                gc.collect()
            state_bytes = row["donated"].get("state_bytes", row["not_donated"].get("state_bytes"))
            row["state_bytes_per_param"] = state_bytes / n if state_bytes is not None else None
            row["state_bytes_per_param_bound"] = state_bound(case)
            analyse_row(row, case, n, roof)
            log(
                f"  {case.name:34s} donated {row['donated'].get('median_ms', float('nan')):9.3f}"
                f" ms, not donated {row['not_donated'].get('median_ms', float('nan')):9.3f} ms"
            )
            rows.append(row)
        adam = next(r for r in rows if r["optimizer"].startswith("optax.adam"))
        for row in rows:
            for label in ("donated", "not_donated"):
                mine, ref = row[label].get("median_ms"), adam[label].get("median_ms")
                if mine is not None and ref:
                    row[label]["ratio_to_adam"] = mine / ref
        result["rows"].extend(rows)
        del params, grads
        gc.collect()
    result["wall_s"] = time.perf_counter() - t_start
    result["load_average_end"] = list(os.getloadavg())
    return result


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.0f}%"


def render_markdown(result: dict[str, Any]) -> str:
    """This benchmark's section of RESULTS.md, markers included."""
    m = result["machine"]
    busy = result.get("cpu_busy_fraction_before_start")
    lines = [
        BEGIN_MARKER,
        SECTION_TITLE,
        "",
        "Generated by:",
        "",
        "```",
        result["command"],
        "```",
        "",
        f"Machine: {m['cpu_model'] or m['platform_processor'] or 'unknown CPU'}, "
        f"{m['cpu_count']} cores, {m['platform']}; jax {m['jax_version']} "
        f"(jaxlib {m['jaxlib_version']}), optax {m['optax_version']}, backend "
        f"`{m['backend']}`, devices `{', '.join(m['jax_devices'])}`"
        + (f", XLA_FLAGS=`{m['xla_flags']}`" if m["xla_flags"] else "")
        + ". "
        f"Other load: CPUs {_pct(busy)} busy in the second before the run; load average "
        f"{result['load_average_start'][0]:.2f} at the start, "
        f"{result['load_average_end'][0]:.2f} at the end. At least {result['repeats']} timed "
        f"steps per cell (fast cells repeat for {MIN_TIME:g} s); the run took "
        f"{result['wall_s']:.0f} s.",
        "",
        "How to read it. A step is the jitted `tx.update(grads, state, params, value=loss)` "
        "of the installed package, compiled and warmed up first, the new state fed back; "
        "times are medians. *Donated*: the state argument is donated "
        "(`jax.jit(..., donate_argnums=1)`), so XLA may write the new state over the old one; "
        "*fresh*: it is not, so every step writes the state into newly allocated memory. "
        "Ratios to Adam compare like with like. State B/param: bytes of the state's arrays "
        "/ N, the architecture's bound in brackets. GFLOP/s: FLOPs of the per-coordinate "
        "matmuls (shapes from the meta-parameters) / step time (donated). Matmul roofline: "
        "the same matmuls, bare and jitted one by one, writing fresh output (as a plain "
        "`jnp.matmul`); *fraction* = their time / the step's time, i.e. the step's GFLOP/s "
        "over the roofline's; *strict* is the same with the matmuls writing into memory "
        "touched before. Memory roofline: the step's minimum traffic (read gradients, "
        "parameters where used and the state; write the state and the updates) at the "
        "in-place bandwidth below. *Binds*: the roofline with the longer time (donated). "
        "Faults: minor page faults per step (donated / fresh), each the first touch of a "
        "4 KiB page of newly allocated memory.",
        "",
        "| optimizer | N | ms/step donated | ms/step fresh | ratio to Adam (donated / fresh) "
        "| state B/param (bound) | matmul GFLOP/step | GFLOP/s | matmul roofline GFLOP/s "
        "| fraction of matmul roofline (donated / fresh) | fraction of strict matmul roofline "
        "| fraction of memory roofline (donated / fresh) | binds "
        "| faults/step (donated / fresh) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for row in result["rows"]:
        don, fresh = row["donated"], row["not_donated"]
        bound = row.get("state_bytes_per_param_bound")
        state = _fmt(row.get("state_bytes_per_param"), ".1f")
        if bound is not None:
            state += f" ({bound:g})"
        flops = row.get("matmul_flops")
        roof = don.get("matmul_roofline_fresh", {})

        def frac(timing: dict[str, Any], key: str) -> str:
            return _fmt(timing.get(key, {}).get("fraction"), ".2f")

        lines.append(
            f"| {row['optimizer']} | {row['n']:.0e} "
            f"| {_fmt(don.get('median_ms'), '.3f')} | {_fmt(fresh.get('median_ms'), '.3f')} "
            f"| {_fmt(don.get('ratio_to_adam'), '.1f')} / "
            f"{_fmt(fresh.get('ratio_to_adam'), '.1f')} "
            f"| {state} | {_fmt(flops / 1e9 if flops else None, '.3f')} "
            f"| {_fmt(don.get('achieved_gflops'), '.1f')} | {_fmt(roof.get('gflops'), '.1f')} "
            f"| {frac(don, 'matmul_roofline_fresh')} / {frac(fresh, 'matmul_roofline_fresh')} "
            f"| {frac(don, 'matmul_roofline_in_place')} "
            f"| {frac(don, 'memory_roofline')} / {frac(fresh, 'memory_roofline')} "
            f"| {don.get('binding_roofline', '—')} "
            f"| {don.get('page_faults_per_step', '—')} / "
            f"{fresh.get('page_faults_per_step', '—')} |"
        )
    lines += [
        "",
        "Rooflines, measured in the same run. Bare matmuls `(N, K) @ (K, M)` in float32, "
        "the output freshly allocated (a plain `jnp.matmul`) or written into a donated buffer "
        "that earlier calls touched already:",
        "",
        "| N | (K, M) | ms, fresh output | GFLOP/s | ms, output in place | GFLOP/s |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for n_str, roof in result["rooflines"].items():
        for entry in roof["matmuls"].values():
            cells = []
            for kind in ("fresh", "in_place"):
                t = entry[kind]
                if "median_ms" in t:
                    gflops = t["flops"] / (t["median_ms"] * 1e-3) / 1e9
                    cells += [f"{t['median_ms']:.3f}", f"{gflops:.1f}"]
                else:
                    cells += ["error", "—"]
            lines.append(
                f"| {int(n_str):.0e} | ({entry['k']}, {entry['m']}) | {' | '.join(cells)} |"
            )
    lines += [
        "",
        "Memory bandwidth: jitted `x * a` over float32 `x` the size of the default LSTM's "
        "state, (read + write bytes) / time, in place (donated) or into a fresh output:",
        "",
        "| N | array MB | GB/s in place | GB/s fresh output | page faults per fresh call |",
        "|---:|---:|---:|---:|---:|",
    ]
    for n_str, roof in result["rooflines"].items():
        bw = roof["bandwidth"]
        lines.append(
            f"| {int(n_str):.0e} | {roof['bandwidth_array_floats'] * 4 / 1e6:.1f} "
            f"| {_fmt(bw['in_place'].get('gb_per_s'), '.1f')} "
            f"| {_fmt(bw['fresh'].get('gb_per_s'), '.1f')} "
            f"| {bw['fresh'].get('page_faults_per_call', '—')} |"
        )
    lines += ["", *findings(result), END_MARKER]
    return "\n".join(lines) + "\n"


def findings(result: dict[str, Any]) -> list[str]:
    """Sentences computed from the numbers: the roofline target and the gap to Adam."""
    out = ["Summary, computed from the numbers above:", ""]
    for row in result["rows"]:
        don, fresh = row["donated"], row["not_donated"]
        roof = don.get("matmul_roofline_fresh")
        if row["optimizer"] != REFERENCE or not roof:
            continue
        verdict = "meets" if roof["fraction"] >= ROOFLINE_TARGET else "misses"
        text = (
            f"- N = {row['n']:.0e}: the default LSTM step runs at "
            f"{don['achieved_gflops']:.1f} GFLOP/s with the state donated, "
            f"{roof['fraction']:.2f} of the bare-matmul roofline's {roof['gflops']:.1f} GFLOP/s "
            f"({verdict} the target of {ROOFLINE_TARGET:g}); "
            f"{_fmt(fresh.get('matmul_roofline_fresh', {}).get('fraction'), '.2f')} without "
            "donation"
        )
        strict = don.get("matmul_roofline_in_place")
        if strict:
            text += (
                f"; {strict['fraction']:.2f} of the matmuls writing into touched memory "
                f"({strict['gflops']:.1f} GFLOP/s)"
            )
        matmuls = result["rooflines"][str(row["n"])]["matmuls"]
        faults = sum(
            matmuls[f"{k}x{m}"]["fresh"].get("page_faults_per_call", 0)
            for _, k, m in row["matmul_shapes"]
        )
        out_pages = sum(4 * n * m for n, _, m in row["matmul_shapes"]) / 4096
        if faults >= 0.25 * out_pages:
            text += (
                f". The bare matmuls writing fresh output took {faults} page faults per call "
                "between them, so that roofline measures first-touch memory as much as "
                "arithmetic; the strict fraction does not depend on the allocator"
            )
        text += (
            f". Its step takes {_fmt(don.get('ratio_to_adam'), '.0f')} times Adam's "
            f"(donated; {_fmt(fresh.get('ratio_to_adam'), '.0f')} times without donation)."
        )
        out.append(text)
    shared = sorted(
        {r["optimizer"] for r in result["rows"] if r["donated"].get("init_state_shared_leaves")}
    )
    if shared:
        out.append(
            f"- `tx.init` of {', '.join(shared)} returns a state whose leaves share buffers "
            "(each LSTM carry's `h` and `c` are one zeros array), so donating it fails with "
            "*Attempt to donate the same buffer twice*; the benchmark copies the state before "
            "its first donated step."
        )
    return out


def write_results_md(path: Path, section: str) -> None:
    """Replaces this benchmark's section of ``path`` (or appends it), keeping everything else."""
    _common.write_section(path, section, BEGIN_MARKER, END_MARKER)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        type=float,
        nargs="+",
        default=None,
        help="parameter counts N (default 1e4 1e5 1e6, plus 1e7 1e8 on a GPU backend)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=7,
        help=f"timed steps per cell at least (fast ones repeat for {MIN_TIME} s, median taken)",
    )
    parser.add_argument("--json-out", type=Path, default=None, help="also write the JSON here")
    parser.add_argument(
        "--results-md",
        type=Path,
        default=None,
        help="rewrite this benchmark's section of this markdown file (benchmarks/RESULTS.md)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.repeats < 1:
        raise SystemExit("--repeats: expected a positive integer")
    # Donating the state's zero-size spec arrays can leave them unused; that is expected.
    warnings.filterwarnings("ignore", message="Some donated buffers were not usable")

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    result = run(args, log)
    _common.emit_json(result, args.json_out)
    if args.results_md:
        write_results_md(args.results_md, render_markdown(result))
        log(f"wrote section of {args.results_md}")


if __name__ == "__main__":
    main()
