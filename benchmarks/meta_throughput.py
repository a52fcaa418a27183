"""Meta-training throughput: ``MetaTrainer.step`` against the same meta-step in plain JAX.

The configuration is that of a public JAX implementation of Andrychowicz et al. (2016):
``Quadratic(dim=10)`` tasks, 128 of them per meta-step, a 2-layer LSTM of 32 units on the raw
gradient with no loss input (``LSTMOptimizer(hidden_size=32, preprocess="none",
use_loss=False)``), first-order truncated backprop through 20-step segments of a 100-step horizon
with the sum of the losses as meta-loss, and Adam 1e-2 on the meta-parameters (no clipping). The
same is measured on the MLP family of the paper (digits, 20 sigmoid units, batch 128) with fewer
tasks (``--mlp-tasks``), and every row with the optimizer's state in both layouts (``per_leaf``
and ``flat``).

Two implementations of one meta-step:

* *engine*: ``MetaTrainer(..., clip_norm=None, max_task_grad_norm=None).step`` (inner steps under
  ``lax.scan``, tasks under ``vmap``, non-finite tasks masked, metrics);
* *reference*: the algorithm as one ``jax.jit`` written by hand, :func:`reference_step`: the
  tasks under ``vmap``, for each one a reset where the run reached its horizon and
  ``jax.value_and_grad`` of a segment whose 20 inner steps are a Python loop (unrolled), then
  the mean meta-gradient and the Adam update. It starts from the engine's initial state, so its
  first meta-step's meta-loss is the engine's (``first_meta_loss_rel_diff``).

Per row: *inner steps/s* = tasks x 20 / the median of ``--repeats`` timed meta-steps (compiled
and warmed up, each ended by ``jax.block_until_ready``); *first call s* = the first call's wall
time (tracing, compilation and one step); *compile s* = that minus the median.

Usage:
    nice -n 10 python benchmarks/meta_throughput.py

writes ``benchmarks/results/meta_throughput.json`` (``--out``); ``benchmarks/render.py`` renders
it. ``--quick`` shrinks everything for a smoke test.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import jax
import jax.numpy as jnp
import optax

import learned_opt as lo

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common
from _common import fmt

from learned_opt.meta.unroll import InnerState

# It reports compile times: they must be compilations, not loads from the cache _common enables.
lo.enable_compilation_cache("off")

PyTree = Any

SECTION = "meta_throughput"
FAMILIES = ("quadratic", "mlp")
Layout = Literal["per_leaf", "flat"]
LAYOUTS: tuple[Layout, ...] = ("per_leaf", "flat")
#: The engine's throughput over the reference's that the engine must reach.
TARGET_RATIO = 1.0
FULL = {"tasks": 128, "mlp_tasks": 16, "unroll": 20, "horizon": 100, "repeats": 5}
QUICK = {"tasks": 8, "mlp_tasks": 2, "unroll": 2, "horizon": 4, "repeats": 1}


def make_family(name: str) -> lo.tasks.TaskFamily:
    """The quadratic family and the paper's MLP family."""
    if name == "quadratic":
        return lo.tasks.Quadratic(dim=10)
    return lo.tasks.MLP(hidden_sizes=(20,), activation="sigmoid", batch_size=128)


def make_optimizer(layout: Layout) -> lo.LSTMOptimizer:
    """The 2-layer LSTM of 32 units on the raw gradient, no loss input."""
    return lo.LSTMOptimizer(
        hidden_size=32, num_layers=2, preprocess="none", use_loss=False, layout=layout
    )


