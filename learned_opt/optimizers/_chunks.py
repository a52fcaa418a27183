"""Coordinatewise computations over large tensors, one cache-sized chunk of coordinates at a time.

A coordinatewise optimizer computes, for every coordinate of a tensor, a few dozen activations
per LSTM layer from a few dozen state values. Done in one piece for a tensor of a million
coordinates, every intermediate is an array of millions of rows that goes out to memory and
back (and, freshly allocated on every step, costs a page fault per 4 KiB on CPU). Done a chunk
of about two thousand coordinates at a time, the intermediates stay in the cache and only the
state travels, read once and written once, in place when the state is donated.

:func:`map_chunks` does this for tensors above :data:`MAX_UNCHUNKED` coordinates; smaller ones
(the task models of meta-training) are computed in one piece: under ``vmap`` over tasks and
``grad`` a chunked loop is slower than one batch (a third slower for the 784 x 20 layer of the
MNIST MLP), while a model being trained, above this size, gains.

The chunks never split an axis into pieces that could lie on different devices: every axis of
size ``s`` is viewed as ``(a, s // a)`` with ``a = gcd(s, jax.device_count())`` (a multiple of
every number of shards the axis can have), each chunk keeps the ``a`` whole and the loop runs
over the rest. A tensor sharded along any axis (FSDP-style) is therefore updated with no
communication between devices.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

PyTree = Any

#: Tensors with at most this many coordinates are computed in one piece.
MAX_UNCHUNKED = 1 << 15
#: Coordinates per chunk: the gate activations of a 2 x 20 LSTM for this many stay in L2.
CHUNK = 2048


def _largest_divisor(n: int, limit: int) -> int:
    """The largest divisor of ``n`` that is at most ``limit`` (at least 1)."""
    best = 1
    for d in range(1, math.isqrt(n) + 1):
        if n % d == 0:
            for w in (d, n // d):
                if best < w <= limit:
                    best = w
    return best


class Plan(NamedTuple):
    """How a tensor is cut into chunks.

    Every axis of size ``s`` is split into ``(a, s // a)`` with ``a = gcd(s, devices)``: a
    sharding of the axis over any number of devices lies within ``a``, which every chunk keeps
    whole, and the loop runs over the rest. Axes of size 1 are left out (XLA would give them
    layouts that cost a copy).

    Attributes:
        view: the split shape.
        chunk: the shape of one chunk in ``view``: every ``a`` whole; of the ``s // a`` the
            trailing ones whole, one cut to a divisor, the leading ones 1.
        counts: chunks along each axis of ``view``; the loop visits them in C order.
        kept: the axes of ``view`` that are an ``a``.
    """

    view: tuple[int, ...]
    chunk: tuple[int, ...]
    counts: tuple[int, ...]
    kept: tuple[int, ...]


def plan(shape: tuple[int, ...], devices: int) -> Plan | None:
    """The chunks of a tensor of ``shape``, or ``None`` when it is computed in one piece (it is
    small, or its shape has no divisor that makes chunks of about :data:`CHUNK` coordinates)."""
    size = math.prod(shape)
    if size <= MAX_UNCHUNKED:
        return None
    axes: list[tuple[int, int, bool]] = []  # (size, chunk extent, kept whole) in view order
    room = max(1, CHUNK // math.prod(math.gcd(s, devices) for s in shape))
    for s in reversed(shape):
        a = math.gcd(s, devices)
        b = s // a
        e = b if b <= room else _largest_divisor(b, room)
        room = room // b if b <= room else 1
        axes[:0] = [(a, a, True), (b, e, False)]
    axes = [axis for axis in axes if axis[0] > 1]
    chunk = math.prod(e for _, e, _ in axes)
    if 4 * chunk < CHUNK or chunk == size:
        return None
    return Plan(
        view=tuple(v for v, _, _ in axes),
        chunk=tuple(e for _, e, _ in axes),
        counts=tuple(v // e for v, e, _ in axes),
        kept=tuple(k for k, (_, _, whole) in enumerate(axes) if whole),
    )


def _materialise(index: jax.Array, tree: PyTree) -> PyTree:
    """``tree``, passed through a conditional that is always taken.

    XLA on CPU fuses a dynamic slice into each of its consumers. When one of them reads the old
    rows of a state array that the loop then overwrites in place, XLA cannot order that read
    before the write and copies the whole array on every iteration. Out of a conditional the
    slices are buffers of their own, read before anything is written.
    """
    return lax.cond(index >= 0, lambda t: t, lambda t: jax.tree.map(jnp.zeros_like, t), tree)


def _to_bits(x: jax.Array) -> jax.Array:
    """A 2-byte float array as ``uint16`` (a free bitcast), anything else unchanged.

    XLA on CPU widens a ``bfloat16`` dynamic-update-slice to float32, which converts the whole
    state array to float32 and back on every iteration of the loop; on integers the update is
    in place.
    """
    if jnp.issubdtype(x.dtype, jnp.floating) and x.dtype.itemsize == 2:
        return lax.bitcast_convert_type(x, jnp.uint16)
    return x


def _from_bits(x: jax.Array, dtype: Any) -> jax.Array:
    """The inverse of :func:`_to_bits` for an array of ``dtype``."""
    return x if x.dtype == dtype else lax.bitcast_convert_type(x, dtype)


def map_chunks(
    fn: Callable[[PyTree, PyTree, PyTree], tuple[PyTree, PyTree]],
    shape: tuple[int, ...],
    shared: PyTree,
    inputs: PyTree,
    state: PyTree,
) -> tuple[PyTree, PyTree]:
    """Applies a coordinatewise ``fn(shared, inputs, state) -> (outputs, new_state)`` to a tensor.

    Args:
        fn: computes every coordinate independently of the others. It is called on arrays
            whose leading axes are ``shape``, or for a chunk those of :attr:`Plan.kept` followed
            by one axis of the chunk's other coordinates, and returns ``new_state`` with the
            structure and trailing shapes of ``state``.
        shape: the tensor's shape, the leading axes of every array of ``inputs`` and ``state``
            (each may have trailing feature axes).
        shared: arrays every coordinate uses (the optimizer's weights, scalar features). They
            reach each chunk through the same conditional as the chunk: as constants (the
            meta-parameters of ``as_optax``) XLA would split every matmul by the input blocks
            of the weights, into several times as many small matmuls.
        inputs: read-only per-coordinate arrays (e.g. the gradient).
        state: per-coordinate state; for a large tensor it is updated in place, so a donated
            state is written over, chunk by chunk.

    Returns:
        ``(outputs, new_state)`` for the whole tensor. ``new_state`` is in ``fn``'s dtypes for
        a tensor computed in one piece and in ``state``'s for a chunked one.
    """
    chunks = plan(tuple(shape), jax.device_count())
    if chunks is None:
        return fn(shared, inputs, state)
    dims = len(chunks.view)
    kept = [chunks.chunk[k] for k in chunks.kept]
    # A chunk as fn sees it: the kept axes first, then the others as one (they are never
    # sharded, so flattening them is free on any sharding).
    order = [*chunks.kept, *(k for k in range(dims) if k not in chunks.kept)]
    inverse = [order.index(k) for k in range(dims)]

    def starts(i):
        out: list[jax.Array | int] = []
        for count, extent in zip(reversed(chunks.counts), reversed(chunks.chunk), strict=True):
            out.insert(0, (i % count) * extent)
            i = i // count
        return out

    def read(x, i):
        trailing = x.shape[dims:]
        x = lax.dynamic_slice(x, [*starts(i), *(0 for _ in trailing)], [*chunks.chunk, *trailing])
        x = x.transpose(*order, *range(dims, x.ndim))
        return x.reshape(*kept, -1, *trailing)

    def write(full, new, i):
        trailing = new.shape[len(kept) + 1 :]
        new = new.reshape(*(chunks.chunk[k] for k in order), *trailing)
        new = new.transpose(*inverse, *range(dims, new.ndim))
        return lax.dynamic_update_slice(full, new, [*starts(i), *(0 for _ in trailing)])

    inputs, state = jax.tree.map(
        lambda x: x.reshape(*chunks.view, *x.shape[len(shape) :]), (inputs, state)
    )
    dtypes = jax.tree.map(lambda x: x.dtype, state)
    first = jax.tree.map(lambda x: read(x, 0), (inputs, state))
    outputs = jax.tree.map(
        lambda s: jnp.zeros((*chunks.view, *s.shape[len(kept) + 1 :]), s.dtype),
        jax.eval_shape(fn, shared, *first)[0],
    )

    def body(i, carry):
        bits, outputs = carry
        chunk_state = jax.tree.map(lambda x, d: _from_bits(read(x, i), d), bits, dtypes)
        here, chunk = _materialise(
            i, (shared, (jax.tree.map(lambda x: read(x, i), inputs), chunk_state))
        )
        chunk_out, chunk_state = fn(here, *chunk)
        bits = jax.tree.map(
            lambda full, new, d: write(full, _to_bits(new.astype(d)), i), bits, chunk_state, dtypes
        )
        outputs = jax.tree.map(lambda full, new: write(full, new, i), outputs, chunk_out)
        return bits, outputs

    bits = jax.tree.map(_to_bits, state)
    bits, outputs = lax.fori_loop(0, math.prod(chunks.counts), body, (bits, outputs))
    state = jax.tree.map(_from_bits, bits, dtypes)
    return jax.tree.map(lambda x: x.reshape(*shape, *x.shape[dims:]), (outputs, state))
