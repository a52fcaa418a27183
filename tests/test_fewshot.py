"""Few-shot methods: exact meta-gradients on tiny cases, learning on sinusoids, input errors."""

import dataclasses
import functools
import importlib
import sys
from pathlib import Path
from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jax.flatten_util import ravel_pytree

import learned_opt as lo
from learned_opt import fewshot
from learned_opt.tasks import Sinusoid


def tanh_apply(params, x):
    h = jnp.tanh(x @ params["w1"] + params["b1"][None, :])
    return h @ params["w2"]


def tiny_params(key=0):
    k1, k2, k3 = jax.random.split(jax.random.key(key), 3)
    return {
        "w1": jax.random.normal(k1, (1, 3)),
        "b1": 0.5 * jax.random.normal(k2, (3,)),
        "w2": jax.random.normal(k3, (3, 1)),
    }


def tiny_episodes(num_tasks=2, k=4, key=1):
    """Fixed regression episodes for the tiny tanh model."""
    kx, ky = jax.random.split(jax.random.key(key))
    x = jax.random.normal(kx, (num_tasks, 2 * k, 1))
    y = jnp.sin(2.0 * x) + 0.3 * jax.random.normal(ky, x.shape)
    return fewshot.Episodes((x[:, :k], y[:, :k]), (x[:, k:], y[:, k:]))


def mse_of(params, batch):
    x, y = batch
    return jnp.mean((tanh_apply(params, x) - y) ** 2)


def sgd_steps(params, batch, lr, num_steps, alternate=None):
    """Plain-Python SGD on one task: the reference inner loop (odd steps on ``alternate``)."""
    for step in range(num_steps):
        on = batch if alternate is None or step % 2 == 0 else alternate
        grads = jax.grad(mse_of)(params, on)
        params = jax.tree.map(lambda p, g: p - lr * g, params, grads)
    return params


def task(episodes, i):
    return jax.tree.map(lambda a: a[i], episodes)


def meta_grad(learner, params, episodes):
    """The averaged meta-gradient: with meta-optimizer ``sgd(1)`` it is ``θ - θ_new``."""
    new, _ = learner.update(learner.init(params), episodes)
    return jax.tree.map(lambda a, b: a - b, params, new.params)


def assert_trees_close(a, b, **tol):
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, **tol), a, b)


LR, STEPS = 0.3, 2


@functools.cache
def tiny_meta_grads():
    """MAML's and first-order MAML's meta-gradients on the tiny case (each compiled once)."""
    params, episodes = tiny_params(), tiny_episodes()
    return {
        name: meta_grad(
            method(tanh_apply, inner=LR, num_inner_steps=STEPS, meta_optimizer=optax.sgd(1.0)),
            params,
            episodes,
        )
        for name, method in [("maml", fewshot.maml), ("fo", fewshot.first_order_maml)]
    }


def test_first_order_maml_gradient_is_query_gradient_at_adapted_params():
    params, episodes = tiny_params(), tiny_episodes()
    expected = []
    for i in range(2):
        support, query = task(episodes, i)
        expected.append(jax.grad(mse_of)(sgd_steps(params, support, LR, STEPS), query))
    expected = jax.tree.map(lambda a, b: (a + b) / 2, *expected)
    assert_trees_close(tiny_meta_grads()["fo"], expected, rtol=1e-4, atol=1e-6)


def meta_objective(params, episodes):
    """The MAML objective computed by hand: mean query loss after SGD on the support set."""
    losses = []
    for i in range(2):
        support, query = task(episodes, i)
        losses.append(mse_of(sgd_steps(params, support, LR, STEPS), query))
    return sum(losses) / 2


def test_maml_second_order_gradient_matches_finite_differences():
    params, episodes = tiny_params(), tiny_episodes()
    maml_grad, fo_grad = tiny_meta_grads()["maml"], tiny_meta_grads()["fo"]
    flat, unravel = ravel_pytree(params)
    objective = jax.jit(lambda v: meta_objective(unravel(v), episodes))
    eps = 1e-2
    basis = jnp.eye(flat.shape[0])
    fd = jnp.stack(
        [(objective(flat + eps * e) - objective(flat - eps * e)) / (2 * eps) for e in basis]
    )
    maml_flat = ravel_pytree(maml_grad)[0]
    fo_flat = ravel_pytree(fo_grad)[0]
    # The second-order term (MAML minus first-order) is what finite differences see too.
    second_order = maml_flat - fo_flat
    assert float(jnp.linalg.norm(second_order)) > 0.1 * float(jnp.linalg.norm(fd))
    np.testing.assert_allclose(second_order, fd - fo_flat, atol=2e-3 * float(jnp.abs(fd).max()))
    np.testing.assert_allclose(maml_flat, fd, atol=2e-3 * float(jnp.abs(fd).max()))


