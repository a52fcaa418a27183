"""Plain-pytree neural-network pieces shared by the network task families.

A layer is a dict ``{"w": weights, "b": bias}``; a network is a list of layers. Weights are drawn
``N(0, scale²)`` (biases too, as in the L2L code) when ``scale`` is a number, or LeCun-normal
``N(0, 1/fan_in)`` with zero biases when ``scale`` is ``None``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

from learned_opt._checks import choice

Layer = dict[str, jax.Array]

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "sigmoid": jax.nn.sigmoid,
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
    "elu": jax.nn.elu,
    "gelu": jax.nn.gelu,
}


def activation(name: str) -> Callable[[jax.Array], jax.Array]:
    """Returns the activation function called ``name`` (one of ``ACTIVATIONS``)."""
    return ACTIVATIONS[choice("activation", name, sorted(ACTIVATIONS))]


def normal(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Standard normal float32 samples of ``shape``.

    Drawn as a flat vector and reshaped: XLA compiles a one-dimensional draw several times
    faster than a multi-dimensional one on CPU.
    """
    return jax.random.normal(key, (math.prod(shape),), jnp.float32).reshape(shape)


def init_layers(
    key: jax.Array, w_shapes: Sequence[tuple[int, ...]], scale: float | None
) -> list[Layer]:
    """Initialises layers with weights of ``w_shapes`` (inputs first, outputs last).

    A weight of shape ``(..., n_out)`` has ``fan_in = prod(shape[:-1])`` and a bias of
    ``(n_out,)``. All layers come from one random draw.
    """
    sizes = [(math.prod(shape), shape[-1]) for shape in w_shapes]
    flat = jax.random.normal(key, (sum(n_w + n_b for n_w, n_b in sizes),), jnp.float32)
    layers = []
    offset = 0
    for shape, (n_w, n_b) in zip(w_shapes, sizes, strict=True):
        w = flat[offset : offset + n_w].reshape(shape)
        b = flat[offset + n_w : offset + n_w + n_b]
        offset += n_w + n_b
        if scale is None:
            layers.append({"w": w / math.sqrt(n_w // n_b), "b": jnp.zeros_like(b)})
        else:
            layers.append({"w": scale * w, "b": scale * b})
    return layers


def init_mlp(key: jax.Array, sizes: Sequence[int], scale: float | None) -> list[Layer]:
    """Initialises dense layers ``sizes[0] -> sizes[1] -> ... -> sizes[-1]``."""
    return init_layers(key, list(itertools.pairwise(sizes)), scale)


def add_bias(y: jax.Array, b: jax.Array) -> jax.Array:
    """Adds ``b`` along the last axis of ``y`` (explicitly, without implicit rank promotion)."""
    return y + b.reshape((1,) * (y.ndim - 1) + b.shape)


def dense(layer: Layer, x: jax.Array) -> jax.Array:
    """Applies one dense layer to ``x`` of shape ``(..., n_in)``."""
    return add_bias(x @ layer["w"], layer["b"])


def mlp(layers: Sequence[Layer], x: jax.Array, act: Callable[[jax.Array], jax.Array]) -> jax.Array:
    """Applies dense layers with ``act`` between them (none after the last)."""
    for layer in layers[:-1]:
        x = act(dense(layer, x))
    return dense(layers[-1], x)


def softmax_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean cross-entropy of ``logits (batch, classes)`` against integer ``labels (batch,)``."""
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    picked = jnp.take_along_axis(log_probs, labels[:, None], axis=-1)
    return -jnp.mean(picked)


def mean_squared_error(predictions: jax.Array, targets: jax.Array) -> jax.Array:
    """Mean of the squared differences."""
    return jnp.mean((predictions - targets) ** 2)
