"""Meta-training throughput, compile time and memory, against a naive reference; time to beat Adam.

Part 1, throughput. For the ``Quadratic(dim=10)`` family and the ``MLP()`` family (digits, one
hidden layer of 20 sigmoid units, batch 128), with ``LSTMOptimizer()`` defaults,
``TruncatedBackprop(unroll_length=20, horizon=100)`` (first order, meta-loss ``"sum"``) and
``MetaTrainer``'s default meta-optimizer (Adam 1e-3 after clipping to global norm 1), this times
one meta-step of ``num_tasks`` inner runs two ways:

* *engine*: ``MetaTrainer.step`` -- the inner steps unrolled with ``lax.scan``, the tasks
  ``vmap``ped (and sharded over the devices), estimate and meta-update under one ``jit``;
* *reference*: the same meta-step as a user would write it without ``scan``/``vmap``. A Python
  ``for`` loop over the tasks calls, per task, one ``jax.jit``-ed function that (a) resets the
  run if it reached its horizon (the engine's ``reset``), (b) computes the segment's meta-loss and
  meta-gradient with ``jax.value_and_grad`` of ``segment_loss``, a function whose 20 inner steps
  are a Python ``for`` loop (so XLA sees 20 unrolled copies of the step; no scan, no vmap; each
  step: draw a batch, task loss and gradient, ``stop_gradient`` on them as in first-order mode,
  ``LSTMOptimizer.step``, add the updates; the meta-loss is the sum of the losses after each
  update, exactly as ``learned_opt.meta.unroll.unroll``), and (c) flags a non-finite meta-loss or
  meta-gradient. The per-task meta-gradients are then averaged over the finite tasks with eager
  ``jnp`` ops in Python and applied by a jitted meta-optimizer update (same clipping and Adam).
  One compiled program serves every task (the tasks differ only in their arrays), so compile
  cost is paid once, and no call waits for the host, so the loop only pays Python dispatch.
  Started from the engine's initial state, its first meta-step gives the engine's meta-parameters
  (checked: ``max_abs_diff_vs_engine``).

Figures per row: *inner steps/s* = tasks x unroll steps / median wall seconds of a steady-state
meta-step (compiled and warmed up, each ended by ``jax.block_until_ready``); *compile s* = first
call minus that median (tracing + lowering + XLA compile); *XLA peak* = ``temp + argument +
output`` bytes of ``jax.jit(trainer._step).lower(state).compile().memory_analysis()`` (per device
when sharded; for the reference, of its per-task program); *max RSS* = ``ru_maxrss`` of the
process that measured the row (each row runs in its own process, so it covers the import of jax,
the data, compilation and the timed steps of that row only). Rows run at 1 CPU device and at 4
forced CPU devices (a child process started with
``XLA_FLAGS=--xla_force_host_platform_device_count=4``; the 4 devices share the machine's cores),
and on a GPU backend at 1 GPU as well.

Part 2, time to beat Adam. Wall seconds of meta-training an ``LSTMOptimizer(output_scale=...)``
on ``Quadratic(dim=10)`` (``MetaTrainer.run``; construction, initialisation and compilation
included; evaluation excluded) until its median final loss on 100 held-out quadratics after 100
steps (``task_keys(seed, 100, "test")``, the ``final`` of ``train_curves``) is below Adam's at
its best learning rate (``tune_learning_rate(family, optax.adam, task_keys(seed, 32, "train"),
100)``), evaluated every ``--eval-every`` meta-steps, up to ``--max-seconds`` of meta-training.

Usage:
    python benchmarks/meta_throughput.py --unroll 10 --tasks 64 --meta-lr 3e-3 \\
        --meta-loss log_mean --output-scale 0.1 --eval-every 50 \\
        --results-md benchmarks/RESULTS.md --json-out meta_throughput.json

``--quick`` shrinks everything for a smoke test (under a minute on a quiet 2-core CPU; the
throughput rows then cover the quadratic family only, unless ``--families`` says otherwise).
One JSON document goes to stdout (and to ``--json-out``); ``--results-md`` rewrites this
benchmark's section of the file, between ``<!-- meta_throughput:begin -->`` and
``<!-- meta_throughput:end -->``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
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

from learned_opt import evaluation
from learned_opt.meta import unroll as unroll_lib
from learned_opt.meta.trainer import TASK_AXIS

PyTree = Any

BEGIN_MARKER = "<!-- meta_throughput:begin -->"
END_MARKER = "<!-- meta_throughput:end -->"
SECTION_TITLE = "## Meta-training throughput and time to beat Adam (benchmarks/meta_throughput.py)"
FAMILIES = ("quadratic", "mlp")
FORCED_DEVICES = 4
CHILD_TIMEOUT_S = 1800
TARGET_S = 60.0

#: Settings of the full run and of ``--quick``; an option given on the command line wins.
FULL = {
    "throughput_tasks": 16,
    "throughput_unroll": 20,
    "throughput_horizon": 100,
    "repeats": 5,
    "reference_repeats": 3,
    "unroll": 10,
    "tasks": 64,
    "meta_lr": 3e-3,
    "meta_loss": "log_mean",
    "output_scale": 0.1,
    "normalized_inputs": True,
    "eval_every": 50,
    "horizon": 100,
    "max_seconds": 300.0,
    "eval_tasks": 100,
    "tune_tasks": 32,
    "eval_steps": 100,
}
QUICK = {
    **FULL,
    "throughput_tasks": 4,
    "throughput_unroll": 2,
    "throughput_horizon": 4,
    "repeats": 2,
    "reference_repeats": 1,
    "unroll": 5,
    "tasks": 8,
    "eval_every": 10,
    "max_seconds": 5.0,
    "eval_tasks": 10,
    "tune_tasks": 4,
}


def make_family(name: str) -> lo.tasks.TaskFamily:
    """The two families of the benchmark, with the L2L settings."""
    if name == "quadratic":
        return lo.tasks.Quadratic(dim=10)
    if name == "mlp":
        return lo.tasks.MLP(hidden_sizes=(20,), activation="sigmoid", batch_size=128)
    raise ValueError(f"family: expected one of {FAMILIES}, got {name!r}")


def block(tree: PyTree) -> None:
    jax.block_until_ready(tree)


def make_mesh(devices: int) -> jax.sharding.Mesh:
    available = jax.devices()
    if len(available) < devices:
        raise SystemExit(
            f"--devices {devices}: JAX sees only {len(available)} device(s); for CPU devices "
            f"start the process with XLA_FLAGS=--xla_force_host_platform_device_count={devices}"
        )
    return jax.sharding.Mesh(
        np.array(available[:devices]),
        (TASK_AXIS,),
        axis_types=(jax.sharding.AxisType.Auto,),
    )


def make_trainer(family_name: str, cfg: dict[str, Any], devices: int) -> lo.MetaTrainer:
    """``LSTMOptimizer()`` defaults, L2L truncated backprop, the default meta-optimizer."""
    return lo.MetaTrainer(
        lo.LSTMOptimizer(),
        make_family(family_name),
        lo.TruncatedBackprop(
            unroll_length=cfg["throughput_unroll"], horizon=cfg["throughput_horizon"]
        ),
        num_tasks=cfg["throughput_tasks"],
        mesh=make_mesh(devices),
    )


def flat_leaves(tree: PyTree) -> list[list[float]]:
    return [np.asarray(x, np.float64).ravel().tolist() for x in jax.tree.leaves(tree)]


def time_meta_steps(
    step: Callable[[Any], tuple[Any, Any]], state: Any, repeats: int
) -> tuple[dict[str, Any], Any, Any]:
    """First call (compiles), one warm-up call, then ``repeats`` timed calls of ``step``.

    Returns the timings, the state after the first call and the final state.
    """
    t0 = time.perf_counter()
    state, metrics = step(state)
    block((state, metrics))
    first_s = time.perf_counter() - t0
    after_first = state
    state, metrics = step(state)  # warm-up: the first run of the compiled program
    block((state, metrics))

    def call() -> tuple[Any, Any]:
        nonlocal state, metrics
        state, metrics = step(state)
        return state, metrics

    times = _common.time_calls(call, repeats).seconds
    median = statistics.median(times)
    timing = {
        "first_call_s": first_s,
        "step_s_median": median,
        "step_s_min": min(times),
        "step_s_all": [round(t, 5) for t in times],
        "compile_s": first_s - median,
    }
    return timing, after_first, state


# --- the reference meta-step: Python loops, no scan, no vmap ---------------------------------


class Reference:
    """The engine's truncated-backprop meta-step written with Python loops (see the docstring).

    State: ``(meta_params, meta_opt_state, runs)`` with ``runs`` a Python list of unbatched
    ``InnerState``s.
    """

    def __init__(self, trainer: lo.MetaTrainer):
        est = trainer.estimator
        if not isinstance(est, lo.TruncatedBackprop) or est.second_order:
            raise ValueError("the reference implements first-order truncated backprop only")
        self.trainer = trainer
        self.device = trainer.mesh.devices.flat[0]
        self.task_step = jax.jit(self._task_step)
        self.meta_update = jax.jit(self._meta_update)

    def segment_loss(
        self, meta_params: PyTree, run: unroll_lib.InnerState
    ) -> tuple[jax.Array, tuple[unroll_lib.InnerState, jax.Array]]:
        """One segment with its inner steps unrolled by a Python loop (what ``unroll`` scans)."""
        opt, family, est = self.trainer.optimizer, self.trainer.family, self.trainer.estimator
        loss_and_grad = jax.value_and_grad(family.loss, argnums=1)
        params, opt_state, key = run.params, run.opt_state, run.key
        losses = []
        for _ in range(est.unroll_length):
            key, k_batch = jax.random.split(key)
            batch = family.batch(run.task_params, k_batch)
            loss, grads = loss_and_grad(run.task_params, params, batch)
            grads_in, loss_in = jax.lax.stop_gradient((grads, loss))  # first order, as L2L
            updates, opt_state = opt.step(meta_params, opt_state, grads_in, params, loss_in)
            params = jax.tree.map(lambda p, u: p + u.astype(p.dtype), params, updates)
            losses.append(loss)
        _, k_batch = jax.random.split(key)
        final = family.loss(run.task_params, params, family.batch(run.task_params, k_batch))
        after = jnp.stack([*losses[1:], final])
        if est.meta_loss == "sum":
            value = jnp.sum(after)
        else:
            value = jnp.mean(jnp.log(jnp.maximum(after, 1e-30)))
        new_run = unroll_lib.InnerState(
            run.task_params, params, opt_state, run.step + est.unroll_length, key
        )
        return value, (new_run, jnp.stack(losses))

    def _task_step(self, meta_params: PyTree, run: unroll_lib.InnerState) -> tuple[Any, ...]:
        tr = self.trainer
        horizon = tr.estimator.horizon
        done = unroll_lib.finished(run, horizon)
        run = unroll_lib.reset(tr.optimizer, tr.family, meta_params, run, done)
        grad_fn = jax.value_and_grad(self.segment_loss, has_aux=True)
        (value, (run, _)), grads = grad_fn(meta_params, run)
        ok = jnp.isfinite(value) & unroll_lib.is_finite(grads)
        run = run._replace(step=jnp.where(ok, run.step, horizon))
        return value, grads, ok, run

    def _meta_update(
        self, grads: PyTree, meta_opt_state: Any, meta_params: PyTree, apply: jax.Array
    ) -> tuple[PyTree, Any]:
        updates, new_opt_state = self.trainer.meta_optimizer.update(
            grads, meta_opt_state, meta_params
        )
        new_params = optax.apply_updates(meta_params, updates)
        keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(apply, a, b), new, old)
        return keep(new_params, meta_params), keep(new_opt_state, meta_opt_state)

    def initial_state(self, key: jax.Array) -> tuple[PyTree, Any, list[unroll_lib.InnerState]]:
        """The engine's initial state (``trainer.init``), its task axis split into a list."""
        state = jax.device_put(jax.device_get(self.trainer.init(key)), self.device)
        runs = [
            jax.tree.map(lambda x, i=i: x[i], state.estimator_state)
            for i in range(self.trainer.num_tasks)
        ]
        return state.meta_params, state.meta_opt_state, runs

    def step(self, state: tuple[PyTree, Any, list]) -> tuple[tuple[PyTree, Any, list], Any]:
        meta_params, meta_opt_state, runs = state
        values, grads, oks, new_runs = [], [], [], []
        for run in runs:  # the Python loop over tasks
            value, g, ok, run = self.task_step(meta_params, run)
            values.append(value)
            grads.append(g)
            oks.append(ok)
            new_runs.append(run)
        ok = jnp.stack(oks)
        count = jnp.sum(ok)
        denom = jnp.maximum(count, 1).astype(jnp.float32)

        def mean_over_finite(*leaves: jax.Array) -> jax.Array:
            stacked = jnp.stack(leaves)
            mask = ok.reshape((-1,) + (1,) * (stacked.ndim - 1))
            return jnp.sum(jnp.where(mask, stacked, 0.0), axis=0) / denom

        mean_grads = jax.tree.map(mean_over_finite, *grads)
        meta_params, meta_opt_state = self.meta_update(
            mean_grads, meta_opt_state, meta_params, count > 0
        )
        meta_loss = mean_over_finite(*values)
        return (meta_params, meta_opt_state, new_runs), meta_loss


