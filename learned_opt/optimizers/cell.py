"""An LSTM cell run over a batch of coordinates of any shape ``(..., features)``."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp


class LSTMCarry(NamedTuple):
    """Hidden and cell state of one LSTM layer, each shaped ``(..., hidden)``.

    In an optimizer's state the leading axes are a parameter leaf's shape (a pytree of such
    arrays, one per leaf), or ``(num_coordinates,)`` in the flat layout.
    """

    h: Any
    c: Any


def init_lstm_params(key: jax.Array, input_size: int, hidden_size: int) -> dict[str, jax.Array]:
    """Fused gate weights ``w: (input + hidden, 4 hidden)`` (gate order i, f, g, o) and bias.

    Weights are uniform in ``±1/sqrt(hidden)`` and the forget-gate bias starts at 1.
    """
    bound = 1.0 / jnp.sqrt(hidden_size)
    w = jax.random.uniform(
        key, (input_size + hidden_size, 4 * hidden_size), jnp.float32, -bound, bound
    )
    b = jnp.zeros((4 * hidden_size,), jnp.float32).at[hidden_size : 2 * hidden_size].set(1.0)
    return {"w": w, "b": b}


def add_bias(y: jax.Array, b: jax.Array) -> jax.Array:
    """``y + b`` along the last axis, the broadcast written out (no implicit rank promotion)."""
    return y + b.reshape((1,) * (y.ndim - 1) + b.shape)


def lstm_step(params: dict[str, jax.Array], x: jax.Array, carry: LSTMCarry) -> LSTMCarry:
    """One LSTM step for every coordinate: ``x`` is ``(..., input)``, the carry ``(..., hidden)``.

    The carry is read in float32 whatever its storage dtype and returned in float32. Each gate is
    its own ``(..., input + hidden) @ (input + hidden, hidden)`` matmul over all coordinates. On
    CPU this is several times faster than one fused matmul followed by column slices (XLA then
    copies the slices), forward and, above all, backward.
    """
    hidden = carry.h.shape[-1]
    xh = jnp.concatenate([x, carry.h.astype(jnp.float32)], axis=-1)
    w, b = params["w"], params["b"]
    i, f, g, o = (
        add_bias(xh @ w[:, k * hidden : (k + 1) * hidden], b[k * hidden : (k + 1) * hidden])
        for k in range(4)
    )
    c = jax.nn.sigmoid(f) * carry.c.astype(jnp.float32) + jax.nn.sigmoid(i) * jnp.tanh(g)
    h = jax.nn.sigmoid(o) * jnp.tanh(c)
    return LSTMCarry(h, c)
