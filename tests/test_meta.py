"""Meta-training engine: unrolls, gradient estimators, non-finite handling, sharding."""

import dataclasses
import functools
import os
import subprocess
import sys
import textwrap
from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import learned_opt as lo
from learned_opt.meta import unroll as unroll_lib

QUAD = lo.tasks.Quadratic(dim=4)
SMALL_LSTM = lo.LSTMOptimizer(hidden_size=6, num_layers=1, output_scale=0.1)


def _segment_loss(optimizer, meta_params, run, unroll_length, second_order):
    return unroll_lib.unroll(
        optimizer, QUAD, meta_params, run, unroll_length, second_order=second_order
    )[0]


def test_meta_loss_counts_the_loss_after_every_update():
    rule = lo.LearnedRule()
    mp = rule.init(jax.random.key(0))
    run = unroll_lib.new_run(rule, QUAD, mp, jax.random.key(1))
    value, after, losses = unroll_lib.unroll(rule, QUAD, mp, run, 5)
    # losses are f(theta_0..4); the meta-loss sums f(theta_1..5).
    final = QUAD.loss(run.task_params, after.params, ())
    np.testing.assert_allclose(value, losses[1:].sum() + final, rtol=1e-6)
    assert int(after.step) == 5
    # The last update of the segment receives meta-gradient: final depends on meta_params.
    g = jax.grad(lambda m: unroll_lib.unroll(rule, QUAD, m, run, 1)[0])(mp)
    assert float(jnp.abs(g["log_lr"])) > 0


def test_second_order_gradient_matches_finite_differences():
    rule = lo.LearnedRule()
    mp = rule.init(jax.random.key(0))
    run = unroll_lib.new_run(rule, QUAD, mp, jax.random.key(3))

    def f(log_lr, second_order):
        return _segment_loss(rule, {**mp, "log_lr": log_lr}, run, 8, second_order)

    x, h = mp["log_lr"], 1e-2
    fd = (f(x + h, True) - f(x - h, True)) / (2 * h)
    np.testing.assert_allclose(jax.grad(f)(x, True), fd, rtol=1e-3)
    # The first-order (L2L) estimator drops the second-derivative term: a different number.
    assert abs(jax.grad(f)(x, False) - fd) > 0.05 * abs(fd)


def test_runs_are_desynchronised_and_reset_at_the_horizon():
    est = lo.TruncatedBackprop(unroll_length=5, horizon=20)
    mp = SMALL_LSTM.init(jax.random.key(0))
    runs = est.init(SMALL_LSTM, QUAD, mp, jax.random.key(1), num_tasks=8)
    np.testing.assert_array_equal(runs.horizon, 20)
    assert sorted(np.asarray(runs.step).tolist()) == [0, 0, 5, 5, 10, 10, 15, 15]
    estimate, runs2 = est.estimate(SMALL_LSTM, QUAD, mp, runs, jax.random.key(2))
    assert not estimate.resets.any()
    assert sorted(np.asarray(runs2.step).tolist()) == [5, 5, 10, 10, 15, 15, 20, 20]
    estimate, runs3 = est.estimate(SMALL_LSTM, QUAD, mp, runs2, jax.random.key(3))
    np.testing.assert_array_equal(estimate.resets, np.asarray(runs2.step) == 20)
    reset = np.asarray(estimate.resets)
    assert (np.asarray(runs3.step)[reset] == 5).all()
    # A reset run starts a new task.
    w2, w3 = np.asarray(runs2.task_params["w"]), np.asarray(runs3.task_params["w"])
    assert not np.allclose(w2[reset], w3[reset])
    np.testing.assert_array_equal(w2[~reset], w3[~reset])


def test_pes_matches_the_exact_gradient_on_one_segment():
    rule = lo.LearnedRule()
    mp = rule.init(jax.random.key(0))
    pes = lo.PES(unroll_length=5, horizon=5, std=1e-3)
    tbptt = lo.TruncatedBackprop(unroll_length=5, horizon=5, second_order=True)
    n = 4096
    state = pes.init(rule, QUAD, mp, jax.random.key(1), n)
    # Every particle pair starts its first segment on its own task; compare the averages.
    estimate, _ = jax.jit(lambda s, k: pes.estimate(rule, QUAD, mp, s, k))(state, jax.random.key(2))
    exact, _ = tbptt.estimate(rule, QUAD, mp, state.positive, jax.random.key(2))
    g_pes = np.concatenate([np.ravel(x.mean(0)) for x in jax.tree.leaves(estimate.grads)])
    g_exact = np.concatenate([np.ravel(x.mean(0)) for x in jax.tree.leaves(exact.grads)])
    cosine = g_pes @ g_exact / np.linalg.norm(g_pes) / np.linalg.norm(g_exact)
    assert cosine > 0.9, cosine