def reference_step(
    opt: lo.LSTMOptimizer,
    family: lo.tasks.TaskFamily,
    meta_opt: optax.GradientTransformation,
    unroll: int,
    horizon: int,
) -> Callable[[tuple], tuple]:
    """The meta-step as one jitted function: ``(meta_params, meta_opt_state, runs) -> same``.

    ``runs`` is an :class:`InnerState` with a leading task axis (the engine's initial one).
    """
    loss_and_grad = jax.value_and_grad(family.loss, argnums=1)

    def fresh(meta_params: PyTree, run: InnerState) -> InnerState:
        k_task, k_init, k_run = jax.random.split(run.key, 3)
        task_params = family.sample(k_task)
        params = family.init(task_params, k_init)
        opt_state = opt.init_state(meta_params, params)
        return InnerState(task_params, params, opt_state, jnp.int32(0), run.horizon, k_run)

    def segment(meta_params: PyTree, run: InnerState) -> tuple[jax.Array, InnerState]:
        params, opt_state, key = run.params, run.opt_state, run.key
        losses = []
        for _ in range(unroll):  # unrolled: XLA sees every inner step
            key, k_batch = jax.random.split(key)
            batch = family.batch(run.task_params, k_batch)
            loss, grads = loss_and_grad(run.task_params, params, batch)
            grads, loss = jax.lax.stop_gradient((grads, loss))  # first order, as L2L
            updates, opt_state = opt.step(meta_params, opt_state, grads, params, loss)
            params = jax.tree.map(lambda p, u: p + u.astype(p.dtype), params, updates)
            losses.append(loss)
        _, k_batch = jax.random.split(key)
        final = family.loss(run.task_params, params, family.batch(run.task_params, k_batch))
        meta_loss = jnp.sum(jnp.stack([*losses[1:], final]))
        return meta_loss, InnerState(
            run.task_params, params, opt_state, run.step + unroll, run.horizon, key
        )

    def task(meta_params: PyTree, run: InnerState) -> tuple[jax.Array, PyTree, InnerState]:
        done = run.step >= horizon
        new = fresh(meta_params, run)
        run = jax.tree.map(lambda a, b: jnp.where(done, a, b), new, run)
        (meta_loss, run), grads = jax.value_and_grad(segment, has_aux=True)(meta_params, run)
        return meta_loss, grads, run

    @jax.jit
    def step(state: tuple) -> tuple:
        meta_params, meta_opt_state, runs = state
        meta_losses, grads, runs = jax.vmap(task, in_axes=(None, 0))(meta_params, runs)
        grads = jax.tree.map(lambda g: jnp.mean(g, axis=0), grads)
        updates, meta_opt_state = meta_opt.update(grads, meta_opt_state, meta_params)
        meta_params = optax.apply_updates(meta_params, updates)
        return (meta_params, meta_opt_state, runs), jnp.mean(meta_losses)

    return step


def time_steps(step: Callable[[Any], tuple], state: Any, repeats: int) -> tuple[dict, Any]:
    """The first call, then ``repeats`` timed calls after a warm-up; returns the timings and the
    first call's output."""
    t0 = time.perf_counter()
    state, out = step(state)
    jax.block_until_ready((state, out))
    first_s = time.perf_counter() - t0
    first = (state, out)
    holder = {"state": state}

    def call() -> Any:
        holder["state"], out = step(holder["state"])
        return holder["state"], out

    timing = _common.time_calls(call, repeats, warmup=1)
    return {
        "first_call_s": first_s,
        "step_s_median": timing.median,
        "step_s_all": [round(t, 5) for t in timing.seconds],
        "compile_s": first_s - timing.median,
    }, first