# --- child processes ---------------------------------------------------------------------------


def worker_info() -> dict[str, Any]:
    return {
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "device_kinds": sorted({d.device_kind for d in jax.devices()}),
    }


def worker_row(family_name: str, impl: str, devices: int, cfg: dict[str, Any]) -> dict[str, Any]:
    """Measures one row; runs in its own process so that ``max_rss_mb`` belongs to it."""
    trainer = make_trainer(family_name, cfg, devices)
    family = trainer.family
    if family_name == "mlp":
        block(family.batch(family.sample(jax.random.key(0)), jax.random.key(0)))  # load the data
    rss_before = _common.peak_rss_mib()
    key = jax.random.key(cfg["seed"])
    row: dict[str, Any] = {
        "family": family_name,
        "family_config": family.config(),
        "implementation": impl,
        "backend": jax.default_backend(),
        "devices": devices,
        "device_kind": jax.devices()[0].device_kind,
        "tasks": trainer.num_tasks,
        "unroll": trainer.estimator.unroll_length,
        "horizon": trainer.estimator.horizon,
        "inner_steps_per_meta_step": trainer.inner_steps_per_meta_step(),
    }
    if impl == "engine":
        state = trainer.init(key)
        block(state)
        repeats = cfg["repeats"]
        timing, after_first, state = time_meta_steps(trainer.step, state, repeats)
        # Same function and arguments as the timed trainer.step, so XLA's answer is for it.
        row["xla_memory"] = _common.xla_memory(jax.jit(trainer._step).lower(state).compile())
        row["xla_memory_scope"] = "jax.jit(trainer._step), one meta-step, per device"
    else:
        reference = Reference(trainer)
        state = reference.initial_state(key)
        block(state)
        repeats = cfg["reference_repeats"]
        timing, after_first, state = time_meta_steps(reference.step, state, repeats)
        meta_params, _, runs = state
        per_task = reference.task_step.lower(meta_params, runs[0]).compile()
        row["xla_memory"] = _common.xla_memory(per_task)
        row["xla_memory_scope"] = "the per-task jitted segment meta-gradient program"
    row.update(timing)
    row["repeats"] = repeats
    row["inner_steps_per_s"] = row["inner_steps_per_meta_step"] / timing["step_s_median"]
    row["rss_before_mb"] = rss_before
    row["max_rss_mb"] = _common.peak_rss_mib()
    first_params = after_first.meta_params if impl == "engine" else after_first[0]
    row["_meta_params_after_first_step"] = flat_leaves(first_params)
    return row


