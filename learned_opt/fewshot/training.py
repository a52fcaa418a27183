"""Meta-training loops: many meta-iterations in one compiled ``lax.scan``."""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax

from learned_opt.fewshot.base import Episodes, FewShotLearner, FewShotState


@functools.partial(jax.jit, static_argnames=("learner", "sample", "num_iterations"))
def fit(
    learner: FewShotLearner,
    state: FewShotState,
    sample: Callable[[jax.Array], Episodes],
    key: jax.Array,
    num_iterations: int,
) -> tuple[FewShotState, jax.Array]:
    """Runs ``num_iterations`` meta-iterations, each on a fresh batch of episodes.

    Args:
        learner: from :func:`~learned_opt.fewshot.maml`, :func:`~learned_opt.fewshot.reptile`, ...
        state: the learner's state.
        sample: ``sample(key) -> Episodes`` (e.g. a ``functools.partial`` of
            :func:`~learned_opt.fewshot.sample_episodes`); hashable, as it is a static argument.
        key: PRNG key; iteration ``i`` samples with ``jax.random.split(key, num_iterations)[i]``.
        num_iterations: meta-iterations (static).

    Returns:
        ``(state, losses)`` with the training loss of every iteration, ``(num_iterations,)``.

    Example:
        >>> import functools, jax, learned_opt as lo
        >>> family = lo.tasks.Sinusoid(hidden_sizes=(8,))
        >>> learner = lo.fewshot.first_order_maml(family.apply)
        >>> state = learner.init(family.init(None, jax.random.key(0)))
        >>> sample = functools.partial(lo.fewshot.sample_episodes, family, num_tasks=4,
        ...                            k_support=5, k_query=5)
        >>> state, losses = lo.fewshot.fit(learner, state, sample, jax.random.key(1), 3)
        >>> losses.shape, int(state.step)
        ((3,), 3)
    """

    def body(state, k):
        return learner.update(state, sample(k))

    return jax.lax.scan(body, state, jax.random.split(key, num_iterations))
