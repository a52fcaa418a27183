"""The optax export: any parameter tree, dtypes, jit/vmap, composition with optax and flax."""

import functools
import itertools
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from flax.training import train_state

import learned_opt as lo
from learned_opt.optimizers._trees import structure


def _nested_params(dtype):
    """Nested dicts, lists and tuples, with a scalar and a zero-size leaf."""
    tree = {
        "dense": {"w": jnp.linspace(-1.0, 1.0, 6).reshape(2, 3), "b": jnp.array([0.1, 0.0, -0.2])},
        "blocks": [jnp.array([1.0, -2.0, 3.0, 0.5]), (jnp.eye(2), jnp.asarray(0.7))],
        "scalar": jnp.asarray(-1.5),
        "empty": jnp.zeros((0, 3)),
    }
    return jax.tree.map(lambda x: x.astype(dtype), tree)


class _TinyModel(nnx.Module):
    def __init__(self, dtype=jnp.float32):
        rngs = nnx.Rngs(0)
        self.hidden = nnx.Linear(2, 3, param_dtype=dtype, rngs=rngs)
        self.out = nnx.Linear(3, 1, param_dtype=dtype, rngs=rngs)
        self.calls = nnx.Variable(jnp.zeros((), jnp.int32))  # non-float state, not optimized

    def __call__(self, x):
        return self.out(jnp.tanh(self.hidden(x)))


def _params(kind, dtype):
    if kind == "nested":
        return _nested_params(dtype)
    return nnx.state(_TinyModel(dtype), nnx.Param)


def _grads_like(params):
    """Deterministic non-zero gradients with the parameters' dtypes."""
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(7), len(leaves))
    return jax.tree.unflatten(
        treedef,
        [jax.random.normal(k, x.shape).astype(x.dtype) for k, x in zip(keys, leaves, strict=True)],
    )


def _assert_same_tree(got, want):
    """Same structure, and leafwise the same shapes and dtypes."""
    assert structure(got) == structure(want)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        assert (g.shape, g.dtype) == (w.shape, w.dtype)


def _changed(new, old):
    """Per leaf, whether any entry differs."""
    return [
        bool(jnp.any(a != b))
        for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(old), strict=True)
    ]


def _check_state_dtypes(state, param_dtype):
    """Float32 state, int32 counters, zero-size ``spec`` leaves in the parameters' dtype."""
    for path, leaf in jax.tree_util.tree_leaves_with_path(state):
        name = jax.tree_util.keystr(path)
        if ".spec" in name:
            assert leaf.size == 0 and leaf.dtype == param_dtype, name
        elif name.endswith(".count"):
            assert leaf.dtype == jnp.int32, name
        else:
            assert leaf.dtype == jnp.float32, name


def _mse(model, x, y):
    return jnp.mean((model(x) - y) ** 2)


_X = jnp.linspace(-1.0, 1.0, 16).reshape(8, 2)
_Y = jnp.sin(2.0 * _X[:, :1]) - _X[:, 1:]


# --- Trees, dtypes, jit and vmap. ---


def test_as_optax_is_an_extra_args_transformation(small_opt):
    opt, meta_params = small_opt
    assert isinstance(opt.as_optax(meta_params), optax.GradientTransformationExtraArgs)


@pytest.mark.parametrize(
    ("kind", "dtype"),
    [("nested", jnp.float32), ("nested", jnp.bfloat16), ("nnx_state", jnp.bfloat16)],
    ids=["nested-f32", "nested-bf16", "nnx_state-bf16"],
)
def test_any_float_pytree(small_opt, kind, dtype):
    opt, meta_params = small_opt
    tx = opt.as_optax(meta_params)
    params = _params(kind, dtype)
    grads = _grads_like(params)
    state = jax.jit(tx.init)(params)
    _check_state_dtypes(state, dtype)
    update = jax.jit(tx.update)
    for _ in range(2):
        updates, state = update(grads, state, params, value=jnp.asarray(2.0, dtype))
        _assert_same_tree(updates, params)
        _check_state_dtypes(state, dtype)
        assert all(bool(jnp.all(jnp.isfinite(u))) for u in jax.tree.leaves(updates))
        params = optax.apply_updates(params, updates)
    _assert_same_tree(params, _params(kind, dtype))


def test_unknown_extra_kwargs_are_ignored(small_opt):
    opt, meta_params = small_opt
    tx = opt.as_optax(meta_params)
    params = _nested_params(jnp.float32)

    @jax.jit
    def both(grads, state):
        plain = tx.update(grads, state, params, value=1.0)
        return plain, tx.update(grads, state, params, value=1.0, foo=1, loss=3.0)

    want, got = both(_grads_like(params), tx.init(params))
    jax.tree.map(np.testing.assert_array_equal, got, want)


