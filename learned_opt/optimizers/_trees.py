"""Flattening a parameter pytree into one coordinate vector, and back.

Coordinatewise optimizers treat every coordinate of every tensor as one row of a batch, so the
whole model is processed by one matmul per layer. The state keeps a *spec* of the parameters: a
pytree with the parameters' structure whose leaves are empty arrays of shape ``(0, *shape)`` and
the parameter's dtype. It costs no memory, survives ``jit``/``vmap``/``nnx.Optimizer`` and lets
every update check the incoming tree against the one the state was made for.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

PyTree = Any


def _path_str(path) -> str:
    return jax.tree_util.keystr(path) or "<root>"


def param_spec(params: PyTree, *, name: str = "params") -> PyTree:
    """Returns the zero-size spec of ``params``, checking that every leaf is a float array."""
    leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
    spec = []
    for path, leaf in leaves:
        dtype = jnp.result_type(leaf)
        if not jnp.issubdtype(dtype, jnp.floating):
            raise TypeError(
                f"{name}: leaf {_path_str(path)} has dtype {dtype}; learned optimizers need "
                "floating-point parameters (float32, bfloat16, ...). Keep integer state out of "
                "the optimized tree (e.g. nnx.Optimizer(..., wrt=nnx.Param))."
            )
        spec.append(jnp.zeros((0, *jnp.shape(leaf)), dtype))
    return jax.tree_util.tree_unflatten(treedef, spec)


def num_coordinates(spec: PyTree) -> int:
    """Total number of coordinates described by ``spec``."""
    return sum(math.prod(leaf.shape[1:]) for leaf in jax.tree.leaves(spec))


def check_tree(tree: PyTree, spec: PyTree, name: str) -> None:
    """Raises ``ValueError`` naming ``name`` if ``tree`` does not match ``spec``."""
    treedef, spec_def = jax.tree.structure(tree), jax.tree.structure(spec)
    if treedef != spec_def:
        raise ValueError(
            f"{name}: tree structure {treedef} does not match the structure the optimizer state "
            f"was initialised with, {spec_def}."
        )
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    for (path, leaf), ref in zip(leaves, jax.tree.leaves(spec), strict=True):
        if jnp.shape(leaf) != ref.shape[1:]:
            raise ValueError(
                f"{name}: leaf {_path_str(path)} has shape {jnp.shape(leaf)}, expected "
                f"{ref.shape[1:]} as in the parameters the state was initialised with."
            )


def ravel(tree: PyTree) -> jax.Array:
    """Concatenates all leaves of ``tree`` into one float32 vector."""
    leaves = [jnp.ravel(leaf).astype(jnp.float32) for leaf in jax.tree.leaves(tree)]
    if not leaves:
        return jnp.zeros((0,), jnp.float32)
    return jnp.concatenate(leaves)


def unravel(vector: jax.Array, spec: PyTree) -> PyTree:
    """Splits ``vector`` back into a tree shaped like ``spec``, each leaf in the spec's dtype."""
    leaves, treedef = jax.tree.flatten(spec)
    out, offset = [], 0
    for ref in leaves:
        shape = ref.shape[1:]
        size = math.prod(shape)
        out.append(vector[offset : offset + size].reshape(shape).astype(ref.dtype))
        offset += size
    return jax.tree.unflatten(treedef, out)