def test_pes_accumulates_perturbations_until_reset():
    rule = lo.LearnedRule()
    mp = rule.init(jax.random.key(0))
    pes = lo.PES(unroll_length=2, horizon=4, std=0.1)
    state = pes.init(rule, QUAD, mp, jax.random.key(1), 2)
    assert np.asarray(state.positive.step).tolist() == [0, 2]
    _, s1 = pes.estimate(rule, QUAD, mp, state, jax.random.key(2))
    _, s2 = pes.estimate(rule, QUAD, mp, s1, jax.random.key(3))
    acc1, acc2 = np.asarray(s1.accumulated["log_lr"]), np.asarray(s2.accumulated["log_lr"])
    # Task 0 is mid-run: its accumulator keeps the first perturbation and adds the second.
    # Task 1 reached the horizon after segment 1: reset, its accumulator restarts from zero.
    eps0 = acc1  # both tasks started from zero
    eps1 = acc2 - np.array([acc1[0], 0.0])
    assert np.all(np.abs(eps0) > 0) and np.all(np.abs(eps1) > 0)
    np.testing.assert_allclose(acc2[0], eps0[0] + eps1[0], rtol=1e-6)
    assert not np.isclose(acc2[1], acc1[1] + eps1[1])
    assert np.asarray(s2.positive.step).tolist() == [4, 2]


def test_meta_training_improves_the_optimizer():
    opt = lo.LSTMOptimizer(hidden_size=8, num_layers=1, output_scale=0.1)
    family = lo.tasks.Quadratic(dim=10)
    trainer = lo.MetaTrainer(
        opt,
        family,
        lo.TruncatedBackprop(unroll_length=10, horizon=50, meta_loss="log_mean"),
        optax.adam(3e-3),
        num_tasks=16,
    )
    keys = lo.evaluation.task_keys(1, 32, "test")

    def median_final(mp):
        return np.median(lo.evaluation.train_curves(family, opt.as_optax(mp), keys, 50).final)

    state = trainer.init(jax.random.key(0))
    start = median_final(state.meta_params)
    for _ in range(150):
        state, _ = trainer.step(state)
    assert median_final(state.meta_params) < 0.5 * start


@pytest.mark.parametrize("estimator", [lo.TruncatedBackprop(5, 10), lo.PES(5, 10)])
def test_task_chunks_compute_the_same_estimate(estimator):
    mp = SMALL_LSTM.init(jax.random.key(0))
    chunked = dataclasses.replace(estimator, task_chunk=2)
    state = estimator.init(SMALL_LSTM, QUAD, mp, jax.random.key(1), 4)

    def run(est):
        return jax.jit(lambda s: est.estimate(SMALL_LSTM, QUAD, mp, s, jax.random.key(2)))(state)

    (a, _), (b, _) = run(estimator), run(chunked)
    # Equal up to float reassociation in the batched matmuls.
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-3, atol=1e-5), a, b)
    with pytest.raises(ValueError, match="task_chunk"):
        dataclasses.replace(estimator, task_chunk=3).estimate(
            SMALL_LSTM, QUAD, mp, state, jax.random.key(2)
        )


