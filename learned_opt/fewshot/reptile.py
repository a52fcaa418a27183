"""Reptile: move the initialisation toward the parameters each task adapts to."""

from __future__ import annotations

import jax
import optax

from learned_opt.fewshot.base import Apply, FewShotLearner, Inner, LossFn, build, inner_loop


def reptile(
    apply: Apply,
    loss: str | LossFn = "mse",
    inner: Inner = 0.01,
    num_inner_steps: int = 5,
    meta_step_size: float | optax.Schedule = 0.1,
    meta_optimizer: optax.GradientTransformation | None = None,
) -> FewShotLearner:
    """Reptile: ``θ ← θ + ε · mean_tasks(φ̃ - θ)``, ``φ̃`` after ``num_inner_steps`` inner steps.

    No gradient flows through the inner loop: ``θ - φ̃`` (averaged over the batch of tasks) is
    handed to ``meta_optimizer`` as if it were a gradient, which by default is
    ``optax.sgd(meta_step_size)`` -- exactly Reptile's update. A schedule as ``meta_step_size``
    gives the paper's linear annealing (``optax.linear_schedule(1.0, 0.0, num_iterations)``).
    The inner loop runs on the support set; the loss ``update`` reports is the query loss at
    ``φ̃``.

    Args:
        apply: the model, ``apply(params, x)``.
        loss: ``"mse"``, ``"cross_entropy"`` or ``loss(predictions, targets)``.
        inner: inner-loop optimizer: a learning rate for SGD or any optax transformation (the
            paper uses ``optax.adam(1e-3, b1=0.0)`` on images).
        num_inner_steps: inner steps ``k`` per task (``k = 1`` is joint training in disguise).
        meta_step_size: ``ε``, a float or an optax schedule.
        meta_optimizer: replaces ``optax.sgd(meta_step_size)`` when given.

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

    def meta_loss(meta_params, support, query, loss_fn, tx_fn):
        params, optimizer_params = meta_params
        adapted, _ = inner_loop(loss_fn, tx_fn(optimizer_params), params, support, num_inner_steps)
        direction = jax.tree.map(lambda p, a: p - a, params, adapted)
        return (direction, optimizer_params), loss_fn(adapted, query)

    return build(
        apply=apply,
        loss=loss,
        inner=inner,
        meta_loss=meta_loss,
        meta_optimizer=meta_optimizer or optax.sgd(meta_step_size),
    )
