"""Behaviour of the learned optimizers themselves: special cases, features, meta-gradients."""

import functools
import math
from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import learned_opt as lo
from learned_opt.optimizers import features
from learned_opt.optimizers._trees import structure


@functools.partial(jax.jit, static_argnums=(0, 3, 4))
def _train(make_tx, hyperparams, params, loss_fn, steps):
    """Final parameters after ``steps`` steps of ``make_tx(hyperparams)``.

    ``make_tx`` is e.g. ``opt.as_optax`` (static: equal optimizers share one compilation) or
    ``optax.sgd``.
    """
    tx = make_tx(hyperparams)

    def body(carry, _):
        params, state = carry
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, state = tx.update(grads, state, params, value=loss)
        return (optax.apply_updates(params, updates), state), loss

    return jax.lax.scan(body, (params, tx.init(params)), length=steps)[0][0]


@functools.partial(jax.jit, static_argnums=0)
def _first_update(opt, meta_params, grads, params):
    tx = opt.as_optax(meta_params)
    return tx.update(grads, tx.init(params), params, value=1.0)[0]


# --- Special cases of the architectures. ---


def test_meta_lstm_sgd_meta_params_is_sgd(mlp_problem):
    params, loss_fn = mlp_problem
    opt = lo.MetaLSTMOptimizer()
    got = _train(opt.as_optax, opt.sgd_meta_params(0.1), params, loss_fn, 20)
    want = _train(optax.sgd, 0.1, params, loss_fn, 20)
    diff = jax.tree.map(lambda a, b: jnp.max(jnp.abs(a - b)), got, want)
    assert max(jax.tree.leaves(diff)) <= 1e-6
    # The run moved the parameters, so the comparison is not vacuous.
    moved = jax.tree.map(lambda a, b: jnp.max(jnp.abs(a - b)), got, params)
    assert max(jax.tree.leaves(moved)) > 1e-2


@pytest.mark.parametrize("learning_rate", [0.0, 1.0, -0.1])
def test_sgd_meta_params_rejects_out_of_range_lr(learning_rate):
    with pytest.raises(ValueError, match="learning_rate"):
        lo.MetaLSTMOptimizer().sgd_meta_params(learning_rate)


@pytest.mark.parametrize(
    ("opt", "zero_out"),
    [
        pytest.param(
            lo.LSTMOptimizer(hidden_size=4, momentum_size=4),
            lambda mp: {**mp, "out": jax.tree.map(jnp.zeros_like, mp["out"])},
            id="lstm-out",
        ),
        pytest.param(
            lo.LearnedRule(), lambda mp: {**mp, "coef": jnp.zeros_like(mp["coef"])}, id="rule-coef"
        ),
    ],
)
def test_zero_output_weights_give_zero_updates(opt, zero_out, mlp_problem):
    params, loss_fn = mlp_problem
    meta_params = opt.init(jax.random.key(1))
    final = _train(opt.as_optax, zero_out(meta_params), params, loss_fn, 5)
    jax.tree.map(np.testing.assert_array_equal, final, params)
    # Control: the unmodified weights move every parameter.
    moved = _train(opt.as_optax, meta_params, params, loss_fn, 5)
    assert all(jax.tree.leaves(jax.tree.map(lambda a, b: bool(jnp.all(a != b)), moved, params)))


def test_learned_rule_init_is_sgd_with_lr_001():
    rule = lo.LearnedRule()
    meta_params = rule.init(jax.random.key(0))
    assert float(meta_params["coef"][0]) == 1.0
    np.testing.assert_allclose(jnp.exp(meta_params["log_lr"]), 0.01, rtol=1e-6)
    assert float(jnp.max(jnp.abs(meta_params["coef"][1:]))) < 1e-2
    params = {"w": jnp.zeros((2, 3)), "b": jnp.zeros(3)}
    grads = {"w": jnp.array([[1.0, -2.0, 3.0], [0.5, -4.0, 2.5]]), "b": jnp.array([-1.5, 2.0, 1.0])}
    # The other coefficients are ~N(0, 1e-3) each (eight of them), so within 1e-2 relative.
    updates = _first_update(rule, meta_params, grads, params)
    jax.tree.map(lambda u, g: np.testing.assert_allclose(u, -0.01 * g, rtol=1e-2), updates, grads)
    # With those tiny coefficients zeroed it is exactly SGD.
    exact = {**meta_params, "coef": jnp.zeros_like(meta_params["coef"]).at[0].set(1.0)}
    updates = _first_update(rule, exact, grads, params)
    jax.tree.map(lambda u, g: np.testing.assert_allclose(u, -0.01 * g, rtol=1e-6), updates, grads)