def test_a_mixture_step_is_the_task_weighted_mean_of_the_families_meta_gradients():
    rule = lo.LearnedRule()
    small, large = lo.tasks.Quadratic(dim=3), lo.tasks.Quadratic(dim=5)
    mixture = lo.tasks.Mixture(((small, 4), (large, 2)))
    est = lo.TruncatedBackprop(unroll_length=3, horizon=6)
    trainer = lo.MetaTrainer(rule, mixture, est, optax.sgd(1.0), clip_norm=None)
    state = trainer.init(jax.random.key(0))
    shapes = [s.params.shape for s in state.estimator_state]
    assert trainer.num_tasks == 6 and shapes == [(4, 3), (2, 5)]
    new, metrics = trainer.step(state)
    # Each family on its own (truncated backprop draws nothing from the key).
    per_family = [
        est.estimate(rule, family, state.meta_params, runs, jax.random.key(9))[0]
        for family, runs in zip((small, large), state.estimator_state, strict=True)
    ]
    assert all(bool(e.finite.all()) for e in per_family)
    means = [jax.tree.map(lambda g: g.mean(0), e.grads) for e in per_family]
    expected = jax.tree.map(lambda a, b: (4 * a + 2 * b) / 6, *means)
    applied = jax.tree.map(jnp.subtract, state.meta_params, new.meta_params)  # SGD, rate 1
    close = functools.partial(np.testing.assert_allclose, rtol=2e-5, atol=1e-7)
    jax.tree.map(close, applied, expected)
    unweighted = jax.tree.map(lambda a, b: (a + b) / 2, *means)
    assert not np.allclose(unweighted["log_lr"], expected["log_lr"], rtol=1e-3)
    for label, e in zip(("quadratic_0", "quadratic_1"), per_family, strict=True):
        np.testing.assert_allclose(metrics[f"meta_loss/{label}"], e.meta_loss.mean(), rtol=1e-5)
    small_loss, large_loss = (e.meta_loss.mean() for e in per_family)
    np.testing.assert_allclose(
        metrics["meta_loss"], (4 * small_loss + 2 * large_loss) / 6, rtol=1e-5
    )
    trainer.step(new)
    assert trainer._jitted[False]._cache_size() == 1  # one program for the whole mixture
    with pytest.raises(ValueError, match=r"num_tasks: a mixture sets its own \(6\); got 8"):
        lo.MetaTrainer(rule, mixture, est, num_tasks=8)
    with pytest.raises(TypeError, match=r"components\[1\]: expected a TaskFamily, got str"):
        lo.tasks.Mixture(((small, 2), (cast(Any, "mlp"), 2)))
    with pytest.raises(
        ValueError, match=r"components\[0\] num_tasks: expected an integer >= 1, got 0"
    ):
        lo.tasks.Mixture(((small, 0),))


def test_random_horizons_stay_in_range_and_differ_across_runs_and_resets():
    rule = lo.LearnedRule()
    mp = rule.init(jax.random.key(0))
    est = lo.PES(unroll_length=5, horizon=cast(Any, [10, 400]))  # a list, as from JSON
    assert est.horizon == (10, 400) and est.config()["horizon"] == (10, 400)
    state = est.init(rule, QUAD, mp, jax.random.key(1), 64)
    horizons, steps = np.asarray(state.positive.horizon), np.asarray(state.positive.step)
    np.testing.assert_array_equal(horizons, np.asarray(state.negative.horizon))
    assert horizons.min() >= 10 and horizons.max() <= 400 and (horizons % 5 == 0).all()
    assert len(set(horizons.tolist())) > 20
    assert (steps < horizons).all() and (steps % 5 == 0).all() and steps.max() > 5
    # Send every run to reset: each draws a new horizon.
    done = state._replace(positive=state.positive._replace(step=state.positive.horizon))
    _, after = est.estimate(rule, QUAD, mp, done, jax.random.key(2))
    fresh = np.asarray(after.positive.horizon)
    np.testing.assert_array_equal(np.asarray(after.positive.step), 5)
    assert fresh.min() >= 10 and fresh.max() <= 400 and (fresh != horizons).mean() > 0.8
    bad_horizons = {
        (10, 401): "multiple of unroll_length",
        (20, 10): "low <= high",
        (0, 10): "horizon: expected an integer >= 1, got 0",
        (2, 10): r"horizon: expected at least unroll_length \(5\), got \(2, 10\)",
        (10,): "pair",
    }
    for bad, match in bad_horizons.items():
        with pytest.raises((TypeError, ValueError), match=match):
            lo.PES(unroll_length=5, horizon=cast(Any, bad))


