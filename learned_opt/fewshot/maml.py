"""MAML and first-order MAML: meta-learn an initialisation by differentiating through adaptation."""

from __future__ import annotations

import jax
import optax

from learned_opt.fewshot.base import Apply, FewShotLearner, Inner, LossFn, build, inner_loop


def maml(
    apply: Apply,
    loss: str | LossFn = "mse",
    inner: Inner = 0.01,
    num_inner_steps: int = 1,
    meta_optimizer: optax.GradientTransformation | None = None,
    *,
    first_order: bool = False,
    task_chunk: int | None = None,
) -> FewShotLearner:
    """Model-agnostic meta-learning: initial parameters that adapt well in a few inner steps.

    Per task, ``num_inner_steps`` steps of ``inner`` on the support set turn the meta-learned
    parameters ``θ`` into ``φ``; the meta-loss is the query loss at ``φ``, averaged over the
    batch of tasks, and its gradient with respect to ``θ`` -- through the inner loop, second-order
    terms included -- feeds ``meta_optimizer``. With ``first_order=True`` the inner gradients are
    constants, so the meta-gradient is the query gradient at ``φ`` (first-order MAML).

    If ``inner`` is a :class:`~learned_opt.optimizers.base.LearnedOptimizer`, its meta-parameters
    are meta-trained jointly with ``θ`` (see :func:`~learned_opt.fewshot.meta_lstm`).

    Args:
        apply: the model, ``apply(params, x) -> predictions``; e.g. a flax NNX module through
            ``graphdef, params = nnx.split(model)`` and
            ``lambda p, x: nnx.merge(graphdef, p)(x)``.
        loss: ``"mse"``, ``"cross_entropy"`` or ``loss(predictions, targets) -> scalar``.
        inner: inner-loop optimizer: a learning rate for SGD (0.01 in the paper), any
            optax transformation (``optax.adam(1e-3)``, ``opt.as_optax(meta_params)``), or a
            learned optimizer to meta-train.
        num_inner_steps: inner steps during meta-training.
        meta_optimizer: the outer optimizer; default ``optax.adam(1e-3)``.
        first_order: drop the second-order terms (first-order MAML).
        task_chunk: if set, ``update`` and ``evaluate`` take the tasks ``task_chunk`` at a time
            (``lax.map``) instead of vectorising all of them: on CPU, a convolutional model
            runs several times faster one task at a time (``task_chunk=1``).

    Returns:
        A :class:`~learned_opt.fewshot.FewShotLearner`.

    Example:
        >>> import jax, learned_opt as lo
        >>> family = lo.tasks.Sinusoid(hidden_sizes=(8,))
        >>> learner = lo.fewshot.maml(family.apply, "mse", inner=0.01)
        >>> state = learner.init(family.init(None, jax.random.key(0)))
        >>> episodes = lo.fewshot.sample_episodes(family, jax.random.key(1), 4, 10, 10)
        >>> state, loss = learner.update(state, episodes)
        >>> learner.evaluate(state, episodes, num_steps=3).shape
        (4, 4)

    References:
        Finn, Abbeel & Levine, "Model-agnostic meta-learning for fast adaptation of deep
        networks", ICML 2017 (arXiv 1703.03400).
    """
    if num_inner_steps < 1:
        raise ValueError(f"num_inner_steps: expected a positive integer, got {num_inner_steps}")

    def meta_loss(meta_params, support, query, loss_fn, tx_fn):
        def objective(meta_params):
            params, optimizer_params = meta_params
            adapted, _ = inner_loop(
                loss_fn,
                tx_fn(optimizer_params),
                params,
                support,
                num_inner_steps,
                first_order=first_order,
            )
            return loss_fn(adapted, query)

        loss_value, grads = jax.value_and_grad(objective)(meta_params)
        return grads, loss_value

    return build(
        apply=apply,
        loss=loss,
        inner=inner,
        meta_loss=meta_loss,
        meta_optimizer=meta_optimizer or optax.adam(1e-3),
        learns_optimizer=True,
        task_chunk=task_chunk,
    )


def first_order_maml(
    apply: Apply,
    loss: str | LossFn = "mse",
    inner: Inner = 0.01,
    num_inner_steps: int = 1,
    meta_optimizer: optax.GradientTransformation | None = None,
    *,
    task_chunk: int | None = None,
) -> FewShotLearner:
    """First-order MAML: :func:`maml` with ``first_order=True``.

    The meta-gradient is the query-loss gradient at the adapted parameters, so no Hessian-vector
    products are needed (about 33% faster in the MAML paper, at nearly the same accuracy).

    Example:
        >>> import jax, learned_opt as lo
        >>> family = lo.tasks.Sinusoid(hidden_sizes=(8,))
        >>> learner = lo.fewshot.first_order_maml(family.apply)
        >>> state = learner.init(family.init(None, jax.random.key(0)))
        >>> episodes = lo.fewshot.sample_episodes(family, jax.random.key(1), 4, 10, 10)
        >>> int(learner.update(state, episodes)[0].step)
        1

    References:
        Finn, Abbeel & Levine, "Model-agnostic meta-learning for fast adaptation of deep
        networks", ICML 2017, section 5.2.
    """
    return maml(
        apply, loss, inner, num_inner_steps, meta_optimizer, first_order=True, task_chunk=task_chunk
    )