def measure(family_name: str, layout: Layout, cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """The engine's and the reference's rows of one family and layout."""
    family = make_family(family_name)
    opt = make_optimizer(layout)
    tasks = cfg["tasks"] if family_name == "quadratic" else cfg["mlp_tasks"]
    meta_opt = optax.adam(1e-2)
    trainer = lo.MetaTrainer(
        opt,
        family,
        lo.TruncatedBackprop(cfg["unroll"], cfg["horizon"]),
        meta_opt,
        num_tasks=tasks,
        clip_norm=None,
        max_task_grad_norm=None,
    )
    state = trainer.init(jax.random.key(0))
    jax.block_until_ready(state)
    start = (state.meta_params, state.meta_opt_state, state.estimator_state)
    base = {"family": family_name, "layout": layout, "tasks": tasks, "unroll": cfg["unroll"]}
    inner = tasks * cfg["unroll"]
    rows = []
    engine, engine_first = time_steps(trainer.step, state, cfg["repeats"])
    rows.append({**base, "implementation": "engine", **engine})
    step = reference_step(opt, family, meta_opt, cfg["unroll"], cfg["horizon"])
    reference, reference_first = time_steps(step, start, cfg["repeats"])
    engine_loss = float(engine_first[1]["meta_loss"])
    reference_loss = float(reference_first[1])
    rows.append(
        {
            **base,
            "implementation": "reference",
            **reference,
            "first_meta_loss": reference_loss,
            "first_meta_loss_rel_diff": abs(engine_loss - reference_loss) / abs(reference_loss),
        }
    )
    for row in rows:
        row["inner_steps_per_s"] = inner / row["step_s_median"]
        log(
            f"  {family_name:9s} {layout:8s} {row['implementation']:9s} "
            f"{row['inner_steps_per_s']:10.0f} inner steps/s, "
            f"first call {row['first_call_s']:.1f} s"
        )
    return rows


def run(args: argparse.Namespace) -> dict[str, Any]:
    cfg = {**(QUICK if args.quick else FULL)}
    for key in ("tasks", "mlp_tasks", "repeats"):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    doc: dict[str, Any] = {
        "command": _common.command_line("benchmarks/meta_throughput.py", args.argv),
        "machine": _common.machine(),
        "niceness": os.nice(0),
        "cpu_busy_fraction_before_start": _common.cpu_busy_fraction(),
        "load_average_start": list(os.getloadavg()),
        "settings": cfg,
        "rows": [],
        "load_during": [],
    }
    t0 = time.perf_counter()
    for family_name in args.families:
        for layout in LAYOUTS:
            doc["rows"].extend(measure(family_name, layout, cfg))
            doc["load_during"].append(list(os.getloadavg()))
    doc["wall_s"] = time.perf_counter() - t0
    doc["load_average_end"] = list(os.getloadavg())
    return doc


def ratios(doc: dict[str, Any]) -> dict[tuple[str, str], float]:
    """Engine over reference inner steps/s, per ``(family, layout)``."""
    by = {(r["family"], r["layout"], r["implementation"]): r for r in doc["rows"]}
    return {
        (f, layout): by[f, layout, "engine"]["inner_steps_per_s"]
        / by[f, layout, "reference"]["inner_steps_per_s"]
        for f, layout, impl in by
        if impl == "engine" and (f, layout, "reference") in by
    }


def render(doc: dict[str, Any]) -> str:
    """The Markdown body of the meta-throughput section of RESULTS.md."""
    m, cfg = doc["machine"], doc["settings"]
    busy = doc.get("cpu_busy_fraction_before_start")
    loads = [doc["load_average_start"][0], *(load[0] for load in doc["load_during"])]
    cpus = m.get("cpus_usable") or m.get("cpu_count")
    lines = [
        "## Meta-training throughput (benchmarks/meta_throughput.py)",
        "",
        f"Generated by `{doc['command']}` at niceness {doc['niceness']}. "
        + _common.machine_line(m),
        "",
        f"**CPU-only figures** (backend `{m['backend']}`; no GPU was available for this run). "
        f"The machine was shared: {fmt(100 * busy if busy is not None else None, '.0f')}% of "
        f"its CPUs were busy with other work in the second before the run, and the 1-minute "
        f"load average on its {cpus} usable cores was {min(loads):.1f} to {max(loads):.1f} "
        f"during it ({doc['wall_s']:.0f} s); engine and reference alternate within minutes "
        "under the same load.",
        "",
        f"One meta-step: {cfg['tasks']} 10-d quadratics (or {cfg['mlp_tasks']} MLP tasks: "
        "digits, 20 sigmoid units, batch 128), `LSTMOptimizer(hidden_size=32, "
        'preprocess="none", use_loss=False)` (2 layers, raw gradient, no loss input), '
        f"first-order truncated backprop over {cfg['unroll']}-step segments of a "
        f"{cfg['horizon']}-step horizon, meta-loss the sum of the losses, Adam 1e-2 on the "
        "meta-parameters. *Engine*: `MetaTrainer.step` (`lax.scan` over inner steps, `vmap` "
        "over tasks). *Reference*: the same meta-step as one `jax.jit` written by hand in "
        "the script, the inner steps unrolled in Python and the tasks under `vmap`. Median of "
        f"{cfg['repeats']} meta-steps after a warm-up; *first call*: tracing, compilation and "
        "one step; *compile* = first call minus the median. *Δ meta-loss*: the relative "
        "difference between the two implementations' meta-losses of the first meta-step "
        "(same start): they compute the same thing.",
        "",
        "| family | state layout | implementation | inner steps/s | ms/meta-step "
        "| first call s | compile s | Δ meta-loss |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for row in doc["rows"]:
        lines.append(
            f"| {row['family']} | {row['layout']} | {row['implementation']} "
            f"| {row['inner_steps_per_s']:,.0f} | {1e3 * row['step_s_median']:.1f} "
            f"| {row['first_call_s']:.1f} | {row['compile_s']:.1f} "
            f"| {fmt(row.get('first_meta_loss_rel_diff'), '.1e')} |"
        )
    lines += ["", "Engine over reference (inner steps/s):", ""]
    by_ratio = ratios(doc)
    by = {(r["family"], r["layout"], r["implementation"]): r for r in doc["rows"]}
    for (family, layout), ratio in by_ratio.items():
        verdict = "meets" if ratio >= TARGET_RATIO else "does not meet"
        mine = by[family, layout, "engine"]["step_s_all"]
        theirs = by[family, layout, "reference"]["step_s_all"]
        separated = max(mine) < min(theirs) or min(mine) > max(theirs)
        spread = (
            "no timed meta-step of the one overlaps the other's"
            if separated
            else "the timed meta-steps of the two overlap"
        )
        lines.append(
            f"- {family}, {layout}: {ratio:.2f}x ({spread}); it {verdict} the target of "
            f"{TARGET_RATIO:g}x."
        )
    engine = {(r["family"], r["layout"]): r for r in doc["rows"] if r["implementation"] == "engine"}
    for family in dict.fromkeys(f for f, _ in engine):
        if not all((family, layout) in engine for layout in LAYOUTS):
            continue
        rate = {layout: engine[family, layout]["inner_steps_per_s"] for layout in LAYOUTS}
        faster = max(LAYOUTS, key=rate.__getitem__)
        other = min(LAYOUTS, key=rate.__getitem__)
        fast_steps, slow_steps = (engine[family, x]["step_s_all"] for x in (faster, other))
        text = (
            f"- {family}: the engine with the `{faster}` layout does "
            f"{rate[faster] / rate[other]:.2f}x the inner steps/s of `{other}`"
        )
        if max(fast_steps) >= min(slow_steps):
            text += "; their timed meta-steps overlap, so no difference is measured."
        else:
            text += "; every timed meta-step of it was faster."
        lines.append(text)
    return "\n".join(lines) + "\n"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny settings (smoke test)")
    parser.add_argument("--families", nargs="+", choices=FAMILIES, default=list(FAMILIES))
    parser.add_argument("--tasks", type=int, default=None, help="quadratic tasks (128)")
    parser.add_argument("--mlp-tasks", type=int, default=None, help="MLP tasks (16)")
    parser.add_argument("--repeats", type=int, default=None, help="timed meta-steps (5)")
    parser.add_argument(
        "--out",
        type=Path,
        default=_common.RESULTS_DIR / f"{SECTION}.json",
        help="where the JSON document goes (default benchmarks/results/meta_throughput.json)",
    )
    args = parser.parse_args(argv)
    for key in ("tasks", "mlp_tasks", "repeats"):
        value = getattr(args, key)
        if value is not None and value < 1:
            parser.error(f"--{key.replace('_', '-')}: expected a positive integer, got {value}")
    args.argv = sys.argv[1:] if argv is None else argv
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    _common.emit_json(run(args), args.out)


if __name__ == "__main__":
    main()
