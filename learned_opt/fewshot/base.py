"""Pieces every few-shot method shares: episodes, losses, the inner loop and the learner type.

A few-shot *learner* is built from a model ``apply(params, x)``, a loss on its predictions and an
inner-loop optimizer. Its meta-parameters are the model's initial parameters (and, for a learned
inner optimizer, that optimizer's weights). Every method returns the same :class:`FewShotLearner`
of pure functions, as optax returns a ``GradientTransformation``::

    learner = lo.fewshot.maml(apply, loss="mse", inner=0.01)
    state = learner.init(params)
    state, loss = learner.update(state, episodes)        # one meta-iteration, jitted
    losses = learner.evaluate(state, episodes, 10)        # query loss after 0..10 inner steps

``episodes`` holds a batch of tasks (a leading task axis on every leaf); ``update`` and
``evaluate`` ``vmap`` over it and are ``jit``-compiled. ``loss`` is a name from :data:`LOSSES`
or any ``loss(predictions, targets) -> scalar``.

Example:
    >>> import learned_opt as lo
    >>> sorted(lo.fewshot.LOSSES)
    ['cross_entropy', 'mse']
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple, TypeAlias

import jax
import jax.numpy as jnp
import optax

from learned_opt.optimizers import _trees
from learned_opt.optimizers.base import LearnedOptimizer

PyTree = Any
Batch = Any
Apply = Callable[[PyTree, jax.Array], jax.Array]
LossFn = Callable[[jax.Array, jax.Array], jax.Array]
Inner: TypeAlias = float | optax.GradientTransformation | LearnedOptimizer


class Episodes(NamedTuple):
    """A batch of few-shot tasks, each a support set to adapt on and a query set to score on.

    Attributes:
        support: ``(x, y)`` with shapes ``(num_tasks, k_support, ...)``.
        query: ``(x, y)`` with shapes ``(num_tasks, k_query, ...)``.

    Example:
        >>> import jax.numpy as jnp
        >>> import learned_opt as lo
        >>> x = jnp.zeros((4, 8, 1))  # 4 tasks with 8 points each
        >>> episodes = lo.fewshot.Episodes(support=(x[:, :5], x[:, :5]), query=(x[:, 5:], x[:, 5:]))
        >>> episodes.support[0].shape, episodes.query[0].shape
        ((4, 5, 1), (4, 3, 1))

    References:
        Vinyals et al., "Matching networks for one shot learning", NeurIPS 2016 (episodic
        training); Finn, Abbeel & Levine, "Model-agnostic meta-learning for fast adaptation of
        deep networks", ICML 2017 (K-shot support and query sets).
    """

    support: Batch
    query: Batch


class FewShotState(NamedTuple):
    """State of a :class:`FewShotLearner`.

    Attributes:
        params: the meta-learned initial parameters of the model.
        optimizer_params: meta-parameters of a learned inner optimizer, else ``None``.
        opt_state: state of the meta-optimizer over ``(params, optimizer_params)``.
        step: meta-iterations taken, int32.

    Example:
        >>> import jax.numpy as jnp
        >>> import learned_opt as lo
        >>> state = lo.fewshot.maml(lambda p, x: x * p["w"]).init({"w": jnp.zeros(())})
        >>> state.optimizer_params is None, int(state.step)  # an SGD inner loop learns nothing
        (True, 0)
    """

    params: PyTree
    optimizer_params: PyTree
    opt_state: optax.OptState
    step: jax.Array


class FewShotLearner(NamedTuple):
    """A few-shot learning method as pure, jitted functions.

    Attributes:
        init: ``init(params, optimizer_params=None) -> FewShotState``.
        update: ``update(state, episodes) -> (state, loss)``: one meta-iteration on a batch of
            tasks; ``loss`` is the method's mean training loss before the update.
        adapt: ``adapt(state, support, num_steps) -> params``: fine-tunes on one task's support
            set with the inner optimizer.
        evaluate: ``evaluate(state, episodes, num_steps, metric=None)``: the query ``metric``
            (default: the loss) after ``0..num_steps`` inner steps, shape
            ``(num_tasks, num_steps + 1)``.

    Example:
        >>> import jax.numpy as jnp
        >>> import learned_opt as lo
        >>> learner = lo.fewshot.reptile(lambda p, x: x * p["w"], inner=0.5)
        >>> learner._fields
        ('init', 'update', 'adapt', 'evaluate')
        >>> state = learner.init({"w": jnp.zeros(())})
        >>> x = jnp.ones((2, 1))
        >>> float(learner.adapt(state, (x, x), 1)["w"])  # one SGD step of size 0.5 on the MSE
        1.0
    """

    init: Callable[..., FewShotState]
    update: Callable[[FewShotState, Episodes], tuple[FewShotState, jax.Array]]
    adapt: Callable[[FewShotState, Batch, int], PyTree]
    evaluate: Callable[..., jax.Array]


def _check_shapes(predictions: jax.Array, targets: jax.Array, expected: tuple[int, ...]) -> None:
    if predictions.shape[:-1] != targets.shape[: predictions.ndim - 1] or targets.shape != expected:
        raise ValueError(
            f"loss: model output of shape {predictions.shape} does not fit targets of shape "
            f"{targets.shape}."
        )


def mse(predictions: jax.Array, targets: jax.Array) -> jax.Array:
    """Mean squared error; ``predictions`` and ``targets`` must have the same shape.

    Example:
        >>> import jax.numpy as jnp
        >>> import learned_opt as lo
        >>> float(lo.fewshot.mse(jnp.zeros((2, 1)), jnp.ones((2, 1))))
        1.0
    """
    _check_shapes(predictions, targets, predictions.shape)
    return jnp.mean((predictions - targets) ** 2)


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy of ``logits (n, classes)`` against integer ``labels (n,)``.

    Example:
        >>> import jax.numpy as jnp
        >>> import learned_opt as lo
        >>> round(float(lo.fewshot.cross_entropy(jnp.zeros((2, 4)), jnp.array([0, 3]))), 4)
        1.3863
    """
    _check_shapes(logits, labels, logits.shape[:-1])
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))


def accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Fraction of ``labels (n,)`` equal to the arg-max of ``logits (n, classes)``.

    Example:
        >>> import jax.numpy as jnp
        >>> import learned_opt as lo
        >>> float(lo.fewshot.accuracy(jnp.array([[1.0, 0.0], [1.0, 0.0]]), jnp.array([0, 1])))
        0.5
    """
    _check_shapes(logits, labels, logits.shape[:-1])
    return jnp.mean((jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32))


#: Losses by name, for the ``loss=`` argument of every method.
LOSSES: dict[str, LossFn] = {"mse": mse, "cross_entropy": cross_entropy}


def resolve_loss(loss: str | LossFn) -> LossFn:
    """Returns ``loss`` itself if callable, else the entry of :data:`LOSSES` it names."""
    if callable(loss):
        return loss
    try:
        return LOSSES[loss]
    except KeyError:
        raise ValueError(f"loss: unknown {loss!r}; known: {sorted(LOSSES)}") from None


def batch_loss(apply: Apply, loss: LossFn) -> Callable[[PyTree, Batch], jax.Array]:
    """``loss(apply(params, x), y)`` as a function of ``(params, (x, y))``."""

    def fn(params: PyTree, batch: Batch) -> jax.Array:
        x, y = batch
        return loss(apply(params, x), y)

    return fn


def inner_transform(
    inner: Inner, optimizer_params: PyTree = None
) -> optax.GradientTransformationExtraArgs:
    """The inner-loop optimizer as an optax transformation that accepts ``value=``.

    Args:
        inner: a learning rate (plain SGD), an optax transformation (e.g. ``optax.adam(1e-3)`` or
            a learned optimizer's ``opt.as_optax(meta_params)``), or a
            :class:`~learned_opt.optimizers.base.LearnedOptimizer` whose meta-parameters are
            ``optimizer_params``.
        optimizer_params: meta-parameters of a learned ``inner``; ignored otherwise.
    """
    if isinstance(inner, LearnedOptimizer):
        return inner.as_optax(optimizer_params)
    if isinstance(inner, optax.GradientTransformation):
        return optax.with_extra_args_support(inner)
    if isinstance(inner, int | float) and not isinstance(inner, bool) and inner > 0:
        return optax.with_extra_args_support(optax.sgd(float(inner)))
    raise TypeError(
        "inner: expected a positive learning rate, an optax.GradientTransformation or a "
        f"LearnedOptimizer, got {inner!r}"
    )


def inner_loop(
    loss_fn: Callable[[PyTree, Batch], jax.Array],
    tx: optax.GradientTransformationExtraArgs,
    params: PyTree,
    support: Batch,
    num_steps: int,
    *,
    first_order: bool = False,
    score: Callable[[PyTree], jax.Array] | None = None,
    alternate: Batch | None = None,
) -> tuple[PyTree, jax.Array | None]:
    """Takes ``num_steps`` optimizer steps on the support set (differentiably, with ``lax.scan``).

    Args:
        loss_fn: ``loss_fn(params, batch)``.
        tx: the inner optimizer; receives the loss as ``value=``.
        params: the starting parameters.
        support: the batch every step is taken on.
        num_steps: number of steps (static).
        first_order: treat the inner gradients and losses as constants
            (``stop_gradient``), which drops MAML's second-order terms.
        score: if given, evaluated on the parameters before every step and after the last.
        alternate: a second batch: steps then alternate between ``support`` (steps 0, 2, ...)
            and ``alternate`` (steps 1, 3, ...), as Reptile's inner loop does.

    Returns:
        ``(params, scores)``; ``scores`` has shape ``(num_steps + 1, ...)`` or is ``None``.

    Example:
        >>> import jax.numpy as jnp, optax
        >>> import learned_opt as lo
        >>> loss_fn = lambda p, batch: jnp.mean((batch[0] * p - batch[1]) ** 2)
        >>> x = jnp.ones(4)
        >>> params, scores = lo.fewshot.inner_loop(
        ...     loss_fn, optax.sgd(0.25), jnp.zeros(()), (x, x), 2,
        ...     score=lambda p: loss_fn(p, (x, x)))
        >>> float(params), scores.tolist()
        (0.75, [1.0, 0.25, 0.0625])
    """
    if num_steps < 0:
        raise ValueError(f"num_steps: expected a non-negative integer, got {num_steps}")
    grad_fn = jax.value_and_grad(loss_fn)
    batches = (support,) if alternate is None else (support, alternate)

    def step(carry, batch):
        params, opt_state = carry
        scored = None if score is None else score(params)
        loss, grads = grad_fn(params, batch)
        if first_order:
            loss, grads = jax.lax.stop_gradient((loss, grads))
        updates, opt_state = tx.update(grads, opt_state, params, value=loss)
        return (optax.apply_updates(params, updates), opt_state), scored

    def one_round(carry, _):  # one step on each batch in turn
        scored = []
        for batch in batches:
            carry, s = step(carry, batch)
            scored.append(s)
        return carry, None if score is None else jnp.stack(scored)

    rounds, extra = divmod(num_steps, len(batches))
    carry, scores = jax.lax.scan(one_round, (params, tx.init(params)), length=rounds)
    if score is None:
        for batch in batches[:extra]:
            carry, _ = step(carry, batch)
        return carry[0], None
    scores = [scores.reshape(rounds * len(batches), *scores.shape[2:])]
    for batch in batches[:extra]:
        carry, s = step(carry, batch)
        scores.append(s[None])
    return carry[0], jnp.concatenate([*scores, score(carry[0])[None]], axis=0)


def check_params(params: PyTree) -> None:
    """Raises ``TypeError`` unless every leaf of ``params`` is a floating-point array."""
    _trees.param_spec(params)


def check_episodes(episodes: Episodes) -> None:
    """Raises ``ValueError`` unless support and query share one leading task axis."""
    sizes = {jnp.shape(leaf)[0] if jnp.ndim(leaf) else None for leaf in jax.tree.leaves(episodes)}
    if len(sizes) != 1 or None in sizes:
        raise ValueError(
            "episodes: every support and query array needs the same leading task axis, got "
            f"shapes {jax.tree.map(jnp.shape, episodes)}"
        )


def map_tasks(fn: Callable[..., Any], task_chunk: int | None, *args: Any) -> Any:
    """``vmap`` of ``fn`` over the leading task axis of ``args``, or ``lax.map`` in chunks.

    With ``task_chunk`` set, tasks go through ``fn`` ``task_chunk`` at a time: on CPU a
    convolutional learner whose adapted weights differ per task runs several times faster one
    task at a time, since vectorised per-task weights become grouped convolutions.
    """
    if task_chunk is None:
        return jax.vmap(fn)(*args)
    return jax.lax.map(lambda a: fn(*a), args, batch_size=task_chunk)


def build(
    *,
    apply: Apply,
    loss: str | LossFn,
    inner: Inner,
    meta_loss: Callable[..., tuple[Any, jax.Array]],
    meta_optimizer: optax.GradientTransformation,
    learns_optimizer: bool = False,
    task_chunk: int | None = None,
) -> FewShotLearner:
    """Assembles a :class:`FewShotLearner` from one method's per-task meta-gradient.

    Args:
        apply: the model, ``apply(params, x)``.
        loss: ``"mse"``, ``"cross_entropy"`` or a function ``loss(predictions, targets)``.
        inner: the inner optimizer (see :func:`inner_transform`).
        meta_loss: ``meta_loss(meta_params, support, query, loss_fn, tx_fn) -> (grads, loss)``
            for one task, where ``meta_params = (params, optimizer_params)``, ``loss_fn`` is the
            batch loss and ``tx_fn(optimizer_params)`` the inner optimizer; ``grads`` has the
            structure of ``meta_params``. It is vmapped over tasks and averaged.
        meta_optimizer: the optax transformation applied to the averaged ``grads``.
        learns_optimizer: whether a learned ``inner``'s meta-parameters are meta-trained (then
            ``init`` defaults them to ``inner.init(jax.random.key(0))``).
        task_chunk: tasks per vectorised group in ``update`` and ``evaluate`` (see
            :func:`map_tasks`); ``None`` vectorises them all.
    """
    loss_fn = batch_loss(apply, resolve_loss(loss))
    inner_transform(inner)  # validates ``inner`` now rather than at the first call
    if isinstance(inner, LearnedOptimizer) and not learns_optimizer:
        raise TypeError(
            "inner: this method does not meta-train a LearnedOptimizer; pass "
            "opt.as_optax(meta_params) to use fixed learned weights."
        )
    tx_fn = lambda optimizer_params: inner_transform(inner, optimizer_params)

    def init(params: PyTree, optimizer_params: PyTree = None) -> FewShotState:
        check_params(params)
        if isinstance(inner, LearnedOptimizer) and optimizer_params is None:
            optimizer_params = inner.init(jax.random.key(0))
        meta_params = (params, optimizer_params)
        return FewShotState(
            params, optimizer_params, meta_optimizer.init(meta_params), jnp.zeros((), jnp.int32)
        )

    @jax.jit
    def update(state: FewShotState, episodes: Episodes) -> tuple[FewShotState, jax.Array]:
        check_episodes(episodes)
        meta_params = (state.params, state.optimizer_params)
        per_task = lambda s, q: meta_loss(meta_params, s, q, loss_fn, tx_fn)
        grads, losses = map_tasks(per_task, task_chunk, episodes.support, episodes.query)
        grads = jax.tree.map(lambda g: jnp.mean(g, axis=0), grads)
        updates, opt_state = meta_optimizer.update(grads, state.opt_state, meta_params)
        params, optimizer_params = optax.apply_updates(meta_params, updates)
        return FewShotState(params, optimizer_params, opt_state, state.step + 1), jnp.mean(losses)

    def adapt(state: FewShotState, support: Batch, num_steps: int) -> PyTree:
        tx = tx_fn(state.optimizer_params)
        return inner_loop(loss_fn, tx, state.params, support, num_steps)[0]

    @functools.partial(jax.jit, static_argnames=("num_steps", "metric"))
    def evaluate(
        state: FewShotState,
        episodes: Episodes,
        num_steps: int,
        metric: LossFn | None = None,
    ) -> jax.Array:
        check_episodes(episodes)
        query_score = batch_loss(apply, metric or resolve_loss(loss))
        tx = tx_fn(state.optimizer_params)

        def one(support, query):
            score = lambda params: query_score(params, query)
            return inner_loop(loss_fn, tx, state.params, support, num_steps, score=score)[1]

        return map_tasks(one, task_chunk, episodes.support, episodes.query)

    return FewShotLearner(init, update, jax.jit(adapt, static_argnames="num_steps"), evaluate)