def worker_beat(cfg: dict[str, Any]) -> dict[str, Any]:
    """Meta-trains on 10-d quadratics until the LSTM's held-out median beats tuned Adam."""
    family = lo.tasks.Quadratic(dim=10)
    seed, steps = cfg["seed"], cfg["eval_steps"]
    train_keys = evaluation.task_keys(seed, cfg["tune_tasks"], "train")
    test_keys = evaluation.task_keys(seed, cfg["eval_tasks"], "test")

    t0 = time.perf_counter()
    best_lr, scores = evaluation.tune_learning_rate(family, optax.adam, train_keys, steps)
    adam_final = evaluation.train_curves(family, optax.adam(best_lr), test_keys, steps).final
    adam_median = float(np.median(np.where(np.isfinite(adam_final), adam_final, np.inf)))
    adam_s = time.perf_counter() - t0

    opt = lo.LSTMOptimizer(
        output_scale=cfg["output_scale"], normalized_inputs=cfg["normalized_inputs"]
    )
    eval_s = 0.0

    def lstm_median(meta_params: PyTree) -> float:
        nonlocal eval_s
        t = time.perf_counter()
        final = evaluation.learned_curves(family, opt, meta_params, test_keys, steps).final
        eval_s += time.perf_counter() - t
        return float(np.median(np.where(np.isfinite(final), final, np.inf)))

    nonfinite = 0

    def count_nonfinite(step: int, metrics: dict[str, float], *state: Any) -> None:
        # ``*state``: MetaTrainer.run may pass the state as a third argument.
        nonlocal nonfinite
        nonfinite += int(metrics["nonfinite_tasks"])

    train_s = 0.0
    t = time.perf_counter()
    trainer = lo.MetaTrainer(
        opt,
        family,
        lo.TruncatedBackprop(cfg["unroll"], cfg["horizon"], cfg["meta_loss"]),
        optax.adam(cfg["meta_lr"]),
        num_tasks=cfg["tasks"],
        mesh=make_mesh(1),
    )
    state = trainer.init(jax.random.key(seed))
    block(state)
    train_s += time.perf_counter() - t
    history = [{"meta_steps": 0, "train_s": train_s, "median": lstm_median(state.meta_params)}]
    reached = False
    while True:  # at least one round, then until the cap
        t = time.perf_counter()
        target = int(state.step) + cfg["eval_every"]
        state = trainer.run(state, target, progress=False, callback=count_nonfinite)
        block(state)
        train_s += time.perf_counter() - t
        median = lstm_median(state.meta_params)
        history.append({"meta_steps": target, "train_s": train_s, "median": median})
        if median < adam_median:
            # A crossing seen only in the round that ran past the cap does not count.
            reached = train_s <= cfg["max_seconds"]
            break
        if train_s >= cfg["max_seconds"]:
            break
    last = history[-1]
    # The reported median comes from the public evaluation.train_curves.
    t = time.perf_counter()
    final = evaluation.train_curves(family, opt.as_optax(state.meta_params), test_keys, steps).final
    eval_s += time.perf_counter() - t
    lstm_final_median = float(np.median(np.where(np.isfinite(final), final, np.inf)))
    return {
        "family": family.config(),
        "config": {
            k: cfg[k]
            for k in (
                "unroll",
                "tasks",
                "meta_lr",
                "meta_loss",
                "output_scale",
                "normalized_inputs",
                "horizon",
            )
        },
        "optimizer": {"name": "LSTMOptimizer", **opt.config()},
        "eval_every": cfg["eval_every"],
        "max_seconds": cfg["max_seconds"],
        "eval_tasks": cfg["eval_tasks"],
        "eval_steps": steps,
        "tune_tasks": cfg["tune_tasks"],
        "backend": jax.default_backend(),
        "reached": reached,
        "seconds": last["train_s"] if reached else None,
        "crossed_after_cap_at_s": (
            last["train_s"] if not reached and last["median"] < adam_median else None
        ),
        "meta_steps": last["meta_steps"],
        "train_s_total": train_s,
        "eval_s_total": eval_s,
        "adam_tuning_and_eval_s": adam_s,
        "adam_lr": best_lr,
        "adam_lr_at_grid_edge": best_lr in (min(scores), max(scores)),
        "adam_lr_scores": {str(k): v for k, v in scores.items()},
        "adam_median": adam_median,
        "lstm_median": lstm_final_median,
        "lstm_median_fast_eval": last["median"],
        "lstm_initial_median": history[0]["median"],
        "best_lstm_median": min(h["median"] for h in history),
        "nonfinite_tasks": nonfinite,
        "history": history,
        "max_rss_mb": _common.peak_rss_mib(),
    }


