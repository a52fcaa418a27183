"""Ravi & Larochelle's few-shot learner: a Meta-LSTM optimizer and learned initial parameters."""

from __future__ import annotations

import optax

from learned_opt.fewshot.base import Apply, FewShotLearner, LossFn
from learned_opt.fewshot.maml import maml
from learned_opt.optimizers.meta_lstm import MetaLSTMOptimizer


def meta_lstm(
    apply: Apply,
    loss: str | LossFn = "mse",
    optimizer: MetaLSTMOptimizer | None = None,
    num_inner_steps: int = 5,
    meta_optimizer: optax.GradientTransformation | None = None,
    *,
    first_order: bool = True,
) -> FewShotLearner:
    """The Meta-LSTM meta-learner: the optimizer's gates and the learner's ``c_0`` meta-trained.

    The inner loop runs ``num_inner_steps`` steps of a
    :class:`~learned_opt.optimizers.MetaLSTMOptimizer` on the support set; the query loss after
    them is minimised with respect to both the optimizer's meta-parameters and the learner's
    initial parameters (the LSTM's initial cell state ``c_0``). As in the paper, gradients of the
    learner's gradients are dropped (``first_order=True``), while the meta-gradient still flows
    through the gates and the cell state. ``state.optimizer_params`` holds the learned
    optimizer's weights; ``init(params)`` starts them from ``optimizer.init(jax.random.key(0))``
    (pass ``optimizer_params=`` to start elsewhere, e.g. ``optimizer.sgd_meta_params(0.01)``).

    Args:
        apply: the model, ``apply(params, x)``.
        loss: ``"mse"``, ``"cross_entropy"`` or ``loss(predictions, targets)``.
        optimizer: the Meta-LSTM; default ``MetaLSTMOptimizer()`` (20 hidden units, loss input).
        num_inner_steps: inner steps during meta-training.
        meta_optimizer: default Adam 1e-3 after clipping the meta-gradient's norm to 0.25.
        first_order: drop second derivatives of the learner's loss.

    Returns:
        A :class:`~learned_opt.fewshot.FewShotLearner`.

    Example:
        >>> import jax, learned_opt as lo
        >>> family = lo.tasks.Sinusoid(hidden_sizes=(8,))
        >>> learner = lo.fewshot.meta_lstm(family.apply, num_inner_steps=2)
        >>> state = learner.init(family.init(None, jax.random.key(0)))
        >>> episodes = lo.fewshot.sample_episodes(family, jax.random.key(1), 4, 5, 10)
        >>> state, loss = learner.update(state, episodes)
        >>> sorted(state.optimizer_params)
        ['forget', 'input', 'lstm']

    References:
        Ravi & Larochelle, "Optimization as a model for few-shot learning", ICLR 2017.
    """
    return maml(
        apply,
        loss,
        inner=optimizer or MetaLSTMOptimizer(),
        num_inner_steps=num_inner_steps,
        meta_optimizer=meta_optimizer
        or optax.chain(optax.clip_by_global_norm(0.25), optax.adam(1e-3)),
        first_order=first_order,
    )
