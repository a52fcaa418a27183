"""Every shipped optimizer computes the same updates, bit for bit, as when its file was written.

``tests/data/shipped_updates.npz`` holds each shipped optimizer's updates over three steps on a
small pytree. A change to the optimizers' code must leave them identical; when a weights file is
deliberately replaced, regenerate the record with ``python tests/test_shipped_updates.py``.
"""

import sys
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import learned_opt as lo

RECORD = Path(__file__).parent / "data" / "shipped_updates.npz"


def updates(name: str) -> dict[str, np.ndarray]:
    """``{"step/leaf": update}`` of ``lo.pretrained(name)`` over three steps."""
    params = {"w": jnp.linspace(-1, 1, 15).reshape(3, 5), "b": jnp.zeros(5), "s": jnp.array(0.5)}
    tx = lo.pretrained(name)
    state, out = tx.init(params), {}
    for t in range(3):
        grads = jax.tree.map(lambda x, t=t: jnp.cos(3.0 * x + t) + 0.1 * t, params)
        step, state = tx.update(grads, state, params, value=jnp.float32(1.0 / (t + 1)))
        params = jax.tree.map(jnp.add, params, step)
        out.update({f"{t}/{leaf}": np.asarray(value) for leaf, value in step.items()})
    return out


def test_the_record_covers_every_shipped_optimizer():
    names = {key.split("/")[0] for key in np.load(RECORD)}
    assert names == set(lo.list_pretrained())


@pytest.mark.parametrize("name", lo.list_pretrained())
def test_a_shipped_optimizer_computes_its_recorded_updates_bit_for_bit(name):
    record = np.load(RECORD)
    got = updates(name)
    assert set(got) == {k.split("/", 1)[1] for k in record if k.startswith(f"{name}/")}
    for key, value in got.items():
        np.testing.assert_array_equal(value, record[f"{name}/{key}"], err_msg=key)


if __name__ == "__main__":
    arrays: dict[str, Any] = {
        f"{n}/{k}": v for n in lo.list_pretrained() for k, v in updates(n).items()
    }
    np.savez(sys.argv[1] if len(sys.argv) > 1 else RECORD, **arrays)


@pytest.mark.parametrize("name", lo.list_pretrained())
def test_the_learned_direction_by_name_at_the_built_in_step_is_the_pretrained_optimizer(name):
    optimizer, meta_params = lo.load_pretrained(name)
    rate = float(optimizer.learning_rate(meta_params))
    chained = optax.chain(lo.scale_by_learned(name), optax.scale_by_learning_rate(rate))
    ready = lo.pretrained(name)
    params = {"w": jnp.linspace(-1, 1, 6).reshape(2, 3), "b": jnp.zeros(3)}
    states = chained.init(params), ready.init(params)
    for t in range(3):
        grads = jax.tree.map(lambda x, t=t: jnp.sin(2.0 * x + t) + 0.2, params)
        a, s0 = chained.update(grads, states[0], params, value=jnp.float32(1.0))
        b, s1 = ready.update(grads, states[1], params, value=jnp.float32(1.0))
        states = s0, s1
        jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-12), a, b)
        params = jax.tree.map(jnp.add, params, a)


def test_an_unknown_name_is_refused_with_the_known_ones():
    with pytest.raises(ValueError, match=r"name: no pretrained optimizer 'adam'; available: \["):
        lo.scale_by_learned("adam")