# --- Input features. ---


def test_log_sign_matches_hand_computed_values():
    p = 10.0
    assert math.exp(-p) == pytest.approx(4.54e-5, rel=1e-3)
    g = jnp.array([0.5, -3.0, 1e-4, 1e-6, -2e-5, 0.0])
    want = np.array(
        [
            [math.log(0.5) / p, 1.0],  # |g| >= exp(-p): (log|g| / p, sign g)
            [math.log(3.0) / p, -1.0],
            [math.log(1e-4) / p, 1.0],
            [-1.0, 1e-6 * math.exp(p)],  # |g| < exp(-p): (-1, exp(p) g)
            [-1.0, -2e-5 * math.exp(p)],
            [-1.0, 0.0],
        ]
    )
    np.testing.assert_allclose(jax.jit(features.log_sign)(g), want, rtol=1e-5, atol=1e-7)
    assert features.log_sign(jnp.ones((2, 3))).shape == (2, 3, 2)


def _loss_features(losses):
    def body(stats, loss):
        feature, stats = features.loss_feature(stats, loss)
        return stats, feature

    return jax.lax.scan(body, features.init_loss_stats(), losses)[1]


def _stats_trace(losses):
    def body(stats, loss):
        feature, stats = features.loss_feature(stats, loss)
        return stats, (feature, stats)

    return jax.lax.scan(body, features.init_loss_stats(), jnp.asarray(losses, jnp.float32))[1]


def _decaying_losses(n=80):
    t = jnp.arange(n, dtype=jnp.float32)
    return 2.0 * jnp.exp(-0.1 * t) + 0.3 * jnp.sin(1.7 * t) + 0.5


@pytest.mark.parametrize("scale", [1e-30, 1e-3, 1e4, 1e30])
def test_loss_feature_is_invariant_to_loss_scale_over_the_float32_range(scale):
    losses = _decaying_losses()
    got = jax.jit(_loss_features)(losses)
    np.testing.assert_allclose(jax.jit(_loss_features)(scale * losses), got, atol=1e-4)
    assert float(got[0]) == 0.0
    # Most features are informative (neither zero nor near the soft bound of 5).
    assert int(jnp.sum((jnp.abs(got) > 0.05) & (jnp.abs(got) < 4.5))) >= 60


def test_loss_feature_forgets_an_offset_as_the_warm_start_decays():
    losses = _decaying_losses()
    got, shifted = (jax.jit(_loss_features)(x) for x in (losses, losses + 7.0))
    assert float(jnp.max(jnp.abs(got[:5] - shifted[:5]))) > 0.1  # the warm start sees |L0|
    np.testing.assert_allclose(shifted[30:], got[30:], atol=1e-4)


def test_loss_feature_is_continuous_from_the_second_step():
    # Warm start: the second step's feature is the change relative to |L0| / 2, so a tiny change
    # of the loss gives a tiny feature (it used to jump to +-5).
    for delta in (1e-6, -1e-4, 1e-2):
        feature = jax.jit(_loss_features)(jnp.array([2.0, 2.0 + delta]))[1]
        np.testing.assert_allclose(feature, delta / 1.0, rtol=1e-3, atol=1e-7)


@pytest.mark.parametrize("bad", [jnp.inf, -jnp.inf, jnp.nan])
def test_a_non_finite_loss_is_skipped(bad):
    losses = _decaying_losses(20)
    with_bad = jnp.concatenate([losses[:10], jnp.array([bad]), losses[10:]])
    feats, stats = jax.jit(_stats_trace)(with_bad)
    want, want_stats = jax.jit(_stats_trace)(losses)
    assert float(feats[10]) == 0.0
    np.testing.assert_array_equal(feats[11:], want[10:])  # as if the step had not happened
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(a[-1], b[-1]), stats, want_stats)
    assert int(stats.count[-1]) == 20


def test_a_huge_loss_jump_neither_overflows_nor_freezes_the_feature():
    losses = jnp.concatenate([jnp.full(10, 1.0), jnp.array([3e38]), 1.0 + _decaying_losses(30)])
    feats, stats = jax.jit(_stats_trace)(losses)
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in (feats, *stats))
    assert float(feats[10]) == pytest.approx(features.LOSS_FEATURE_BOUND, rel=1e-3)
    # Once the jump has decayed out of the statistics the feature tracks the losses again.
    assert int(jnp.sum(jnp.abs(feats[30:]) > 0.05)) >= 8


def test_loss_feature_gradient_is_finite():
    grad = jax.grad(lambda a: jnp.sum(_loss_features(a * jnp.array([1.0, 2.0, 1.5, 0.5]))))(1.0)
    assert bool(jnp.isfinite(grad))


