"""The composable form: ``opt.scale_by`` as a direction, chained the way optax users chain."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import learned_opt as lo

OPTIMIZERS = {
    "lstm": lo.LSTMOptimizer(hidden_size=4, normalized_inputs=True),
    "meta_lstm": lo.MetaLSTMOptimizer(hidden_size=4),
    "rule": lo.LearnedRule(),
    "generalist": lo.LSTMOptimizer(
        hidden_size=4, num_layers=1, use_loss=False, normalized_inputs=True,
        update_norm="rms", param_input=True, output_scale=1e-2,
    ),
}  # fmt: skip


def _params():
    k1, k2 = jax.random.split(jax.random.key(3))
    return {"w": jax.random.normal(k1, (4, 3)), "b": jax.random.normal(k2, (3,))}


def _loss(params):
    x = jnp.linspace(-1.0, 1.0, 8).reshape(2, 4)
    return jnp.sum(jnp.tanh(x @ params["w"] + params["b"][None, :]) ** 2)


def _separable_loss(params):
    """A loss in which the matrix and the vector do not interact."""
    x = jnp.linspace(-1.0, 1.0, 8).reshape(2, 4)
    return jnp.sum(jnp.tanh(x @ params["w"]) ** 2) + jnp.sum((params["b"] - 1.0) ** 2)


def _train(tx, steps=8, loss_fn=_loss):
    """Parameters after ``steps`` steps of ``tx`` on ``loss_fn`` (a jitted scan), and the losses."""

    @jax.jit
    def go(params):
        def body(carry, _):
            params, state = carry
            loss, grads = jax.value_and_grad(loss_fn)(params)
            updates, state = tx.update(grads, state, params, value=loss)
            return (optax.apply_updates(params, updates), state), loss

        return jax.lax.scan(body, (params, tx.init(params)), length=steps)

    (params, _), losses = go(_params())
    return params, losses


def _meta_params(name):
    return OPTIMIZERS[name].init(jax.random.key(0))


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_as_optax_equals_the_direction_at_the_built_in_step_size(name):
    opt, mp = OPTIMIZERS[name], _meta_params(name)
    lr = opt.learning_rate(mp)
    chained = optax.chain(opt.scale_by(mp), optax.scale_by_learning_rate(lr))
    want, _ = _train(opt.as_optax(mp))
    got, _ = _train(chained)
    jax.tree.map(np.testing.assert_array_equal, got, want)
    moved = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), want, _params())
    assert min(jax.tree.leaves(moved)) > 0.0


@pytest.mark.parametrize("name", ["lstm", "generalist"])
def test_as_optax_with_a_schedule_equals_the_chain_with_that_schedule(name):
    opt, mp = OPTIMIZERS[name], _meta_params(name)
    schedule = optax.cosine_decay_schedule(0.05, 8)
    want, _ = _train(optax.chain(opt.scale_by(mp), optax.scale_by_learning_rate(schedule)))
    got, _ = _train(opt.as_optax(mp, learning_rate=schedule))
    jax.tree.map(np.testing.assert_array_equal, got, want)


def test_weight_decay_and_schedule_compose_with_the_direction():
    opt, mp = OPTIMIZERS["generalist"], _meta_params("generalist")
    params, grads = _params(), jax.grad(_loss)(_params())
    tx = optax.chain(
        optax.add_decayed_weights(0.1),
        opt.scale_by(mp),
        optax.scale_by_learning_rate(optax.linear_schedule(0.2, 0.0, 10)),
    )
    updates, _ = jax.jit(tx.update)(grads, tx.init(params), params)
    # By hand: the direction of (grads + 0.1 params), times -0.2 at step 0.
    decayed = jax.tree.map(lambda g, p: g + 0.1 * p, grads, params)
    direction, _ = opt.direction(mp, opt.init_state(mp, params), decayed, params)
    jax.tree.map(
        lambda u, d: np.testing.assert_allclose(u, -0.2 * d, rtol=1e-6), updates, direction
    )


def test_multi_transform_learned_on_matrices_adam_on_vectors():
    opt, mp = OPTIMIZERS["generalist"], _meta_params("generalist")
    labels = {"w": "learned", "b": "adam"}
    tx = optax.multi_transform(
        {
            "learned": optax.chain(opt.scale_by(mp), optax.scale_by_learning_rate(1e-2)),
            "adam": optax.adam(1e-2),
        },
        labels,
    )
    params, _ = _train(tx, loss_fn=_separable_loss)
    adam_only, _ = _train(optax.adam(1e-2), loss_fn=_separable_loss)  # Adam on everything
    # The vector followed Adam exactly, the matrix did not.
    np.testing.assert_allclose(params["b"], adam_only["b"], rtol=1e-6)
    assert float(jnp.max(jnp.abs(params["w"] - adam_only["w"]))) > 1e-4


def test_multi_steps_accumulates_and_applies_every_third_step():
    opt, mp = OPTIMIZERS["lstm"], _meta_params("lstm")
    base = optax.chain(opt.scale_by(mp), optax.scale_by_learning_rate(0.1))
    tx = optax.MultiSteps(base, every_k_schedule=3)
    params = _params()
    state = tx.init(params)
    grads = jax.grad(_loss)(params)
    history = []
    for _ in range(3):
        updates, state = tx.update(grads, state, params, value=1.0)
        history.append(updates)
    assert all(float(jnp.max(jnp.abs(u["w"]))) == 0.0 for u in history[:2])
    # The third update is the inner chain's first update on the mean of the three gradients.
    once, _ = base.update(grads, base.init(params), params, value=1.0)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5), history[2], once)


def test_apply_if_finite_skips_a_nan_gradient_and_keeps_the_state():
    opt, mp = OPTIMIZERS["generalist"], _meta_params("generalist")
    tx = optax.apply_if_finite(
        optax.chain(opt.scale_by(mp), optax.scale_by_learning_rate(0.1)), max_consecutive_errors=3
    )
    params = _params()
    state = tx.init(params)
    bad = jax.tree.map(lambda p: jnp.full_like(p, jnp.nan), params)
    updates, new_state = tx.update(bad, state, params)
    assert all(float(jnp.max(jnp.abs(u))) == 0.0 for u in jax.tree.leaves(updates))
    jax.tree.map(np.testing.assert_array_equal, new_state.inner_state, state.inner_state)
    good, _ = tx.update(jax.grad(_loss)(params), new_state, params)
    assert all(bool(jnp.all(jnp.isfinite(u))) for u in jax.tree.leaves(good))


def test_nnx_optimizer_with_the_chained_direction_trains_a_model():
    opt, mp = OPTIMIZERS["generalist"], _meta_params("generalist")
    model = nnx.Linear(4, 1, rngs=nnx.Rngs(0))
    x = jnp.linspace(-1.0, 1.0, 32).reshape(8, 4)
    y = jnp.sum(x, axis=1, keepdims=True)
    tx = optax.chain(opt.scale_by(mp), optax.scale_by_learning_rate(0.05))
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer):
        loss, grads = nnx.value_and_grad(lambda m: jnp.mean((m(x) - y) ** 2))(model)
        optimizer.update(model, grads, value=loss)
        return loss

    losses = [float(step(model, optimizer)) for _ in range(40)]
    assert losses[-1] < 0.2 * losses[0]


def test_scale_by_needs_the_loss_when_the_optimizer_reads_it():
    opt, mp = OPTIMIZERS["lstm"], _meta_params("lstm")
    tx = opt.scale_by(mp)
    params = _params()
    with pytest.raises(ValueError, match=r"^value: LSTMOptimizer\(use_loss=True\) reads the loss"):
        tx.update(params, tx.init(params), params)
