"""Parameter pytrees as groups of coordinates: one group per leaf, or the whole tree flattened.

Coordinatewise optimizers treat every coordinate of a tensor as one row of a batch. With the
``"per_leaf"`` layout each parameter leaf is one group and its state has the leaf's shape plus a
trailing feature axis, so the state follows the parameters' sharding and an update needs no
communication between devices. With ``"flat"`` every leaf is raveled into one vector first (one
group for the whole model; the original layout).

The state keeps a *spec* of the parameters: a pytree with the parameters' structure whose leaves
are empty arrays of shape ``(0, *shape)`` and the parameter's dtype. It costs no memory, survives
``jit``/``vmap``/``nnx.Optimizer`` and lets every update check the incoming tree against the one
the state was made for.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, Literal, Protocol, cast

import jax
import jax.numpy as jnp

PyTree = Any
Layout = Literal["per_leaf", "flat"]
LAYOUTS: tuple[Layout, ...] = ("per_leaf", "flat")


class TreeDef(Protocol):
    """The part of ``jax.tree_util.PyTreeDef`` this package uses.

    jaxlib ships no stub for ``PyTreeDef``, so a type checker cannot see its methods; trees'
    structures are taken with :func:`structure`, which gives them this type.
    """

    @property
    def num_leaves(self) -> int:
        """Number of leaves of the structure."""
        ...

    def flatten_up_to(self, tree: PyTree, /) -> list[PyTree]:
        """The subtrees of ``tree`` at this structure's leaves (it must be a prefix of ``tree``)."""
        ...

    def unflatten(self, leaves: Iterable[Any], /) -> PyTree:
        """A tree with this structure and ``leaves``."""
        ...


def structure(tree: PyTree) -> TreeDef:
    """The structure of ``tree``: ``jax.tree.structure`` with its methods typed."""
    return cast(TreeDef, jax.tree.structure(tree))


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
    treedef, spec_def = structure(tree), structure(spec)
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


def groups(tree: PyTree, layout: Layout) -> list[jax.Array]:
    """The coordinate groups of ``tree`` as float32 arrays: its leaves, or one raveled vector."""
    if layout == "flat":
        return [ravel(tree)]
    return [jnp.asarray(leaf).astype(jnp.float32) for leaf in jax.tree.leaves(tree)]


def group_shapes(spec: PyTree, layout: Layout) -> list[tuple[int, ...]]:
    """Shapes of the coordinate groups of parameters described by ``spec``."""
    if layout == "flat":
        return [(num_coordinates(spec),)]
    return [leaf.shape[1:] for leaf in jax.tree.leaves(spec)]


def ungroup(arrays: list[jax.Array], spec: PyTree, layout: Layout) -> PyTree:
    """Inverse of :func:`groups`: a tree shaped like ``spec``, each leaf in the spec's dtype."""
    if layout == "flat":
        return unravel(arrays[0], spec)
    leaves, treedef = jax.tree.flatten(spec)
    return jax.tree.unflatten(
        treedef, [a.astype(ref.dtype) for a, ref in zip(arrays, leaves, strict=True)]
    )


def pack(arrays: list[jax.Array], spec: PyTree, layout: Layout) -> PyTree:
    """Stores per-group state arrays: a tree shaped like the parameters, or the one array."""
    if layout == "flat":
        return arrays[0]
    return jax.tree.unflatten(jax.tree.structure(spec), arrays)


def unpack(stored: PyTree, layout: Layout) -> list[jax.Array]:
    """Inverse of :func:`pack`."""
    if layout == "flat":
        return [stored]
    return jax.tree.leaves(stored)


def zeros_like_groups(
    params: PyTree, layout: Layout, trailing: tuple[int, ...], dtype: Any
) -> list[jax.Array]:
    """Zero state arrays ``group.shape + trailing``, one per group.

    In the per-leaf layout each is computed from its parameter (its finiteness mask times 0, an
    operation XLA keeps), so under ``jit`` it inherits the parameter's sharding, where
    ``jnp.zeros_like`` would give an unsharded constant. Each call returns fresh buffers (a
    shared buffer could not be donated to a jitted update twice).
    """
    if layout == "flat":
        return [jnp.zeros((num_coordinates(param_spec(params)), *trailing), dtype)]
    out = []
    for leaf in jax.tree.leaves(params):
        zero = jnp.zeros_like(leaf, dtype=dtype) * jnp.isfinite(leaf)
        shape = jnp.shape(leaf)
        out.append(
            jnp.broadcast_to(zero.reshape(*shape, *(1 for _ in trailing)), (*shape, *trailing))
        )
    return out


def split_state(stored: PyTree, template: PyTree, layout: Layout) -> list[PyTree]:
    """Per-group views of per-coordinate state.

    ``template`` has the structure of one group's state, with a placeholder (any non-tree value)
    where ``stored`` holds a per-group array (``pack``-ed: a tree like the parameters, or the one
    flat array). Returns one template-structured state per group.
    """
    treedef = structure(template)
    columns = [unpack(s, layout) for s in treedef.flatten_up_to(stored)]
    num_groups = len(columns[0]) if columns else 0
    return [treedef.unflatten([c[i] for c in columns]) for i in range(num_groups)]


def join_state(
    group_states: list[PyTree], template: PyTree, spec: PyTree, layout: Layout, dtype: Any
) -> PyTree:
    """Inverse of :func:`split_state`: packs per-group states, each array cast to ``dtype``."""
    treedef = structure(template)
    rows = [treedef.flatten_up_to(g) for g in group_states]
    columns = [
        pack([row[f].astype(dtype) for row in rows], spec, layout)
        for f in range(treedef.num_leaves)
    ]
    return treedef.unflatten(columns)
