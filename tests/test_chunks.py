"""Coordinatewise steps over large tensors in chunks: the same updates, state and meta-gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import learned_opt as lo
from learned_opt.optimizers import _chunks

#: One tensor above the chunking threshold and the odd leaves of the layout tests.
BIG = (120, 300)
assert BIG[0] * BIG[1] > _chunks.MAX_UNCHUNKED

#: The shipped configuration, the generalist's recipe and one with every other option.
OPTIMIZERS = {
    "lstm_shipped": lo.LSTMOptimizer(hidden_size=20, normalized_inputs=True),
    "lstm_generalist": lo.LSTMOptimizer(
        hidden_size=8,
        num_layers=1,
        preprocess="omit",
        use_loss=False,
        normalized_inputs=True,
        input_decays=(0.9, 0.5),
        param_input=True,
        base_direction="adam",
        magnitude_output="coordinate",
        output_scale=1e-3,
    ),
    "lstm_options": lo.LSTMOptimizer(
        hidden_size=6,
        momentum_size=3,
        normalized_inputs=True,
        step_input=True,
        update_norm="rms",
        magnitude_output="tensor",
    ),
    "meta_lstm": lo.MetaLSTMOptimizer(hidden_size=8),
}


def _params():
    return {
        "big": jnp.linspace(-1.0, 1.0, BIG[0] * BIG[1]).reshape(BIG),
        "w": jnp.linspace(-1.0, 1.0, 12).reshape(3, 4),
        "b": [jnp.array([0.5, -0.25]), jnp.asarray(0.3)],
    }


def _updates(opt, meta_params, steps=3):
    """The updates and final state of ``steps`` steps on gradients that depend on the step only
    (so that rounding differences are not amplified by the trajectory)."""
    params = _params()

    def body(state, t):
        grads = jax.tree.map(lambda p: jnp.sin(3.0 * p + t) + 0.1 * t, params)
        updates, state = opt.step(meta_params, state, grads, params, 1.0 / (t + 1.0))
        return state, updates

    state = opt.init_state(meta_params, params)
    state, updates = jax.lax.scan(body, state, jnp.arange(steps, dtype=jnp.float32))
    return updates, state


def _both(monkeypatch, make, *args):
    """``make()(*args)`` chunked and in one piece (each traced afresh: ``make`` builds a new
    function, so no trace is shared)."""
    chunked = make()(*args)
    with monkeypatch.context() as m:
        m.setattr(_chunks, "MAX_UNCHUNKED", 1 << 40)
        return chunked, make()(*args)


def _assert_close(got, want, rtol):
    for x, y in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        assert x.shape == y.shape and x.dtype == y.dtype
        x, y = np.asarray(x, np.float32), np.asarray(y, np.float32)
        if not y.size:  # the state's record of the parameters' shapes
            continue
        np.testing.assert_allclose(x, y, rtol=0, atol=rtol * (np.abs(y).max() + 1e-30))


@pytest.mark.parametrize(
    ("name", "state_dtype"),
    [
        *((name, "float32") for name in sorted(OPTIMIZERS)),
        ("lstm_shipped", "bfloat16"),
        ("meta_lstm", "bfloat16"),
    ],
)
def test_chunked_step_equals_the_step_in_one_piece(monkeypatch, name, state_dtype):
    opt = OPTIMIZERS[name]
    opt = type(opt)(**{**opt.config(), "state_dtype": state_dtype})
    meta_params = opt.init(jax.random.key(0))
    got, want = _both(monkeypatch, lambda: jax.jit(lambda mp: _updates(opt, mp)), meta_params)
    # bfloat16 state: a float32 rounding difference may move a stored value by one bf16 step.
    _assert_close(got, want, rtol=2e-5 if state_dtype == "float32" else 2e-2)


@pytest.mark.parametrize(
    "name", ["lstm_shipped", pytest.param("meta_lstm", marks=pytest.mark.slow)]
)
def test_meta_gradients_through_the_chunked_step_equal_those_in_one_piece(monkeypatch, name):
    opt = OPTIMIZERS[name]
    params = _params()
    weights = jax.tree.map(lambda p: jnp.cos(5.0 * p), params)

    def objective(meta_params):
        updates, _ = _updates(opt, meta_params, steps=2)
        pairs = zip(jax.tree.leaves(updates), jax.tree.leaves(weights), strict=True)
        return sum(jnp.sum(u * w[None]) for u, w in pairs)

    meta_params = opt.init(jax.random.key(1))
    got, want = _both(monkeypatch, lambda: jax.jit(jax.grad(objective)), meta_params)
    _assert_close(got, want, rtol=1e-4)


def test_plan_keeps_every_possible_shard_of_an_axis_whole():
    plan = _chunks.plan((512, 144), devices=4)
    assert plan is not None
    # Each axis is split into (gcd(size, devices), rest); the gcd parts stay whole in a chunk.
    assert plan.view == (4, 128, 4, 36)
    assert plan.kept == (0, 2)
    assert [plan.chunk[k] for k in plan.kept] == [4, 4]
    assert [v // e for v, e in zip(plan.view, plan.chunk, strict=True)] == list(plan.counts)
    assert _chunks.CHUNK // 4 <= np.prod(plan.chunk) <= _chunks.CHUNK


@pytest.mark.parametrize(
    "shape",
    [(100, 100), (_chunks.MAX_UNCHUNKED,), (7, 97, 101)],
    ids=["small", "at_threshold", "no_divisor_near_the_chunk_size"],
)
def test_tensors_without_a_useful_chunking_are_computed_in_one_piece(shape):
    assert _chunks.plan(shape, devices=1) is None
