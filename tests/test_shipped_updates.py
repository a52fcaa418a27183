"""Every shipped optimizer computes the same updates, bit for bit, as when its file was written.

``tests/data/shipped_updates.npz`` holds each shipped optimizer's updates over three steps on a
small pytree. A change to the optimizers' code must leave them identical; when a weights file is
deliberately replaced, regenerate the record with ``python tests/test_shipped_updates.py``.
"""

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
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
    arrays = {f"{n}/{k}": v for n in lo.list_pretrained() for k, v in updates(n).items()}
    np.savez(sys.argv[1] if len(sys.argv) > 1 else RECORD, **arrays)