@pytest.mark.parametrize("schedule", [False, True])
def test_reptile_update_is_step_toward_adapted_params(schedule):
    params, episodes = tiny_params(), tiny_episodes()
    epsilon = 0.25
    step_size = optax.constant_schedule(epsilon) if schedule else epsilon
    learner = fewshot.reptile(tanh_apply, inner=LR, num_inner_steps=3, meta_step_size=step_size)
    new, loss = learner.update(learner.init(params), episodes)
    # Reptile's inner loop alternates support, query, support.
    tasks = [task(episodes, i) for i in range(2)]
    adapted = [sgd_steps(params, support, LR, 3, alternate=query) for support, query in tasks]
    expected = jax.tree.map(
        lambda p, a0, a1: p + epsilon * ((a0 - p) + (a1 - p)) / 2, params, *adapted
    )
    assert_trees_close(new.params, expected, rtol=1e-5, atol=1e-6)
    query_losses = [mse_of(a, task(episodes, i).query) for i, a in enumerate(adapted)]
    np.testing.assert_allclose(loss, sum(query_losses) / 2, rtol=1e-5)
    assert int(new.step) == 1


@pytest.mark.parametrize("num_steps", [3, 4])
def test_inner_loop_alternates_batches_and_scores_every_step(num_steps):
    params, episodes = tiny_params(), tiny_episodes(num_tasks=1)
    support, query = task(episodes, 0)
    adapted, scores = fewshot.inner_loop(
        mse_of,
        optax.sgd(LR),
        params,
        support,
        num_steps,
        score=lambda p: mse_of(p, query),
        alternate=query,
    )
    assert scores is not None and scores.shape == (num_steps + 1,)
    for s in range(num_steps + 1):
        expected = mse_of(sgd_steps(params, support, LR, s, alternate=query), query)
        np.testing.assert_allclose(scores[s], expected, rtol=1e-5)
    expected = sgd_steps(params, support, LR, num_steps, alternate=query)
    assert_trees_close(adapted, expected, rtol=1e-5, atol=1e-6)


def test_task_chunk_gives_the_vectorised_results():
    params, episodes = tiny_params(), tiny_episodes(num_tasks=3)
    vectorised = fewshot.maml(tanh_apply, inner=LR, num_inner_steps=2)
    state = vectorised.init(params)
    new, loss = vectorised.update(state, episodes)
    curves = vectorised.evaluate(state, episodes, 2)
    for chunk in (1, 2):  # 2 does not divide the 3 tasks
        chunked = fewshot.maml(tanh_apply, inner=LR, num_inner_steps=2, task_chunk=chunk)
        new_c, loss_c = chunked.update(state, episodes)
        assert_trees_close(new_c.params, new.params, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(loss_c, loss, rtol=1e-5)
        np.testing.assert_allclose(chunked.evaluate(state, episodes, 2), curves, rtol=1e-5)


def test_pretrain_update_is_gradient_of_joint_loss():
    params, episodes = tiny_params(), tiny_episodes()
    learner = fewshot.pretrain(tanh_apply, optimizer=optax.sgd(1.0))

    def joint(p):
        return (
            sum(
                0.5 * (mse_of(p, task(episodes, i).support) + mse_of(p, task(episodes, i).query))
                for i in range(2)
            )
            / 2
        )

    assert_trees_close(
        meta_grad(learner, params, episodes), jax.grad(joint)(params), rtol=1e-4, atol=1e-6
    )


def test_evaluate_and_adapt_follow_the_inner_loop():
    params, episodes = tiny_params(), tiny_episodes()
    learner = fewshot.maml(tanh_apply, inner=LR)
    state = learner.init(params)
    curves = learner.evaluate(state, episodes, 3)
    assert curves.shape == (2, 4)
    for i in range(2):
        support, query = task(episodes, i)
        for s in range(4):
            np.testing.assert_allclose(
                curves[i, s], mse_of(sgd_steps(params, support, LR, s), query), rtol=1e-5
            )
        assert_trees_close(
            learner.adapt(state, support, 3),
            sgd_steps(params, support, LR, 3),
            rtol=1e-5,
            atol=1e-6,
        )
    # A metric other than the loss: mean absolute error.
    mae = learner.evaluate(state, episodes, 0, metric=lambda p, y: jnp.mean(jnp.abs(p - y)))
    expected = jnp.mean(jnp.abs(tanh_apply(params, episodes.query[0][0]) - episodes.query[1][0]))
    np.testing.assert_allclose(mae[0, 0], expected, rtol=1e-6)


def test_learned_optimizer_as_inner_optax_transformation():
    """``opt.as_optax(sgd_meta_params(lr))`` inside MAML reproduces plain SGD exactly."""
    params, episodes = tiny_params(), tiny_episodes()
    opt = lo.MetaLSTMOptimizer(hidden_size=4)
    tx = opt.as_optax(opt.sgd_meta_params(LR))
    via_learned = meta_grad(
        fewshot.maml(tanh_apply, inner=tx, num_inner_steps=STEPS, meta_optimizer=optax.sgd(1.0)),
        params,
        episodes,
    )
    assert_trees_close(via_learned, tiny_meta_grads()["maml"], rtol=1e-4, atol=1e-6)


def test_meta_lstm_trains_optimizer_and_initial_params():
    params, episodes = tiny_params(), tiny_episodes()
    opt = lo.MetaLSTMOptimizer(hidden_size=4)
    learner = fewshot.meta_lstm(tanh_apply, optimizer=opt, num_inner_steps=2)
    state = learner.init(params)
    assert_trees_close(state.optimizer_params, opt.init(jax.random.key(0)))
    new, loss = learner.update(state, episodes)
    assert np.isfinite(float(loss))
    for old_tree, new_tree in [
        (state.params, new.params),
        (state.optimizer_params, new.optimizer_params),
    ]:
        changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), old_tree, new_tree)
        assert any(jax.tree.leaves(changed))
    # Started as SGD, the Meta-LSTM learner's evaluation is SGD's.
    sgd_state = learner.init(params, opt.sgd_meta_params(LR))
    np.testing.assert_allclose(
        learner.evaluate(sgd_state, episodes, 2),
        fewshot.maml(tanh_apply, inner=LR).evaluate(sgd_state, episodes, 2),
        rtol=1e-5,
    )