def test_vmap_over_parameter_sets(small_opt):
    opt, meta_params = small_opt
    tx = opt.as_optax(meta_params)
    single = _nested_params(jnp.float32)
    params = jax.tree.map(lambda x: jnp.stack([x, 2.0 * x, -x]), single)
    grads = jax.tree.map(lambda x: jnp.stack([x, 0.5 * x, 3.0 * x]), _grads_like(single))
    values = jnp.array([1.0, 2.0, 0.5])

    def update(g, s, p, v):
        return tx.update(g, s, p, value=v)

    states = jax.jit(jax.vmap(tx.init))(params)
    vupdate = jax.jit(jax.vmap(update))
    for _ in range(2):
        updates, states = vupdate(grads, states, params, values)
    _assert_same_tree(updates, params)
    # Each member of the batch agrees with the same run without vmap.
    for i in range(3):
        p, g = (jax.tree.map(lambda x, i=i: x[i], t) for t in (params, grads))
        state = tx.init(p)
        for _ in range(2):
            want, state = jax.jit(update)(g, state, p, values[i])
        got = jax.tree.map(lambda x, i=i: x[i], updates)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), got, want)


# --- Composition with optax. ---


def test_inside_chain_with_clipping_and_reduce_on_plateau(small_opt, mlp_problem):
    opt, meta_params = small_opt
    params, loss_fn = mlp_problem
    tx = opt.as_optax(meta_params)
    chain = optax.chain(optax.clip_by_global_norm(1.0), tx, optax.contrib.reduce_on_plateau())

    @jax.jit
    def step(params, chain_state, tx_state):
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, chain_state = chain.update(grads, chain_state, params, value=loss)
        # Reference: clip by hand, then the bare optimizer (the plateau scale is still 1).
        clipped = optax.tree.scale(jnp.minimum(1.0, 1.0 / optax.tree.norm(grads)), grads)
        want, tx_state = tx.update(clipped, tx_state, params, value=loss)
        return optax.apply_updates(params, updates), chain_state, tx_state, updates, want, loss

    chain_state, tx_state, losses = chain.init(params), tx.init(params), []
    for _ in range(3):
        params, chain_state, tx_state, updates, want, loss = step(params, chain_state, tx_state)
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-8), updates, want
        )
        losses.append(float(loss))
    assert float(chain_state[2].scale) == 1.0
    # reduce_on_plateau saw the losses passed as value=.
    np.testing.assert_allclose(chain_state[2].best_value, min(losses), rtol=1e-6)


def test_multi_steps_updates_every_third_step(small_opt, mlp_problem):
    opt, meta_params = small_opt
    params, loss_fn = mlp_problem
    tx = optax.MultiSteps(opt.as_optax(meta_params), every_k_schedule=3)

    @jax.jit
    def step(params, state):
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, state = tx.update(grads, state, params, value=loss)
        return optax.apply_updates(params, updates), state

    state = tx.init(params)
    for i in range(1, 7):
        new_params, state = step(params, state)
        changed = _changed(new_params, params)
        assert all(changed) if i % 3 == 0 else not any(changed), i
        params = new_params
    assert int(state.gradient_step) == 2


def test_apply_if_finite_skips_nan_gradients(small_opt, mlp_problem):
    opt, meta_params = small_opt
    params, loss_fn = mlp_problem
    tx = optax.apply_if_finite(opt.as_optax(meta_params), max_consecutive_errors=2)
    update = jax.jit(lambda g, s, p, v: tx.update(g, s, p, value=v))

    state = tx.init(params)
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, state = update(grads, state, params, loss)
    params = optax.apply_updates(params, updates)
    assert bool(state.last_finite)

    bad = jax.grad(loss_fn)(params)
    bad[0]["w"] = bad[0]["w"].at[0, 0].set(jnp.nan)
    updates, new_state = update(bad, state, params, loss)
    jax.tree.map(np.testing.assert_array_equal, optax.apply_updates(params, updates), params)
    assert not bool(new_state.last_finite)
    assert int(new_state.notfinite_count) == 1
    assert int(new_state.total_notfinite) == 1
    jax.tree.map(np.testing.assert_array_equal, new_state.inner_state, state.inner_state)


# --- flax. ---


def _nnx_losses(model, tx, steps):
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)

    @nnx.jit
    def train_step(model, optimizer):
        loss, grads = nnx.value_and_grad(_mse)(model, _X, _Y)
        optimizer.update(model, grads, value=loss)
        return loss

    return [float(train_step(model, optimizer)) for _ in range(steps)]


def test_nnx_optimizer_meta_lstm_sgd_reduces_loss():
    model, reference = _TinyModel(), _TinyModel()
    opt = lo.MetaLSTMOptimizer(hidden_size=4)
    losses = _nnx_losses(model, opt.as_optax(opt.sgd_meta_params(0.1)), steps=8)
    assert losses[-1] < 0.9 * losses[0]
    assert all(b < a for a, b in itertools.pairwise(losses))
    # It is exactly SGD, also through nnx.Optimizer.
    np.testing.assert_allclose(losses, _nnx_losses(reference, optax.sgd(0.1), steps=8), rtol=1e-5)
    got, want = nnx.state(model, nnx.Param), nnx.state(reference, nnx.Param)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), got, want)