# --- Meta-gradients through unrolled training. ---


def _global_norm(tree):
    return float(optax.tree.norm(tree))


def _quadratic(params):
    """An ill-conditioned quadratic over a two-leaf tree."""
    scales = {"w": jnp.array([[1.0, 3.0], [0.5, 2.0]]), "b": jnp.array([4.0])}
    sq = jax.tree.map(lambda s, p: jnp.sum(s * (p - 0.5) ** 2), scales, params)
    return sum(jax.tree.leaves(sq))


def test_meta_gradient_through_ten_unrolled_steps(small_opt):
    opt, meta_params = small_opt
    params = {"w": jnp.array([[1.0, -2.0], [0.3, 2.0]]), "b": jnp.array([-1.0])}

    def meta_loss(meta_params):
        tx = opt.as_optax(meta_params)

        def body(carry, _):
            p, state = carry
            loss, grads = jax.value_and_grad(_quadratic)(p)
            updates, state = tx.update(grads, state, p, value=loss)
            return (optax.apply_updates(p, updates), state), loss

        losses = jax.lax.scan(body, (params, tx.init(params)), length=10)[1]
        return jnp.sum(losses)

    grads = jax.jit(jax.grad(meta_loss))(meta_params)
    assert structure(grads) == structure(meta_params)
    for path, leaf in jax.tree_util.tree_leaves_with_path(grads):
        assert bool(jnp.all(jnp.isfinite(leaf))), jax.tree_util.keystr(path)
    # Every top-level group of weights (LSTM layers, momentum LSTM, output, gates, ...) learns.
    for name, group in grads.items():
        assert _global_norm(group) > 0.0, name
    if isinstance(opt, lo.LSTMOptimizer):
        assert opt.momentum_size == 4 and _global_norm(grads["momentum"]) > 0.0


def test_normalized_inputs_are_invariant_to_gradient_scale():
    g = jax.random.normal(jax.random.key(0), (5, 7))
    decays = (0.5, 0.95)
    zero = features.Moments(jnp.zeros((7, 2)), jnp.zeros(7))
    moments_a = moments_b = zero
    for t in range(5):
        count = jnp.int32(t + 1)
        fa, moments_a = features.normalized_features(moments_a, g[t], count, decays)
        fb, moments_b = features.normalized_features(moments_b, 1000.0 * g[t], count, decays)
        np.testing.assert_allclose(fa, fb, rtol=1e-4, atol=1e-5)
    # First step: m_hat = g and v_hat = g**2, so every feature is sign(g).
    first, _ = features.normalized_features(zero, g[0], jnp.int32(1), decays)
    np.testing.assert_allclose(first, jnp.sign(g[0])[:, None] * jnp.ones((1, 3)), atol=1e-5)


@pytest.mark.parametrize(
    ("opt", "floats_per_param"),
    [
        (lo.LSTMOptimizer(), 2 * 2 * 20),
        (lo.LSTMOptimizer(momentum_size=10), 2 * 2 * 20 + 2 * 10),
        (lo.LSTMOptimizer(normalized_inputs=True), 2 * 2 * 20 + 2),
        (lo.MetaLSTMOptimizer(), 2 * 20 + 2),
        (lo.LearnedRule(), 3 + 1),
    ],
)
def test_state_holds_no_more_than_its_per_coordinate_memory(opt, floats_per_param):
    n = 1000
    params = {"a": jnp.zeros((10, 50)), "b": [jnp.zeros(500)]}
    state = opt.init_state(opt.init(jax.random.key(0)), params)
    nbytes = sum(x.nbytes for x in jax.tree.leaves(state))
    assert floats_per_param * 4 * n <= nbytes <= floats_per_param * 4 * n + 64


def test_meta_lstm_initial_gate_biases_follow_their_ranges():
    opt = lo.MetaLSTMOptimizer(input_bias=(-1.0, 0.0), forget_bias=cast(Any, [3, 3]))
    assert opt.forget_bias == (3.0, 3.0)  # lists (from JSON) become float tuples
    for seed in range(5):
        meta_params = opt.init(jax.random.key(seed))
        assert -1.0 <= float(meta_params["input"]["b"]) <= 0.0
        assert float(meta_params["forget"]["b"]) == 3.0
    with pytest.raises(ValueError, match="input_bias: need low <= high"):
        lo.MetaLSTMOptimizer(input_bias=(0.0, -1.0))
    with pytest.raises(ValueError, match="forget_bias: expected"):
        lo.MetaLSTMOptimizer(forget_bias=cast(Any, 4.0))