def child_env(platform_name: str, devices: int) -> dict[str, str]:
    """The environment of a child: its platform and, on CPU, the forced device count."""
    env = dict(os.environ)
    flags = [
        f
        for f in env.get("XLA_FLAGS", "").split()
        if not f.startswith("--xla_force_host_platform_device_count")
    ]
    if platform_name == "cpu":
        env["JAX_PLATFORMS"] = "cpu"
        flags.append(f"--xla_force_host_platform_device_count={devices}")
    else:
        env.pop("JAX_PLATFORMS", None)
    env["XLA_FLAGS"] = " ".join(flags)
    return env


def run_child(
    role: str,
    cfg: dict[str, Any],
    log: Callable[[str], None],
    *,
    platform_name: str = "cpu",
    devices: int = 1,
    family: str | None = None,
    impl: str | None = None,
) -> dict[str, Any]:
    """Re-invokes this script as a worker and returns the JSON it prints (or the error)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", role]
    cmd += ["--devices", str(devices), "--platform", platform_name]
    if family is not None:
        cmd += ["--family", family]
    if impl is not None:
        cmd += ["--impl", impl]
    cmd += ["--worker-config", json.dumps(cfg)]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd,
            env=child_env(platform_name, devices),
            stdout=subprocess.PIPE,
            text=True,
            timeout=CHILD_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {CHILD_TIMEOUT_S} s"}
    wall = time.perf_counter() - t0
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        return {"error": f"worker exited with status {proc.returncode}", "child_wall_s": wall}
    result = json.loads(lines[-1])
    result["child_wall_s"] = wall
    return result


# --- the parent: orchestration, machine info, report -------------------------------------------


def settings(args: argparse.Namespace) -> dict[str, Any]:
    """The run's configuration: the mode's defaults, overridden by the options given."""
    cfg = dict(QUICK if args.quick else FULL)
    for name in cfg:
        value = getattr(args, name, None)
        if value is not None:
            cfg[name] = value
    cfg["seed"] = args.seed
    cfg["quick"] = args.quick
    return cfg


def check_settings(cfg: dict[str, Any]) -> None:
    for name in ("throughput_tasks", "throughput_unroll", "repeats", "reference_repeats"):
        if cfg[name] < 1:
            raise SystemExit(f"--{name.replace('_', '-')}: expected a positive integer")
    if cfg["throughput_tasks"] % FORCED_DEVICES:
        raise SystemExit(f"--throughput-tasks: expected a multiple of {FORCED_DEVICES}")
    if cfg["throughput_horizon"] % cfg["throughput_unroll"]:
        raise SystemExit("--throughput-horizon: expected a multiple of --throughput-unroll")
    if cfg["horizon"] % cfg["unroll"]:
        raise SystemExit("--horizon: expected a multiple of --unroll")
    if cfg["eval_every"] < 1 or cfg["tasks"] < 1:
        raise SystemExit("--eval-every, --tasks: expected positive integers")


def compare_meta_params(rows: list[dict[str, Any]]) -> None:
    """Max |difference| of the meta-parameters after the first meta-step, vs 1-device engine."""
    base = {
        (r["family"], r["backend"]): r
        for r in rows
        if r.get("implementation") == "engine" and r.get("devices") == 1
    }
    for row in rows:
        ref = base.get((row.get("family"), row.get("backend")))
        if ref is None or ref is row or "_meta_params_after_first_step" not in row:
            continue
        diffs = [
            float(np.max(np.abs(np.asarray(a) - np.asarray(b)), initial=0.0))
            for a, b in zip(
                row["_meta_params_after_first_step"],
                ref["_meta_params_after_first_step"],
                strict=True,
            )
        ]
        row["max_abs_diff_vs_engine"] = max(diffs, default=0.0)
    for row in rows:
        row.pop("_meta_params_after_first_step", None)


def add_speedups(rows: list[dict[str, Any]]) -> None:
    """Inner steps/s of each row over the 1-device reference of the same family and backend."""
    refs = {
        (r["family"], r["backend"]): r["inner_steps_per_s"]
        for r in rows
        if r.get("implementation") == "reference" and "inner_steps_per_s" in r
    }
    for row in rows:
        ref = refs.get((row.get("family"), row.get("backend")))
        if ref and "inner_steps_per_s" in row:
            row["speedup_over_reference"] = row["inner_steps_per_s"] / ref


def run(args: argparse.Namespace, log: Callable[[str], None]) -> dict[str, Any]:
    cfg = settings(args)
    check_settings(cfg)
    busy = _common.cpu_busy_fraction()
    load_start = list(os.getloadavg())
    t_start = time.perf_counter()
    info = run_child("info", cfg, log, platform_name="default")
    log(f"default backend: {info.get('backend')} ({', '.join(info.get('devices', []))})")
    plan: list[tuple[str, int, str, str]] = []
    families = args.families or (["quadratic"] if args.quick else list(FAMILIES))
    if not args.skip_throughput:
        for family in families:
            plan += [("cpu", 1, family, "engine"), ("cpu", 1, family, "reference")]
            plan.append(("cpu", FORCED_DEVICES, family, "engine"))
            if info.get("backend") == "gpu":
                plan += [("default", 1, family, "engine"), ("default", 1, family, "reference")]
    rows = []
    for platform_name, devices, family, impl in plan:
        log(f"{family}: {impl}, {devices} device(s), platform {platform_name} ...")
        row = run_child(
            "row",
            cfg,
            log,
            platform_name=platform_name,
            devices=devices,
            family=family,
            impl=impl,
        )
        row.update({"family": family, "implementation": impl, "devices": devices})
        row.setdefault("backend", "cpu" if platform_name == "cpu" else info.get("backend"))
        rows.append(row)
        if "error" in row:
            log(f"  error: {row['error']}")
        else:
            log(
                f"  {row['inner_steps_per_s']:.0f} inner steps/s, compile {row['compile_s']:.1f} s,"
                f" XLA peak {row['xla_memory'].get('peak_bytes', 0) / 2**20:.1f} MiB,"
                f" max RSS {row['max_rss_mb']:.0f} MiB"
            )
    compare_meta_params(rows)
    add_speedups(rows)
    beat = None
    if not args.skip_beat:
        log(
            f"time to beat Adam: meta-training up to {cfg['max_seconds']:g} s, evaluating every "
            f"{cfg['eval_every']} meta-steps ..."
        )
        beat = run_child("beat", cfg, log, platform_name=args.beat_platform)
        if "error" in beat:
            log(f"  error: {beat['error']}")
        else:
            log(
                f"  {'reached' if beat['reached'] else 'not reached'} after "
                f"{beat['train_s_total']:.1f} s, {beat['meta_steps']} meta-steps: LSTM median "
                f"{beat['lstm_median']:.4g}, Adam median {beat['adam_median']:.4g}"
            )
    return {
        "benchmark": "meta_throughput",
        "command": "python benchmarks/meta_throughput.py " + shlex.join(sys.argv[1:]),
        "machine": _common.machine({**info, "jax_devices": info.get("devices")}),
        "cpu_busy_fraction_before_start": busy,
        "load_average_start": load_start,
        "load_average_end": list(os.getloadavg()),
        "config": cfg,
        "rows": rows,
        "time_to_beat_adam": beat,
        "wall_s": time.perf_counter() - t_start,
    }


def render_markdown(result: dict[str, Any]) -> str:
    """This benchmark's section of RESULTS.md, markers included."""
    m, cfg = result["machine"], result["config"]
    busy = result.get("cpu_busy_fraction_before_start")
    load = result["load_average_start"]
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
        f"Machine: {m['cpu_model'] or 'unknown CPU'}, {m['cpu_count']} cores, "
        f"{_fmt(m['memory_gb'], '.0f')} GB, {m['platform']}; jax {m['jax_version']} "
        f"(jaxlib {m['jaxlib_version']}), optax {m['optax_version']}; default backend "
        f"`{m['backend']}`, devices `{', '.join(m['jax_devices'] or [])}`.",
        f"Other load: CPUs {_fmt(None if busy is None else 100 * busy, '.0f')}% busy in the "
        f"second before the run, load average {load[0]:.2f} at start and "
        f"{result['load_average_end'][0]:.2f} at the end; run time {result['wall_s']:.0f} s.",
    ]
    if cfg.get("quick"):
        lines += ["", "**`--quick` smoke run: shrunk settings, not benchmark figures.**"]
    if m.get("jax_compilation_cache_dir"):
        lines += [
            "",
            "**JAX_COMPILATION_CACHE_DIR was set: compile times may come from the persistent "
            "cache.**",
        ]
    lines += [
        "",
        "### Throughput",
        "",
        "`LSTMOptimizer()` defaults, `TruncatedBackprop(unroll_length="
        f"{cfg['throughput_unroll']}, horizon={cfg['throughput_horizon']})` (first order, "
        "meta-loss `sum`), meta-optimizer clip 1.0 + Adam 1e-3. *engine*: `MetaTrainer.step` "
        "(inner steps under `lax.scan`, tasks under `vmap` and sharded over the devices, one "
        "`jit`). *reference*: the same meta-step with a Python loop over the tasks, each task one "
        "call of `jax.jit(value_and_grad(segment_loss))` whose inner steps are a Python loop "
        "(unrolled for XLA: no scan, no vmap), the meta-gradients averaged in Python, then a "
        "jitted meta-update. Both start from the same state; the last column compares the "
        "meta-parameters after the first meta-step with the 1-device engine's. Inner "
        "steps/s: tasks x unroll / median seconds of a steady-state "
        f"meta-step (timed steps: {cfg['repeats']} engine, {cfg['reference_repeats']} "
        "reference; after the compiling call and one warm-up). Compile: first call - median step. "
        "XLA peak: temp + argument + output bytes of the compiled meta-step's "
        "`memory_analysis()` (per device; for the reference, of its per-task program). Max RSS: "
        "`ru_maxrss` of the process that measured the row (one process per row: jax, the data, "
        "compilation and the steps). 4-device rows are forced host devices "
        "(`--xla_force_host_platform_device_count=4`) sharing the same cores: they show the "
        "cost of sharding, not extra hardware. Speed-up: over the 1-device reference of the same "
        "family and backend.",
        "",
        "| family | implementation | devices | tasks | unroll | inner steps/s | compile s "
        "| peak memory: XLA / max RSS (MiB) | speed-up over reference | meta-params after "
        "step 1: max abs diff vs 1-device engine |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in result["rows"]:
        devices = f"{row['devices']} {row.get('backend', '')}".strip()
        if "error" in row:
            lines.append(
                f"| {row['family']} | {row['implementation']} | {devices} | | | "
                f"error: {row['error']} | | | | |"
            )
            continue
        xla = row["xla_memory"].get("peak_bytes")
        lines.append(
            f"| {row['family']} | {row['implementation']} | {devices} | {row['tasks']} "
            f"| {row['unroll']} | {row['inner_steps_per_s']:,.0f} | {row['compile_s']:.1f} "
            f"| {_fmt(None if xla is None else xla / 2**20, '.1f')} / {row['max_rss_mb']:.0f} "
            f"| {_fmt(row.get('speedup_over_reference'), '.1f')}"
            f"{'x' if row.get('speedup_over_reference') else ''} "
            f"| {_fmt(row.get('max_abs_diff_vs_engine'), '.1e')} |"
        )
    lines += ["", *beat_markdown(result.get("time_to_beat_adam")), END_MARKER]
    return "\n".join(lines) + "\n"


def beat_markdown(beat: dict[str, Any] | None) -> list[str]:
    lines = ["### Time to beat Adam", ""]
    if beat is None:
        return [*lines, "Not run (`--skip-beat`).", ""]
    if "error" in beat:
        return [*lines, f"Failed: {beat['error']}.", ""]
    c = beat["config"]
    lines.append(
        f"`LSTMOptimizer(output_scale={c['output_scale']:g}, "
        f"normalized_inputs={c['normalized_inputs']})` meta-trained on "
        f"`Quadratic(dim=10)` with `TruncatedBackprop(unroll_length={c['unroll']}, "
        f'horizon={c["horizon"]}, meta_loss="{c["meta_loss"]}")`, {c["tasks"]} tasks per '
        f"meta-step, Adam {c['meta_lr']:g} on the meta-parameters (clip 1.0), 1 device "
        f"(`{beat['backend']}`). The clock counts meta-training only (trainer construction, "
        "initialisation, compilation and `MetaTrainer.run`), not evaluation; every "
        f"{beat['eval_every']} meta-steps the learned optimizer trains {beat['eval_tasks']} "
        f"held-out quadratics for {beat['eval_steps']} steps, and the run stops when its median "
        "final loss is below Adam's at its best learning rate (tuned on "
        f"{beat['tune_tasks']} training quadratics over the default grid; best "
        f"{beat['adam_lr']:g}{', at the edge of the grid' if beat['adam_lr_at_grid_edge'] else ''})"
        f"; cap {beat['max_seconds']:g} s."
    )
    lines.append("")
    if beat["reached"]:
        verdict = "meets" if beat["seconds"] < TARGET_S else "misses"
        lines.append(
            f"**Reached in {beat['seconds']:.1f} s** ({beat['meta_steps']} meta-steps): median "
            f"final loss {beat['lstm_median']:.4g} (learned) vs {beat['adam_median']:.4g} (Adam); "
            f"{verdict} the target of {TARGET_S:g} s."
        )
    else:
        lines.append(
            f"**Not reached** within {beat['max_seconds']:g} s ({beat['meta_steps']} meta-steps, "
            f"{beat['train_s_total']:.1f} s): median final loss {beat['lstm_median']:.4g} "
            f"(learned, best seen {beat['best_lstm_median']:.4g}) vs {beat['adam_median']:.4g} "
            "(Adam)."
        )
    lines += [
        "",
        f"Untrained median {beat['lstm_initial_median']:.4g}; non-finite tasks during "
        f"meta-training: {beat['nonfinite_tasks']}. Public L2L implementations on this kind of "
        "2-core CPU needed about 400 s (PyTorch) or did not get there within the 8 minutes of "
        f"their default run (JAX); the target here is under {TARGET_S:g} s.",
        "",
    ]
    return lines


def write_results_md(path: Path, section: str) -> None:
    """Replaces this benchmark's section of ``path`` (or appends it), keeping everything else."""
    _common.write_section(path, section, BEGIN_MARKER, END_MARKER)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--quick", action="store_true", help="shrink everything for a smoke test (< 1 minute)")
    add("--json-out", type=Path, default=None, help="also write the JSON here")
    add(
        "--results-md",
        type=Path,
        default=None,
        help="rewrite this benchmark's section of this markdown file (benchmarks/RESULTS.md)",
    )
    add("--seed", type=int, default=0)
    add(
        "--families",
        nargs="+",
        choices=FAMILIES,
        default=None,
        help="throughput families (default: both; quadratic only with --quick)",
    )
    add("--skip-throughput", action="store_true", help="only the time to beat Adam")
    add("--skip-beat", action="store_true", help="only the throughput table")
    add(
        "--beat-platform",
        choices=("cpu", "default"),
        default="cpu",
        help="where the time-to-beat-Adam run meta-trains (default: CPU, the reference setting)",
    )
    tp = parser.add_argument_group("throughput (defaults: full run / --quick)")
    tp.add_argument("--throughput-tasks", type=int, help="tasks per meta-step (16 / 4)")
    tp.add_argument("--throughput-unroll", type=int, help="unroll length (20 / 2)")
    tp.add_argument("--throughput-horizon", type=int, help="horizon (100 / 4)")
    tp.add_argument("--repeats", type=int, help="timed engine meta-steps per row (5 / 2)")
    tp.add_argument("--reference-repeats", type=int, help="timed reference meta-steps (3 / 1)")
    bt = parser.add_argument_group("time to beat Adam (defaults: full run / --quick)")
    bt.add_argument("--unroll", type=int, help="unroll length (10 / 5)")
    bt.add_argument("--tasks", type=int, help="tasks per meta-step (64 / 8)")
    bt.add_argument("--meta-lr", type=float, help="Adam learning rate on the meta-params (3e-3)")
    bt.add_argument("--meta-loss", choices=unroll_lib.META_LOSSES, help="meta-loss (log_mean)")
    bt.add_argument("--output-scale", type=float, help="LSTMOptimizer output_scale (0.1)")
    bt.add_argument(
        "--normalized-inputs",
        action=argparse.BooleanOptionalAction,
        help="LSTMOptimizer normalized_inputs (on)",
    )
    bt.add_argument("--eval-every", type=int, help="meta-steps between evaluations (50 / 10)")
    bt.add_argument("--horizon", type=int, help="inner steps before a task resets (100)")
    bt.add_argument("--max-seconds", type=float, help="cap on meta-training seconds (300 / 5)")
    bt.add_argument("--eval-tasks", type=int, help="held-out quadratics (100 / 10)")
    bt.add_argument("--tune-tasks", type=int, help="training quadratics to tune Adam (32 / 4)")
    bt.add_argument("--eval-steps", type=int, help="inner steps of an evaluation run (100)")
    wk = parser.add_argument_group("internal: how the script runs its child processes")
    wk.add_argument("--worker", choices=("info", "row", "beat"), help=argparse.SUPPRESS)
    wk.add_argument("--devices", type=int, default=1, help=argparse.SUPPRESS)
    wk.add_argument("--platform", default="cpu", help=argparse.SUPPRESS)
    wk.add_argument("--family", choices=FAMILIES, help=argparse.SUPPRESS)
    wk.add_argument("--impl", choices=("engine", "reference"), help=argparse.SUPPRESS)
    wk.add_argument("--worker-config", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def worker_main(args: argparse.Namespace) -> None:
    """A child process: measures its part and prints one line of JSON on stdout."""
    cfg = json.loads(args.worker_config)
    if args.worker == "info":
        result = worker_info()
    else:
        if args.platform == "cpu" and jax.device_count() < args.devices:
            raise SystemExit(
                f"--devices {args.devices}: JAX sees {jax.device_count()} device(s); start "
                f"with XLA_FLAGS=--xla_force_host_platform_device_count={args.devices}"
            )
        if args.worker == "row":
            result = worker_row(args.family, args.impl, args.devices, cfg)
        else:
            result = worker_beat(cfg)
    print(json.dumps(result), flush=True)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    warnings.filterwarnings("ignore", message="Some donated buffers were not usable")
    if args.worker:
        worker_main(args)
        return
    log = lambda msg: print(msg, file=sys.stderr, flush=True)
    result = run(args, log)
    _common.emit_json(result, args.json_out)
    if args.results_md:
        write_results_md(args.results_md, render_markdown(result))
        log(f"wrote section of {args.results_md}")


if __name__ == "__main__":
    main()
