"""Inner training, unrolled: how one truncation of a batch of training runs proceeds.

A meta-batch holds ``num_tasks`` independent training runs (the task axis is a ``vmap`` axis
and, across devices, a sharded axis). Each run is an :class:`InnerState`. A *segment* advances
every run by ``unroll_length`` optimizer steps with ``lax.scan``; between segments the state is
carried without gradient, and runs that reached their horizon (or went non-finite) are reset
to a freshly sampled task. Initial step counters are spread over the horizon, so every
meta-batch covers every phase of training; with a horizon range, each run also draws its own
horizon whenever it starts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, NamedTuple, get_args

import jax
import jax.numpy as jnp

from learned_opt.optimizers.base import LearnedOptimizer

if TYPE_CHECKING:
    from learned_opt.tasks.base import TaskFamily

PyTree = Any

#: The meta-loss of a segment: the ``"sum"`` of the losses after each update (the L2L
#: objective) or their ``"log_mean"``, the mean log-loss (scale-free).
MetaLoss = Literal["sum", "log_mean"]
META_LOSSES: tuple[MetaLoss, ...] = get_args(MetaLoss)


#: How long an inner run trains before its task is reset: a fixed number of steps, or a range
#: ``(low, high)`` from which every run draws its own horizon when it starts (log-uniformly,
#: a multiple of the unroll length; see :func:`draw_horizon`).
Horizon = int | tuple[int, int]


class InnerState(NamedTuple):
    """One inner training run (unbatched; a meta-batch stacks these along a leading task axis).

    Attributes:
        task_params: the task's arrays, from ``family.sample``.
        params: the task model's current parameters.
        opt_state: the learned optimizer's state for ``params``.
        step: optimizer steps taken since the last reset, int32.
        horizon: steps after which the run is reset, int32 (drawn when it started).
        key: the run's PRNG key (batches and the next reset draw from it).
    """

    task_params: PyTree
    params: PyTree
    opt_state: Any
    step: jax.Array
    horizon: jax.Array
    key: jax.Array


def draw_horizon(key: jax.Array, horizon: Horizon, unroll_length: int) -> jax.Array:
    """The horizon of a fresh run, an int32 scalar.

    A fixed ``horizon`` is returned as is. For a range ``(low, high)`` (multiples of
    ``unroll_length``) the number of segments is drawn log-uniformly from
    ``[low, high] / unroll_length`` (the floor of ``exp(U[log a, log(b + 1)])``), so short and
    long runs are equally likely per factor of length and truncations see every phase of
    training of runs of many lengths.

    Example:
        >>> import jax
        >>> from learned_opt.meta.unroll import draw_horizon
        >>> keys = jax.random.split(jax.random.key(0), 1000)
        >>> h = jax.vmap(lambda k: draw_horizon(k, (10, 1000), 10))(keys)
        >>> int(h.min()) >= 10, int(h.max()) <= 1000, bool((h % 10 == 0).all())
        (True, True, True)
        >>> 0.4 < float((h <= 100).mean()) < 0.6  # log-uniform: half below sqrt(10 * 1000)
        True
    """
    if isinstance(horizon, int):
        return jnp.asarray(horizon, jnp.int32)
    low, high = (h // unroll_length for h in horizon)
    log_segments = jax.random.uniform(
        key, (), jnp.float32, jnp.log(jnp.float32(low)), jnp.log(jnp.float32(high + 1))
    )
    segments = jnp.clip(jnp.floor(jnp.exp(log_segments)), low, high).astype(jnp.int32)
    return segments * unroll_length


def new_run(
    optimizer: LearnedOptimizer,
    family: TaskFamily,
    meta_params: PyTree,
    key: jax.Array,
    horizon: Horizon = 100,
    unroll_length: int = 1,
) -> InnerState:
    """Samples a task and starts a fresh training run on it, with its horizon."""
    k_task, k_init, k_run = jax.random.split(key, 3)
    task_params = family.sample(k_task)
    params = family.init(task_params, k_init)
    opt_state = optimizer.init_state(meta_params, params)
    run_horizon = draw_horizon(jax.random.fold_in(key, 2), horizon, unroll_length)
    return InnerState(task_params, params, opt_state, jnp.zeros((), jnp.int32), run_horizon, k_run)


def init_runs(
    optimizer: LearnedOptimizer,
    family: TaskFamily,
    meta_params: PyTree,
    key: jax.Array,
    num_tasks: int,
    horizon: Horizon,
    unroll_length: int,
) -> InnerState:
    """Starts ``num_tasks`` runs with step counters spread over their horizons' segments.

    Run ``i`` starts at step ``(i mod S_i) * unroll_length`` of its ``S_i`` segments, so the
    meta-batch mixes early and late phases of training from the first meta-step on.
    """
    runs = jax.vmap(lambda k: new_run(optimizer, family, meta_params, k, horizon, unroll_length))(
        jax.random.split(key, num_tasks)
    )
    segments = runs.horizon // unroll_length
    offsets = (jnp.arange(num_tasks, dtype=jnp.int32) % segments) * unroll_length
    return runs._replace(step=offsets)


def is_finite(tree: PyTree) -> jax.Array:
    """True where every leaf of ``tree`` is finite (a scalar bool)."""
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


def finished(run: InnerState) -> jax.Array:
    """Whether a run reached its horizon or holds non-finite parameters or optimizer state."""
    return (run.step >= run.horizon) | ~is_finite((run.params, run.opt_state))


def reset(
    optimizer: LearnedOptimizer,
    family: TaskFamily,
    meta_params: PyTree,
    run: InnerState,
    done: jax.Array,
    horizon: Horizon = 100,
    unroll_length: int = 1,
) -> InnerState:
    """Replaces a (single, unbatched) run by a fresh task, with a fresh horizon, where ``done``.

    The fresh run's key is derived from the old one, so two runs with equal keys (the antithetic
    particles of PES) reset to the same task and horizon.
    """
    fresh = new_run(
        optimizer, family, meta_params, jax.random.fold_in(run.key, 1), horizon, unroll_length
    )
    return jax.tree.map(lambda a, b: jnp.where(done, a, b), fresh, run)


def unroll(
    optimizer: LearnedOptimizer,
    family: TaskFamily,
    meta_params: PyTree,
    run: InnerState,
    unroll_length: int,
    *,
    second_order: bool = False,
    meta_loss: MetaLoss = "sum",
) -> tuple[jax.Array, InnerState, jax.Array]:
    """Advances one run by ``unroll_length`` steps; differentiable in ``meta_params``.

    The meta-loss counts the losses *after* each update, ``f(theta_1) ... f(theta_T)``, so the
    last update of the segment gets a meta-gradient too (the L2L objective with unit weights).
    ``f(theta_t)`` for ``t < T`` is the loss the next step computes anyway; ``f(theta_T)`` is
    evaluated on the batch the next segment will start with.

    Args:
        optimizer: the learned optimizer.
        family: the task family the run's task comes from.
        meta_params: the optimizer's weights.
        run: one (unbatched) inner run.
        unroll_length: steps ``T`` in this segment.
        second_order: keep second derivatives through the gradient (and loss) inputs; the L2L
            simplification (``False``) treats them as constants.
        meta_loss: ``"sum"`` of losses (L2L) or ``"log_mean"``, the mean log-loss.

    Returns:
        ``(meta_loss, run, losses)`` with the ``T`` training losses ``f(theta_0..T-1)``.
    """
    if meta_loss not in META_LOSSES:
        raise ValueError(f"meta_loss: expected one of {META_LOSSES}, got {meta_loss!r}")
    loss_and_grad = jax.value_and_grad(family.loss, argnums=1)

    def batch_key(key):
        key, k_batch = jax.random.split(key)
        return key, family.batch(run.task_params, k_batch)

    def body(carry, _):
        params, opt_state, key = carry
        key, batch = batch_key(key)
        loss, grads = loss_and_grad(run.task_params, params, batch)
        inputs = (grads, loss) if second_order else jax.lax.stop_gradient((grads, loss))
        updates, opt_state = optimizer.step(meta_params, opt_state, inputs[0], params, inputs[1])
        params = jax.tree.map(lambda p, u: p + u.astype(p.dtype), params, updates)
        return (params, opt_state, key), loss

    (params, opt_state, key), losses = jax.lax.scan(
        body, (run.params, run.opt_state, run.key), length=unroll_length
    )
    _, final_batch = batch_key(key)
    final = family.loss(run.task_params, params, final_batch)
    after = jnp.concatenate([losses[1:], final[None]])
    if meta_loss == "sum":
        value = jnp.sum(after)
    else:
        value = jnp.mean(jnp.log(jnp.maximum(after, 1e-30)))
    new_run_state = run._replace(
        params=params, opt_state=opt_state, step=run.step + unroll_length, key=key
    )
    return value, new_run_state, losses
