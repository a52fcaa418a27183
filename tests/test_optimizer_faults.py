"""Faults the optimizers survive, and nonsense their constructors refuse with one clear line."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import learned_opt as lo
from learned_opt.optimizers import features

GENERALIST = lo.LSTMOptimizer(
    hidden_size=4,
    num_layers=1,
    use_loss=True,
    normalized_inputs=True,
    param_input=True,
    update_norm="rms",
    magnitude_output="tensor",
    output_scale=1e-2,
)
OPTIMIZERS = {
    "lstm": lo.LSTMOptimizer(hidden_size=4, momentum_size=3, normalized_inputs=True),
    "meta_lstm": lo.MetaLSTMOptimizer(hidden_size=4),
    "rule": lo.LearnedRule(),
    "generalist": GENERALIST,
}


def _params():
    return {"w": jnp.linspace(-1.0, 1.0, 6).reshape(2, 3), "b": jnp.array([0.5, -0.5, 0.1])}


def _quadratic(params):
    return sum(jnp.sum((p - 0.3) ** 2) for p in jax.tree.leaves(params))


def _steps(opt, meta_params, losses=None, bad_grad_at=None, steps=6):
    """Runs ``steps`` jitted steps; returns the updates of each step.

    ``losses[t]`` replaces the loss passed at step ``t`` (``value=``); ``bad_grad_at = t`` makes
    coordinate ``w[0, 0]`` of the gradient NaN at step ``t``.
    """
    tx = jax.jit(opt.as_optax(meta_params).update)
    params = _params()
    state = opt.init_state(meta_params, params)
    out = []
    for t in range(steps):
        loss, grads = jax.value_and_grad(_quadratic)(params)
        if losses is not None:
            loss = losses[t]
        if t == bad_grad_at:
            grads = {**grads, "w": grads["w"].at[0, 0].set(jnp.nan)}
        updates, state = tx(grads, state, params, value=loss)
        params = optax.apply_updates(params, updates)
        out.append(updates)
    return out, state


@pytest.mark.parametrize("name", ["lstm", "meta_lstm", "generalist"])
@pytest.mark.parametrize("bad", [jnp.inf, jnp.nan, 1e38])
def test_one_bad_loss_does_not_poison_later_updates(name, bad):
    opt = OPTIMIZERS[name]
    meta_params = opt.init(jax.random.key(0))
    losses = [1.0, 0.9, bad, 0.8, 0.75, 0.7]
    updates, state = _steps(opt, meta_params, losses)
    for step in updates:
        assert all(bool(jnp.all(jnp.isfinite(u))) for u in jax.tree.leaves(step))
    if not np.isfinite(bad):  # the bad loss was not counted into the statistics
        clean, _ = jax.lax.scan(
            lambda s, x: features.loss_feature(s, x)[::-1], features.init_loss_stats(),
            jnp.array([1.0, 0.9, 0.8, 0.75, 0.7]),
        )  # fmt: skip
        assert int(state.loss_stats.count) == 5
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), state.loss_stats, clean
        )


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_a_nan_gradient_coordinate_poisons_only_that_coordinate(name):
    opt = OPTIMIZERS[name]
    updates, _ = _steps(opt, opt.init(jax.random.key(0)), bad_grad_at=2)
    for step in updates[3:]:
        w = np.asarray(step["w"])
        assert not np.isfinite(w[0, 0])  # as in Adam, the coordinate itself is lost
        assert np.isfinite(np.delete(w.ravel(), 0)).all()
        assert np.isfinite(step["b"]).all()


def _second_order_meta_loss(opt, params, loss_fn, steps=3):
    """Jitted ``meta_params -> (meta_loss, meta_grad)``: the summed losses of an unrolled run,
    differentiated through the gradients and losses the optimizer reads (second order)."""

    def meta_loss(meta_params):
        def body(carry, _):
            p, state = carry
            loss, grads = jax.value_and_grad(loss_fn)(p)
            updates, state = opt.step(meta_params, state, grads, p, loss)
            return (jax.tree.map(jnp.add, p, updates), state), loss

        init = (params, opt.init_state(meta_params, params))
        (p, _), losses = jax.lax.scan(body, init, length=steps)
        return jnp.sum(losses) + loss_fn(p)

    return jax.jit(jax.value_and_grad(meta_loss))


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_second_order_meta_gradient_is_finite_with_an_exactly_zero_gradient(name):
    # w[0] is frozen at its optimum: its gradient is exactly 0 at every step, so the second
    # moments are 0 there and a plain sqrt would make the second-order meta-gradient NaN.
    opt = OPTIMIZERS[name]
    params = {"w": jnp.array([0.3, 1.0, -1.0]), "b": jnp.array([0.5])}
    _, grads = _second_order_meta_loss(opt, params, _quadratic)(opt.init(jax.random.key(0)))
    for path, leaf in jax.tree_util.tree_leaves_with_path(grads):
        assert bool(jnp.all(jnp.isfinite(leaf))), jax.tree_util.keystr(path)
    assert float(optax.tree.norm(grads)) > 0.0


@pytest.mark.parametrize("name", ["lstm", "meta_lstm", "generalist"])
def test_meta_gradient_with_the_loss_input_agrees_with_finite_differences(name):
    # The loss feature is continuous from the first step, so the analytic meta-gradient through
    # it (second order: through gradients and losses) matches central differences.
    opt = OPTIMIZERS[name]
    meta_params = opt.init(jax.random.key(1))
    meta_loss = _second_order_meta_loss(opt, _params(), _quadratic)
    _, grads = meta_loss(meta_params)
    leaves, treedef = jax.tree.flatten(meta_params)
    keys = jax.random.split(jax.random.key(2), len(leaves))
    direction = jax.tree.unflatten(
        treedef, [jax.random.normal(k, x.shape) for k, x in zip(keys, leaves, strict=True)]
    )
    analytic = sum(
        float(jnp.vdot(g, d))
        for g, d in zip(jax.tree.leaves(grads), jax.tree.leaves(direction), strict=True)
    )

    def value(eps):
        shifted = jax.tree.map(lambda m, d: m + eps * d, meta_params, direction)
        return float(meta_loss(shifted)[0])

    eps = 1e-3
    numeric = (value(eps) - value(-eps)) / (2 * eps)
    assert abs(analytic) > 1e-4
    np.testing.assert_allclose(analytic, numeric, rtol=0.05, atol=1e-4)


NONSENSE = [
    (lo.LSTMOptimizer, dict(preprocess_p=0),
     "preprocess_p: expected a finite number > 0.0, got 0.0"),
    (lo.LSTMOptimizer, dict(use_loss="no"),
     "use_loss: expected True or False, got 'no'"),
    (lo.LSTMOptimizer, dict(output_scale=None),
     "output_scale: expected a finite number > 0.0, got None"),
    (lo.LSTMOptimizer, dict(hidden_size=4.0),
     "hidden_size: expected an integer >= 1, got 4.0"),
    (lo.LSTMOptimizer, dict(num_layers=0),
     "num_layers: expected an integer >= 1, got 0"),
    (lo.LSTMOptimizer, dict(momentum_size=-1),
     "momentum_size: expected an integer >= 0, got -1"),
    (lo.LSTMOptimizer, dict(preprocess="log"),
     "preprocess: expected one of ('log_sign', 'none', 'omit'), got 'log'"),
    (lo.LSTMOptimizer, dict(input_decays=(0.9, 1.0)),
     "input_decays[1]: expected a finite number >= 0.0 and < 1.0, got 1.0"),
    (lo.LSTMOptimizer, dict(update_norm="l2"),
     "update_norm: expected one of ('none', 'rms', 'adam'), got 'l2'"),
    (lo.LSTMOptimizer, dict(state_dtype="float16"),
     "state_dtype: expected one of ('float32', 'bfloat16'), got 'float16'"),
    (lo.LSTMOptimizer, dict(layout="rows"),
     "layout: expected one of ('per_leaf', 'flat'), got 'rows'"),
    (lo.LSTMOptimizer, dict(output_scale=float("nan")),
     "output_scale: expected a finite number > 0.0, got nan"),
    (lo.MetaLSTMOptimizer, dict(use_loss=1),
     "use_loss: expected True or False, got 1"),
    (lo.MetaLSTMOptimizer, dict(hidden_size=True),
     "hidden_size: expected an integer >= 1, got True"),
    (lo.MetaLSTMOptimizer, dict(input_bias=(0.0, float("inf"))),
     "input_bias: expected finite values, got (0.0, inf)"),
    (lo.LearnedRule, dict(decays=(0.5, -0.1)),
     "decays[1]: expected a finite number >= 0.0 and < 1.0, got -0.1"),
    (lo.LearnedRule, dict(eps=0.0),
     "eps: expected a finite number > 0.0, got 0.0"),
    (lo.LearnedRule, dict(decays=0.9),
     "decays: expected a sequence of numbers, got 0.9"),
]  # fmt: skip


@pytest.mark.parametrize(("cls", "kwargs", "message"), NONSENSE)
def test_constructor_refuses_nonsense_with_one_line(cls, kwargs, message):
    with pytest.raises((ValueError, TypeError)) as error:
        cls(**kwargs)
    assert str(error.value) == message


def test_a_second_class_under_a_registered_name_is_refused():
    import dataclasses

    from learned_opt.optimizers import lstm

    namespace = {"__module__": lstm.__name__, "__qualname__": "LSTMOptimizer"}
    taken = r"'learned_opt\.optimizers\.lstm\.LSTMOptimizer' is already registered"
    with pytest.raises(ValueError, match=taken):
        dataclasses.dataclass(frozen=True)(type("LSTMOptimizer", (lo.LSTMOptimizer,), namespace))
