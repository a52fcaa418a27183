"""Drawing few-shot episodes: from a task family, or by splitting a task's own examples."""

from __future__ import annotations

import functools
import operator
from typing import Any, Protocol, runtime_checkable

import jax
import jax.numpy as jnp

from learned_opt.fewshot.base import Batch, Episodes, PyTree


@runtime_checkable
class EpisodeFamily(Protocol):
    """A task family that draws few-shot episodes, as :func:`sample_episodes` needs.

    :class:`~learned_opt.tasks.Sinusoid` and :class:`~learned_opt.tasks.Glyphs` are such
    families. A family with a finite pool of examples per task also declares its size as
    ``max_examples``. Families are static arguments of ``jax.jit``, so they must be hashable.
    """

    def sample(self, key: jax.Array) -> PyTree:
        """Draws one task's arrays, as :meth:`~learned_opt.tasks.TaskFamily.sample` does."""
        ...

    def support_query(
        self, task_params: PyTree, key: jax.Array, k_support: int, k_query: int
    ) -> tuple[Batch, Batch]:
        """Draws one task's support set of ``k_support`` and query set of ``k_query`` examples."""
        ...


def _count(name: str, value: Any) -> int:
    try:
        value = operator.index(value)
    except TypeError:
        raise ValueError(f"{name}: expected a positive integer, got {value!r}") from None
    if value < 1:
        raise ValueError(f"{name}: expected a positive integer, got {value}")
    return value


def sample_episodes(
    family: EpisodeFamily, key: jax.Array, num_tasks: int, k_support: int, k_query: int
) -> Episodes:
    """Samples ``num_tasks`` tasks and each one's support and query sets (one vmapped program).

    The family needs a ``support_query(task_params, key, k_support, k_query)`` method (see
    :class:`EpisodeFamily`; e.g. :class:`~learned_opt.tasks.Sinusoid`). Families with a finite
    pool of examples per task declare it as ``max_examples``, and ``k_support + k_query`` may
    not exceed it.

    Args:
        family: the task family, an :class:`EpisodeFamily`.
        key: PRNG key.
        num_tasks: tasks in the batch.
        k_support: support examples per task (the "K" of K-shot), as the family counts them:
            points for :class:`~learned_opt.tasks.Sinusoid`, images per class for
            :class:`~learned_opt.tasks.glyphs.Glyphs`.
        k_query: query examples per task, counted the same way.

    Returns:
        :class:`~learned_opt.fewshot.Episodes` with a leading task axis.

    Example:
        >>> import jax, learned_opt as lo
        >>> ep = lo.fewshot.sample_episodes(lo.tasks.Sinusoid(), jax.random.key(0), 3, 5, 7)
        >>> ep.support[0].shape, ep.query[1].shape
        ((3, 5, 1), (3, 7, 1))

    References:
        Finn, Abbeel & Levine, "Model-agnostic meta-learning for fast adaptation of deep
        networks", ICML 2017 (K-shot episodes); Vinyals et al., "Matching networks for one shot
        learning", NeurIPS 2016 (episodic training).
    """
    num_tasks = _count("num_tasks", num_tasks)
    k_support, k_query = _count("k_support", k_support), _count("k_query", k_query)
    if not isinstance(family, EpisodeFamily):
        raise TypeError(f"family: {type(family).__name__} has no support_query method")
    available = getattr(family, "max_examples", None)
    if available is not None and k_support + k_query > available:
        raise ValueError(
            f"k_support + k_query = {k_support + k_query} exceeds the {available} examples per "
            f"task of {type(family).__name__}"
        )
    return _sample(family, key, num_tasks, k_support, k_query)


@functools.partial(jax.jit, static_argnums=(0, 2, 3, 4))
def _sample(family: EpisodeFamily, key: jax.Array, num_tasks: int, k_support: int, k_query: int):
    task_key, data_key = jax.random.split(key)
    task_params = jax.vmap(family.sample)(jax.random.split(task_key, num_tasks))
    draw = lambda tp, k: family.support_query(tp, k, k_support, k_query)
    support, query = jax.vmap(draw)(task_params, jax.random.split(data_key, num_tasks))
    return Episodes(support, query)


def split_support_query(
    key: jax.Array, examples: Batch, k_support: int, k_query: int
) -> tuple[Batch, Batch]:
    """Splits one task's examples at random into disjoint support and query sets.

    Args:
        key: PRNG key.
        examples: a pytree (e.g. ``(x, y)``) whose leaves share a leading axis of ``n`` examples.
        k_support: support examples.
        k_query: query examples; ``k_support + k_query <= n``.

    Returns:
        ``(support, query)``, pytrees like ``examples`` with ``k_support`` / ``k_query`` rows.

    Example:
        >>> import jax, jax.numpy as jnp, learned_opt as lo
        >>> x = jnp.arange(10.0)[:, None]
        >>> (xs,), (xq,) = lo.fewshot.split_support_query(jax.random.key(0), (x,), 3, 7)
        >>> sorted(jnp.concatenate([xs, xq])[:, 0].tolist()) == x[:, 0].tolist()
        True
    """
    k_support, k_query = _count("k_support", k_support), _count("k_query", k_query)
    shapes = [jnp.shape(leaf) for leaf in jax.tree.leaves(examples)]
    sizes = {shape[0] for shape in shapes if shape}
    if len(sizes) != 1 or not all(shapes):
        raise ValueError("examples: every leaf needs the same leading axis of examples")
    (n,) = sizes
    if k_support + k_query > n:
        raise ValueError(f"k_support + k_query = {k_support + k_query} exceeds the {n} examples")
    order = jax.random.permutation(key, n)
    take = lambda idx: jax.tree.map(lambda leaf: leaf[idx], examples)
    return take(order[:k_support]), take(order[k_support : k_support + k_query])