def test_nnx_optimizer_each_architecture(small_opt):
    opt, meta_params = small_opt
    model = _TinyModel()
    before = jax.tree.map(jnp.copy, nnx.state(model, nnx.Param))
    losses = _nnx_losses(model, opt.as_optax(meta_params), steps=3)
    assert np.all(np.isfinite(losses))
    after = nnx.state(model, nnx.Param)
    _assert_same_tree(after, before)
    assert all(_changed(after, before))


def _train_state(tx, mlp_problem):
    params, loss_fn = mlp_problem
    state = train_state.TrainState.create(apply_fn=loss_fn, params=params, tx=tx)
    return state, jax.grad(loss_fn)(params)


@pytest.mark.parametrize(
    "opt", [lo.LSTMOptimizer(hidden_size=4), lo.MetaLSTMOptimizer(hidden_size=4)], ids=type
)
def test_train_state_needs_use_loss_false(opt, mlp_problem):
    state, grads = _train_state(opt.as_optax(opt.init(jax.random.key(0))), mlp_problem)
    with pytest.raises(ValueError, match=r"(?s)^value:.*use_loss=False"):
        state.apply_gradients(grads=grads)


@pytest.mark.parametrize(
    "opt",
    [
        lo.LSTMOptimizer(hidden_size=4, use_loss=False),
        lo.MetaLSTMOptimizer(hidden_size=4, use_loss=False),
        lo.LearnedRule(),
    ],
    ids=type,
)
def test_train_state_without_loss(opt, mlp_problem):
    state, grads = _train_state(opt.as_optax(opt.init(jax.random.key(0))), mlp_problem)
    apply = jax.jit(lambda s, g: s.apply_gradients(grads=g))
    new = apply(apply(state, grads), grads)
    assert int(new.step) == 2
    _assert_same_tree(new.params, state.params)
    assert all(_changed(new.params, state.params))


# --- Errors. ---


def _tx_state_params(small_opt):
    opt, meta_params = small_opt
    tx = opt.as_optax(meta_params)
    params = {"w": jnp.ones((2, 3)), "b": jnp.zeros(3)}
    return opt, tx, tx.init(params), params


@pytest.mark.parametrize(
    "grads",
    [
        {"w": jnp.ones((2, 3))},
        {"w": jnp.ones((2, 3)), "b": jnp.zeros(3), "c": jnp.zeros(1)},
        [jnp.ones((2, 3)), jnp.zeros(3)],
    ],
    ids=["missing", "extra", "list"],
)
def test_error_tree_structure_differs(small_opt, grads):
    _, tx, state, params = _tx_state_params(small_opt)
    with pytest.raises(ValueError, match=r"^updates: tree structure"):
        jax.jit(tx.update)(grads, state, params, value=1.0)


def test_error_leaf_of_wrong_shape(small_opt):
    _, tx, state, params = _tx_state_params(small_opt)
    grads = {"w": jnp.ones((3, 2)), "b": jnp.zeros(3)}
    with pytest.raises(ValueError, match=re.escape("updates: leaf ['w'] has shape (3, 2)")):
        tx.update(grads, state, params, value=1.0)


def test_error_params_needed(small_opt):
    opt, tx, state, params = _tx_state_params(small_opt)
    if not opt.needs_params:  # LSTMOptimizer works without them
        updates, _ = jax.eval_shape(functools.partial(tx.update, value=1.0), params, state)
        _assert_same_tree(updates, params)
        return
    with pytest.raises(ValueError, match=r"^params:"):
        tx.update(params, state, value=1.0)
    with pytest.raises(ValueError, match=re.escape("params: leaf ['w'] has shape (2, 2)")):
        tx.update(params, state, {"w": jnp.ones((2, 2)), "b": jnp.zeros(3)}, value=1.0)


@pytest.mark.parametrize("dtype", [jnp.int32, jnp.bool_])
def test_error_integer_params(small_opt, dtype):
    opt, meta_params = small_opt
    tx = opt.as_optax(meta_params)
    params = {"w": jnp.ones((2, 3)), "steps": jnp.zeros(3, dtype)}
    with pytest.raises(TypeError, match=rf"^params: leaf \['steps'\] has dtype {jnp.dtype(dtype)}"):
        tx.init(params)


@pytest.mark.parametrize(
    "opt", [lo.LSTMOptimizer(hidden_size=4), lo.MetaLSTMOptimizer(hidden_size=4)], ids=type
)
def test_error_value_missing_or_not_scalar(opt):
    tx = opt.as_optax(opt.init(jax.random.key(0)))
    params = {"w": jnp.ones((2, 3))}
    state = tx.init(params)
    with pytest.raises(ValueError, match=r"^value:.*reads the loss"):
        tx.update(params, state, params)
    with pytest.raises(
        ValueError, match=re.escape("value: expected a scalar loss, got shape (2,)")
    ):
        jax.jit(tx.update)(params, state, params, value=jnp.ones(2))