@pytest.mark.parametrize("learning_rate", [None, 0.05, 0.4])
def test_meta_lstm_starts_as_sgd_at_its_learning_rate(learning_rate):
    """Forget gate near 1, input gate near the given rate (Ravi & Larochelle's initialisation)."""
    family = Sinusoid(hidden_sizes=(16,))
    params = family.init(None, jax.random.key(0))  # zero biases: no forget-gate decay term
    learner = fewshot.meta_lstm(family.apply, learning_rate=learning_rate)
    state = learner.init(params)
    support = family.points(family.sample(jax.random.key(1)), jax.random.key(2), 10)
    grads = jax.grad(lambda p: fewshot.mse(family.apply(p, support[0]), support[1]))(params)
    adapted = learner.adapt(state, support, 1)
    ratios = np.concatenate(
        [-(a["b"] - p["b"]) / g["b"] for a, p, g in zip(adapted, params, grads, strict=True)]
    )
    rate = 1 / (1 + np.exp(4.5)) if learning_rate is None else learning_rate  # U[-5, -4]
    # The bias range spans a factor e around the rate; the small gate weights add a little.
    assert np.exp(-0.8) * rate < ratios.min() and ratios.max() < np.exp(0.8) * rate
    with pytest.raises(ValueError, match="learning_rate"):
        fewshot.meta_lstm(family.apply, learning_rate=1.5)


#: Meta-iterations x tasks each method's defaults get below; the slow ones (first-order MAML
#: learns slowest per task, the Meta-LSTM learner costs most per task) run in CI's second step.
DEFAULTS_BUDGET = [
    ("maml", 3000, 4),
    ("reptile", 3000, 4),
    pytest.param("first_order_maml", 3000, 25, marks=pytest.mark.slow),
    pytest.param("pretrain", 3000, 4, marks=pytest.mark.slow),
    pytest.param("meta_lstm", 3000, 4, marks=pytest.mark.slow),
]


@pytest.mark.parametrize("method, iterations, tasks", DEFAULTS_BUDGET)
def test_defaults_learn_to_adapt_to_new_sinusoid_tasks(method, iterations, tasks):
    """Every method with its defaults (the public API, the 1-40-40-1 network of the MAML paper),
    meta-trained on K = 10 episodes, then adapted to 5 points of 100 tasks it never saw."""
    family = Sinusoid()
    # One task at a time: the Meta-LSTM learner's per-coordinate LSTM is ~10x faster so on CPU.
    chunk = {"task_chunk": 1} if method == "meta_lstm" else {}
    learner = getattr(fewshot, method)(family.apply, "mse", **chunk)
    state = learner.init(family.init(None, jax.random.key(0)))
    sample = functools.partial(
        fewshot.sample_episodes, family, num_tasks=tasks, k_support=10, k_query=10
    )
    state, _ = fewshot.fit(learner, state, sample, jax.random.key(1), iterations)
    new_tasks = fewshot.sample_episodes(family, jax.random.key(2), 100, 5, 50)
    mse = np.asarray(learner.evaluate(state, new_tasks, 10)).mean(axis=0)
    assert np.isfinite(mse).all() and mse[1] < mse[0], mse
    if method == "pretrain":  # the baseline: trained to fit all tasks, not to adapt
        # Its error falls for a few steps, then rises as it overfits the 5 points.
        assert mse[1:].min() < 0.95 * mse[0], mse
    else:
        assert mse[10] < 0.5 * mse[0], mse


