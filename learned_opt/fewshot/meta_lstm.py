"""Ravi & Larochelle's few-shot learner: a Meta-LSTM optimizer and learned initial parameters."""

from __future__ import annotations

import dataclasses
import math

import optax

from learned_opt.fewshot.base import Apply, FewShotLearner, LossFn
from learned_opt.fewshot.maml import maml
from learned_opt.optimizers.meta_lstm import MetaLSTMOptimizer


def input_gate_bias(learning_rate: float) -> tuple[float, float]:
    """The input-gate bias range whose gate starts at about ``learning_rate``.

    Ravi & Larochelle draw the bias from ``U[-5, -4]``, an interval of width 1 around
    ``logit(0.011)``; this is the interval of width 1 around ``logit(learning_rate)``, so the
    learned optimizer starts as SGD at (about) the rate tuned for plain SGD.

    Example:
        >>> from learned_opt.fewshot.meta_lstm import input_gate_bias
        >>> [round(b, 3) for b in input_gate_bias(0.5)]
        [-0.5, 0.5]
    """
    if not 0.0 < learning_rate < 1.0:
        raise ValueError(f"learning_rate: expected a value in (0, 1), got {learning_rate}")
    logit = math.log(learning_rate) - math.log1p(-learning_rate)
    return logit - 0.5, logit + 0.5


def meta_lstm(
    apply: Apply,
    loss: str | LossFn = "mse",
    optimizer: MetaLSTMOptimizer | None = None,
    num_inner_steps: int = 5,
    meta_optimizer: optax.GradientTransformation | None = None,
    *,
    learning_rate: float | None = None,
    first_order: bool = True,
    task_chunk: int | None = None,
) -> FewShotLearner:
    """The Meta-LSTM meta-learner: the optimizer's gates and the learner's ``c_0`` meta-trained.

    The inner loop runs ``num_inner_steps`` steps of a
    :class:`~learned_opt.optimizers.MetaLSTMOptimizer` on the support set; the query loss after
    them is minimised with respect to both the optimizer's meta-parameters and the learner's
    initial parameters (the LSTM's initial cell state ``c_0``). As in the paper, gradients of the
    learner's gradients are dropped (``first_order=True``), while the meta-gradient still flows
    through the gates and the cell state. ``state.optimizer_params`` holds the learned
    optimizer's weights; ``init(params)`` starts them from ``optimizer.init(jax.random.key(0))``
    (pass ``optimizer_params=`` to start elsewhere).

    The paper initialises the forget gate's bias from ``U[4, 6]`` (``f`` close to 1: no decay of
    the parameters) and the input gate's from ``U[-5, -4]`` (``i`` about 0.01: SGD with a small
    step); ``learning_rate`` moves the input gate's range to start at that rate instead (see
    :func:`input_gate_bias`), e.g. the learning rate tuned for MAML's inner SGD.

    Args:
        apply: the model, ``apply(params, x)``.
        loss: ``"mse"``, ``"cross_entropy"`` or ``loss(predictions, targets)``.
        optimizer: the Meta-LSTM; default ``MetaLSTMOptimizer()`` (20 hidden units, loss input).
        num_inner_steps: inner steps during meta-training.
        meta_optimizer: default Adam 1e-3 after clipping the meta-gradient's norm to 0.25.
        learning_rate: the input gate's initial value, in ``(0, 1)``; default: the optimizer's
            own ``input_bias``.
        first_order: drop second derivatives of the learner's loss.
        task_chunk: tasks per vectorised group (see :func:`~learned_opt.fewshot.maml`).

    Returns:
        A :class:`~learned_opt.fewshot.FewShotLearner`.

    Example:
        >>> import jax, learned_opt as lo
        >>> family = lo.tasks.Sinusoid(hidden_sizes=(8,))
        >>> learner = lo.fewshot.meta_lstm(family.apply, num_inner_steps=2, learning_rate=0.05)
        >>> state = learner.init(family.init(None, jax.random.key(0)))
        >>> rate = float(jax.nn.sigmoid(state.optimizer_params["input"]["b"]))
        >>> 0.05 * 0.6 < rate < 0.05 / 0.6  # the bias is drawn around logit(0.05)
        True
        >>> episodes = lo.fewshot.sample_episodes(family, jax.random.key(1), 4, 5, 10)
        >>> state, loss = learner.update(state, episodes)
        >>> sorted(state.optimizer_params)
        ['forget', 'input', 'lstm']

    References:
        Ravi & Larochelle, "Optimization as a model for few-shot learning", ICLR 2017.
    """
    optimizer = optimizer or MetaLSTMOptimizer()
    if learning_rate is not None:
        optimizer = dataclasses.replace(optimizer, input_bias=input_gate_bias(learning_rate))
    return maml(
        apply,
        loss,
        inner=optimizer,
        num_inner_steps=num_inner_steps,
        meta_optimizer=meta_optimizer
        or optax.chain(optax.clip_by_global_norm(0.25), optax.adam(1e-3)),
        first_order=first_order,
        task_chunk=task_chunk,
    )
