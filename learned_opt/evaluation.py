"""Running optimizers on held-out tasks, and hand-designed baselines with tuned learning rates."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

if TYPE_CHECKING:
    from learned_opt.optimizers.base import LearnedOptimizer
    from learned_opt.tasks.base import TaskFamily


PyTree = Any

#: Hand-designed baselines, each a function of the learning rate.
BASELINES: dict[str, Callable[[float], optax.GradientTransformation]] = {
    "adam": optax.adam,
    "sgd": optax.sgd,
    "rmsprop": optax.rmsprop,
    "nag": lambda lr: optax.sgd(lr, momentum=0.9, nesterov=True),
}

#: The default learning-rate grid: half-decades from 1e-4 to 10.
DEFAULT_GRID = tuple(float(x) for x in np.logspace(-4, 1, 11))


class Curves(NamedTuple):
    """Training curves of one optimizer on a set of tasks.

    Attributes:
        losses: training (minibatch) loss before each step, ``(num_tasks, num_steps)``.
        final: the family's ``eval_loss`` after the last step, ``(num_tasks,)``.
    """

    losses: np.ndarray
    final: np.ndarray


def task_keys(seed: int, num_tasks: int, split: str) -> jax.Array:
    """Keys of ``num_tasks`` tasks; ``split`` ("train" or "test") keeps tuning and test apart."""
    if split not in ("train", "test"):
        raise ValueError(f"split: expected 'train' or 'test', got {split!r}")
    return jax.random.split(jax.random.fold_in(jax.random.key(seed), split == "test"), num_tasks)


def _train_one(family: TaskFamily, tx: optax.GradientTransformationExtraArgs, key, num_steps):
    k_task, k_init, k_data = jax.random.split(key, 3)
    task_params = family.sample(k_task)
    params = family.init(task_params, k_init)
    loss_and_grad = jax.value_and_grad(family.loss, argnums=1)

    def body(carry, k):
        params, state = carry
        loss, grads = loss_and_grad(task_params, params, family.batch(task_params, k))
        updates, state = tx.update(grads, state, params, value=loss)
        return (optax.apply_updates(params, updates), state), loss

    (params, _), losses = jax.lax.scan(
        body, (params, tx.init(params)), jax.random.split(k_data, num_steps)
    )
    return losses, family.eval_loss(task_params, params)


def train_curves(
    family: TaskFamily,
    tx: optax.GradientTransformation,
    keys: jax.Array,
    num_steps: int,
) -> Curves:
    """Trains one model per key with ``tx`` for ``num_steps`` steps (one vmapped, jitted program).

    The loss is passed to ``tx.update`` as ``value=``; plain optax transformations ignore it.

    Example:
        >>> import optax
        >>> import learned_opt as lo
        >>> from learned_opt.evaluation import task_keys, train_curves
        >>> keys = task_keys(0, 4, "test")
        >>> curves = train_curves(lo.tasks.Quadratic(), optax.adam(0.1), keys, 50)
        >>> curves.losses.shape, bool((curves.final < curves.losses[:, 0]).all())
        ((4, 50), True)
    """
    tx = optax.with_extra_args_support(tx)
    run = jax.jit(jax.vmap(lambda k: _train_one(family, tx, k, num_steps)))
    losses, final = jax.device_get(run(keys))
    return Curves(np.asarray(losses), np.asarray(final))


@functools.lru_cache(maxsize=16)
def _learned_runner(family: TaskFamily, optimizer: LearnedOptimizer, num_steps: int):
    def run(meta_params, keys):
        tx = optimizer.as_optax(meta_params)
        return jax.vmap(lambda k: _train_one(family, tx, k, num_steps))(keys)

    return jax.jit(run)


def learned_curves(
    family: TaskFamily,
    optimizer: LearnedOptimizer,
    meta_params: PyTree,
    keys: jax.Array,
    num_steps: int,
) -> Curves:
    """Like :func:`train_curves` for a learned optimizer, with ``meta_params`` an argument.

    The compiled program is cached per ``(family, optimizer, num_steps)``, so evaluating many
    meta-parameters during meta-training compiles once.

    Example:
        >>> import jax
        >>> import learned_opt as lo
        >>> from learned_opt.evaluation import learned_curves, task_keys
        >>> opt = lo.LearnedRule()
        >>> curves = learned_curves(
        ...     lo.tasks.Quadratic(), opt, opt.init(jax.random.key(0)), task_keys(0, 3, "test"), 20)
        >>> curves.final.shape
        (3,)
    """
    losses, final = jax.device_get(_learned_runner(family, optimizer, num_steps)(meta_params, keys))
    return Curves(np.asarray(losses), np.asarray(final))


def _median_or_inf(final: np.ndarray) -> float:
    return float(np.median(np.where(np.isfinite(final), final, np.inf)))


def tune_learning_rate(
    family: TaskFamily,
    make_tx: Callable[[float], optax.GradientTransformation],
    keys: jax.Array,
    num_steps: int,
    grid: Sequence[float] = DEFAULT_GRID,
) -> tuple[float, dict[float, float]]:
    """Picks the learning rate with the lowest median final loss on (training) tasks ``keys``.

    Returns:
        ``(best_lr, {lr: median final loss})``; a diverging setting scores ``inf``.
    """

    def final_losses(lr):
        tx = optax.with_extra_args_support(make_tx(lr))
        return jax.vmap(lambda k: _train_one(family, tx, k, num_steps)[1])(keys)

    finals = np.asarray(jax.jit(jax.vmap(final_losses))(jnp.asarray(grid, jnp.float32)))
    scores = {float(lr): _median_or_inf(f) for lr, f in zip(grid, finals, strict=True)}
    best = min(scores, key=scores.get)
    return best, scores


def summarize(final: np.ndarray) -> dict[str, float]:
    """Median, 5th and 95th percentiles and the fraction of runs that stayed finite."""
    finite = np.isfinite(final)
    ok = final[finite] if finite.any() else np.array([np.inf])
    q05, median, q95 = np.percentile(ok, [5, 50, 95])
    return {
        "median": float(median),
        "q05": float(q05),
        "q95": float(q95),
        "finite": float(finite.mean()),
    }