def test_estimators_implement_the_public_protocol():
    pes, tbptt = lo.PES(5, 10), lo.TruncatedBackprop(5, 10)
    assert isinstance(pes, lo.GradientEstimator) and isinstance(tbptt, lo.GradientEstimator)
    assert not isinstance(object(), lo.GradientEstimator)
    # The trainer asks the estimator how many inner steps a meta-step takes (no isinstance).
    assert lo.MetaTrainer(SMALL_LSTM, QUAD, pes, num_tasks=4).inner_steps_per_meta_step() == 40
    assert lo.MetaTrainer(SMALL_LSTM, QUAD, tbptt, num_tasks=4).inner_steps_per_meta_step() == 20
    assert pes.config() == {
        "name": "PES", "unroll_length": 5, "horizon": 10, "meta_loss": "sum",
        "task_chunk": None, "std": 0.01,
    }  # fmt: skip


def test_trainer_and_checkpoint_modules_do_not_import_each_other():
    import ast
    from pathlib import Path

    def imported(module):
        tree = ast.parse(Path(lo.__file__).parent.joinpath("meta", f"{module}.py").read_text())
        names = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                names |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
            elif isinstance(node, ast.Import):
                names |= {a.name for a in node.names}
        return names

    assert not any("trainer" in name for name in imported("checkpoint"))
    assert "learned_opt.meta.state.MetaTrainState" in imported("trainer")


def test_num_tasks_must_divide_over_devices():
    with pytest.raises(ValueError, match="num_tasks"):
        lo.MetaTrainer(SMALL_LSTM, QUAD, num_tasks=0)
    with pytest.raises(ValueError, match="horizon"):
        lo.TruncatedBackprop(unroll_length=7, horizon=20)
    with pytest.raises(ValueError, match="meta_loss"):
        lo.PES(meta_loss=cast(Any, "max"))
    with pytest.raises(TypeError, match="second_order: expected True or False, got 'no'"):
        lo.TruncatedBackprop(second_order=cast(Any, "no"))
    with pytest.raises(TypeError, match=r"unroll_length: expected an integer >= 1, got 5\.0"):
        lo.TruncatedBackprop(unroll_length=cast(Any, 5.0), horizon=10)
    with pytest.raises(ValueError, match=r"std: expected a finite number > 0.0, got 0.0$"):
        lo.PES(std=0)


_SHARDED = textwrap.dedent(
    """
    import json, sys
    import jax, numpy as np
    import learned_opt as lo
    opt = lo.LSTMOptimizer(hidden_size=6, num_layers=1)
    if sys.argv[1] == "tbptt":  # a mixture: one vmap per family, each sharded over the mesh
        family = lo.tasks.Mixture(((lo.tasks.Quadratic(dim=4), 8), (lo.tasks.Quadratic(dim=3), 4)))
        trainer = lo.MetaTrainer(opt, family, lo.TruncatedBackprop(5, 10))
    else:
        trainer = lo.MetaTrainer(opt, lo.tasks.Quadratic(dim=4), lo.PES(5, 10), num_tasks=8)
    state = trainer.init(jax.random.key(0))
    for _ in range(2):
        state, metrics = trainer.step(state)
    leaves = [np.asarray(x).ravel().tolist() for x in jax.tree.leaves(state.meta_params)]
    shards = ([len(s.key.sharding.device_set) for s in state.estimator_state]
              if sys.argv[1] == "tbptt" else [])
    compiles = trainer._jitted[False]._cache_size()
    print(json.dumps({"devices": jax.device_count(), "shards": shards, "compiles": compiles,
                      "meta_loss": float(metrics["meta_loss"]), "leaves": leaves}))
    """
)


def _run_devices(n, estimator):
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={n}"}
    out = subprocess.run(
        [sys.executable, "-c", _SHARDED, estimator], env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    import json

    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("estimator", ["tbptt", "pes"])
def test_sharded_meta_training_matches_single_device(estimator):
    one, four = _run_devices(1, estimator), _run_devices(4, estimator)
    assert one["devices"] == 1 and four["devices"] == 4
    # The second meta-step reuses the first one's program (same input shardings).
    assert one["compiles"] == four["compiles"] == 1
    if estimator == "tbptt":
        assert four["shards"] == [4, 4]
    np.testing.assert_allclose(four["meta_loss"], one["meta_loss"], rtol=1e-4)
    for a, b in zip(four["leaves"], one["leaves"], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