def test_flax_nnx_model_via_split_and_merge():
    class MLP(nnx.Module):
        def __init__(self, rngs):
            self.l1 = nnx.Linear(1, 16, rngs=rngs)
            self.l2 = nnx.Linear(16, 1, rngs=rngs)

        def __call__(self, x):
            return self.l2(jnp.tanh(self.l1(x)))

    graphdef, params = nnx.split(MLP(nnx.Rngs(0)), nnx.Param)
    apply = lambda p, x: nnx.merge(graphdef, p)(x)
    learner = fewshot.maml(apply, inner=0.05, meta_optimizer=optax.adam(1e-2))
    state = learner.init(params)
    family = Sinusoid()
    sample = functools.partial(fewshot.sample_episodes, family, num_tasks=4, k_support=5, k_query=5)
    state, losses = fewshot.fit(learner, state, sample, jax.random.key(0), 100)
    assert float(losses[-20:].mean()) < float(losses[:20].mean())
    model = nnx.merge(graphdef, state.params)
    assert model(jnp.zeros((3, 1))).shape == (3, 1)


@dataclasses.dataclass(frozen=True)
class FinitePool(Sinusoid):
    """Sinusoids with only 12 points per task."""

    max_examples: int = 12


def test_errors_on_bad_input():
    with pytest.raises(ValueError, match="exceeds the 12 examples"):
        fewshot.sample_episodes(FinitePool(), jax.random.key(0), 2, 10, 5)
    assert fewshot.sample_episodes(FinitePool(), jax.random.key(0), 2, 7, 5).support[0].shape == (
        2,
        7,
        1,
    )
    with pytest.raises(ValueError, match="k_support"):
        fewshot.sample_episodes(Sinusoid(), jax.random.key(0), 2, 0, 5)
    with pytest.raises(TypeError, match="support_query"):
        fewshot.sample_episodes(cast(Any, lo.tasks.Quadratic()), jax.random.key(0), 2, 5, 5)
    x = jnp.arange(6.0)[:, None]
    with pytest.raises(ValueError, match="exceeds the 6 examples"):
        fewshot.split_support_query(jax.random.key(0), (x, x), 5, 2)

    learner = fewshot.maml(tanh_apply)
    with pytest.raises(TypeError, match="floating-point"):
        learner.init({"w1": jnp.ones((1, 3), jnp.int32)})
    params, episodes = tiny_params(), tiny_episodes()
    state = learner.init(params)
    ragged = fewshot.Episodes(episodes.support, jax.tree.map(lambda a: a[:1], episodes.query))
    with pytest.raises(ValueError, match="leading task axis"):
        learner.update(state, ragged)
    flat_targets = fewshot.Episodes(
        (episodes.support[0], episodes.support[1][..., 0]), episodes.query
    )
    with pytest.raises(ValueError, match="does not fit targets"):
        learner.update(state, flat_targets)
    with pytest.raises(ValueError, match="num_inner_steps"):
        fewshot.maml(tanh_apply, num_inner_steps=0)
    with pytest.raises(ValueError, match="unknown 'l1'"):
        fewshot.maml(tanh_apply, loss="l1")
    with pytest.raises(TypeError, match="inner"):
        fewshot.maml(tanh_apply, inner=-0.1)
    with pytest.raises(TypeError, match="does not meta-train"):
        fewshot.reptile(tanh_apply, inner=lo.MetaLSTMOptimizer())


@pytest.fixture
def benchmarks():
    """The few-shot benchmark scripts as modules (``benchmarks/`` on the path meanwhile)."""
    folder = str(Path(__file__).resolve().parents[1] / "benchmarks")
    sys.path.insert(0, folder)
    try:
        yield {name: importlib.import_module(name) for name in BENCHMARK_SCRIPTS}
    finally:
        sys.path.remove(folder)


BENCHMARK_SCRIPTS = ("fewshot_common", "fewshot_sinusoid", "fewshot_glyphs", "fewshot_speed")


def test_paired_intervals(benchmarks):
    common = benchmarks["fewshot_common"]
    b = np.random.default_rng(0).uniform(1.0, 2.0, 50)
    ratio, low, high = common.paired_interval(2.0 * b, b, "ratio")  # paired: no spread at all
    np.testing.assert_allclose([ratio, low, high], 2.0, rtol=1e-9)
    noisy = b + np.random.default_rng(1).normal(0.0, 0.1, 50) - 0.5
    diff, low, high = common.paired_interval(noisy, b, "difference")
    assert low < diff < high and low < -0.45 and high > -0.55 and high - low < 0.1
    with pytest.raises(ValueError, match="kind"):
        common.paired_interval(b, b, "quotient")
