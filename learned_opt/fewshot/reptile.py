"""Reptile: move the initialisation toward the parameters each task adapts to."""

from __future__ import annotations

import jax
import optax

from learned_opt.fewshot.base import Apply, FewShotLearner, Inner, LossFn, build, inner_loop

#: Reptile's default inner learning rate (Adam with ``b1 = 0``); see :func:`reptile`.
INNER_LEARNING_RATE = 0.01


def reptile(
    apply: Apply,
    loss: str | LossFn = "mse",
    inner: Inner | None = None,
    num_inner_steps: int = 5,
    meta_step_size: float | optax.Schedule = 1.0,
    meta_optimizer: optax.GradientTransformation | None = None,
    *,
    task_chunk: int | None = None,
) -> FewShotLearner:
    """Reptile: ``θ ← θ + ε · mean_tasks(φ̃ - θ)``, ``φ̃`` after ``num_inner_steps`` inner steps.

    No gradient flows through the inner loop: ``θ - φ̃`` (averaged over the batch of tasks) is
    handed to ``meta_optimizer`` as if it were a gradient, which by default is
    ``optax.sgd(meta_step_size)`` -- exactly Reptile's update. A schedule as ``meta_step_size``
    gives the paper's linear annealing (``optax.linear_schedule(1.0, 0.0, num_iterations)``).

    Reptile has no separate meta-objective, so its inner loop learns from all of a task's data:
    the steps alternate between the support and the query set (support first). Steps on
    different batches are what make Reptile more than joint training (its update then
    maximises the inner product of the gradients of different batches of a task); with both
    sets it also sees every example that MAML's meta-gradient sees. ``update`` reports the
    query loss at ``φ̃``, a training loss. ``adapt`` and ``evaluate`` step on the support set
    only.

    The default inner optimizer is Adam with ``b1 = 0`` (Nichol et al.'s choice for
    Omniglot and mini-ImageNet) at a learning rate of :data:`INNER_LEARNING_RATE`, 0.01. An
    inner SGD step is as large as the gradient, and from Reptile's initialisation, which is
    never trained to make a step safe, SGD at 0.01-0.02 diverges on some sinusoid tasks of 5
    points (query MSE 10^9 on one task in 200 after 10 steps, measured); Adam's steps are at
    most about its learning rate per coordinate. The paper's rate, 1e-3, moves a weight by at
    most 0.01 in 10 steps: too little to adapt a sinusoid network (its Omniglot evaluation
    takes 50 steps).

    Args:
        apply: the model, ``apply(params, x)``.
        loss: ``"mse"``, ``"cross_entropy"`` or ``loss(predictions, targets)``.
        inner: inner-loop optimizer: a learning rate for SGD or any optax transformation;
            default ``optax.adam(0.01, b1=0.0)``.
        num_inner_steps: inner steps ``k`` per task (5 in the paper's Omniglot runs).
        meta_step_size: ``ε``, a float or an optax schedule (the paper: 1, annealed to 0).
        meta_optimizer: replaces ``optax.sgd(meta_step_size)`` when given.
        task_chunk: tasks per vectorised group (see :func:`~learned_opt.fewshot.maml`).

    Returns:
        A :class:`~learned_opt.fewshot.FewShotLearner`.

    Example:
        >>> import jax, jax.numpy as jnp, learned_opt as lo
        >>> apply = lambda p, x: x * p["w"]
        >>> learner = lo.fewshot.reptile(apply, inner=0.5, num_inner_steps=1, meta_step_size=0.1)
        >>> state = learner.init({"w": jnp.zeros(())})
        >>> x = jnp.ones((1, 2, 1))  # one task, two points with target 1
        >>> episodes = lo.fewshot.Episodes(support=(x, x), query=(x, x))
        >>> state, _ = learner.update(state, episodes)  # φ̃ = 0 + 0.5 * 2 = 1, θ = 0.1 * 1
        >>> round(float(state.params["w"]), 6)
        0.1

    References:
        Nichol, Achiam & Schulman, "On first-order meta-learning algorithms", arXiv 1803.02999.
    """
    if num_inner_steps < 1:
        raise ValueError(f"num_inner_steps: expected a positive integer, got {num_inner_steps}")
    if inner is None:
        inner = optax.adam(INNER_LEARNING_RATE, b1=0.0)

    def meta_loss(meta_params, support, query, loss_fn, tx_fn):
        params, optimizer_params = meta_params
        tx = tx_fn(optimizer_params)
        adapted, _ = inner_loop(loss_fn, tx, params, support, num_inner_steps, alternate=query)
        direction = jax.tree.map(lambda p, a: p - a, params, adapted)
        return (direction, optimizer_params), loss_fn(adapted, query)

    return build(
        apply=apply,
        loss=loss,
        inner=inner,
        meta_loss=meta_loss,
        meta_optimizer=meta_optimizer or optax.sgd(meta_step_size),
        task_chunk=task_chunk,
    )
