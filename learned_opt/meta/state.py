"""The state of a meta-training run: what a checkpoint holds and a meta-step advances."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import optax

PyTree = Any


class MetaTrainState(NamedTuple):
    """Everything a meta-training run needs to continue.

    Attributes:
        meta_params: the learned optimizer's weights.
        meta_opt_state: the meta-optimizer's state.
        estimator_state: the inner runs (leading task axis, sharded over devices); for a
            :class:`~learned_opt.tasks.Mixture`, a tuple with one estimator state per family.
        key: PRNG key for the next meta-step.
        step: meta-steps taken, int32.

    Example:
        >>> import jax
        >>> import learned_opt as lo
        >>> trainer = lo.MetaTrainer(lo.LearnedRule(), lo.tasks.Quadratic(dim=3),
        ...                          lo.TruncatedBackprop(unroll_length=5, horizon=10), num_tasks=2)
        >>> state = trainer.init(jax.random.key(0))
        >>> int(state.step), sorted(state.meta_params)
        (0, ['coef', 'log_lr'])
        >>> state.estimator_state.params.shape  # 2 inner runs of a 3-parameter model
        (2, 3)
        >>> state.estimator_state.step.tolist()  # runs start at different points of the horizon
        [0, 5]
    """

    meta_params: PyTree
    meta_opt_state: optax.OptState
    estimator_state: Any
    key: jax.Array
    step: jax.Array
