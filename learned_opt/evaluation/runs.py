"""Training runs on held-out tasks: task keys, loss curves, traces and their summary.

Every run trains one model per task key, all keys as one vmapped, jitted program. A key fixes
the task, the initialisation and the minibatch order, so two optimizers given the same keys
train the same problems from the same start (their results are paired by task).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import jax
import numpy as np
import optax

if TYPE_CHECKING:
    from learned_opt.optimizers.base import LearnedOptimizer
    from learned_opt.tasks.base import TaskFamily


PyTree = Any

#: The three disjoint splits of task keys: ``"train"`` for tuning baselines (and meta-training),
#: ``"validation"`` for choosing a learned optimizer's checkpoint, ``"test"`` for reporting.
Split = Literal["train", "validation", "test"]
SPLITS: tuple[Split, ...] = ("train", "test", "validation")


class Curves(NamedTuple):
    """Training curves of one optimizer on a set of tasks.

    Attributes:
        losses: training (minibatch) loss before each step, ``(num_tasks, num_steps)``.
        final: the family's ``eval_loss`` after the last step, ``(num_tasks,)``.

    Example:
        >>> import optax
        >>> import learned_opt as lo
        >>> from learned_opt.evaluation import task_keys, train_curves
        >>> curves = train_curves(lo.tasks.Quadratic(), optax.sgd(0.01), task_keys(0, 2, "test"), 5)
        >>> curves.losses.shape, curves.final.shape
        ((2, 5), (2,))
    """

    losses: np.ndarray
    final: np.ndarray


def task_keys(seed: int, num_tasks: int, split: Split) -> jax.Array:
    """Keys of ``num_tasks`` tasks of one split; the three splits never share a task.

    Tune baselines on ``"train"``, choose a learned optimizer's checkpoint on
    ``"validation"`` and report on ``"test"``.

    Raises:
        ValueError: for an unknown ``split``.

    Example:
        >>> import jax
        >>> from learned_opt.evaluation import task_keys
        >>> train, test = task_keys(0, 3, "train"), task_keys(0, 3, "test")
        >>> train.shape, bool((jax.random.key_data(train) != jax.random.key_data(test)).any())
        ((3,), True)
    """
    if split not in SPLITS:
        raise ValueError(f"split: expected one of {SPLITS}, got {split!r}")
    return jax.random.split(
        jax.random.fold_in(jax.random.key(seed), SPLITS.index(split)), num_tasks
    )


#: ``record(params, grads, updates, state)`` of :func:`trace`: what to keep of each step.
Recorder = Callable[[PyTree, PyTree, PyTree, Any], PyTree]


def train_one(
    family: TaskFamily,
    tx: optax.GradientTransformationExtraArgs,
    key: jax.Array,
    num_steps: int,
    record: Recorder | None = None,
) -> tuple[Any, jax.Array]:
    """Trains one task (traceable): ``(per-step losses or (losses, recorded), final loss)``.

    ``key`` is split into the task's, the initialisation's and the minibatches' keys.
    """
    k_task, k_init, k_data = jax.random.split(key, 3)
    task_params = family.sample(k_task)
    params = family.init(task_params, k_init)
    loss_and_grad = jax.value_and_grad(family.loss, argnums=1)

    def body(carry, k):
        params, state = carry
        loss, grads = loss_and_grad(task_params, params, family.batch(task_params, k))
        updates, state = tx.update(grads, state, params, value=loss)
        out = loss if record is None else (loss, record(params, grads, updates, state))
        return (optax.apply_updates(params, updates), state), out

    (params, _), out = jax.lax.scan(
        body, (params, tx.init(params)), jax.random.split(k_data, num_steps)
    )
    return out, family.eval_loss(task_params, params)


def trace(
    family: TaskFamily,
    tx: optax.GradientTransformation,
    keys: jax.Array,
    num_steps: int,
    record: Recorder,
) -> tuple[np.ndarray, PyTree]:
    """Trains one model per key like :func:`train_curves`, keeping ``record`` of every step.

    ``record(params, grads, updates, state)`` sees each step's parameters (before the update),
    gradients, updates and the optimizer's new state, and returns a pytree of arrays; use it to
    look inside an optimizer, e.g. the gates of a Meta-LSTM (``state.forget``,
    ``state.input``) or the effective step size ``|update| / |grad|``.

    Returns:
        ``(losses, recorded)``: losses ``(num_tasks, num_steps)`` and ``record``'s tree with
        leading axes ``(num_tasks, num_steps)``.

    Example:
        >>> import jax.numpy as jnp
        >>> import learned_opt as lo
        >>> from learned_opt.evaluation import task_keys, trace
        >>> opt = lo.MetaLSTMOptimizer()
        >>> gates = lambda params, grads, updates, state: state.input
        >>> losses, rates = trace(lo.tasks.Quadratic(dim=3), opt.as_optax(opt.sgd_meta_params(0.1)),
        ...                       task_keys(0, 2, "test"), 5, gates)
        >>> losses.shape, rates.shape, bool(jnp.allclose(rates, 0.1))
        ((2, 5), (2, 5, 3), True)
    """
    tx = optax.with_extra_args_support(tx)
    run = jax.jit(jax.vmap(lambda k: train_one(family, tx, k, num_steps, record)[0]))
    losses, recorded = jax.device_get(run(keys))
    return np.asarray(losses), jax.tree.map(np.asarray, recorded)


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
    run = jax.jit(jax.vmap(lambda k: train_one(family, tx, k, num_steps)))
    losses, final = jax.device_get(run(keys))
    return Curves(np.asarray(losses), np.asarray(final))


@functools.lru_cache(maxsize=16)
def _learned_runner(family: TaskFamily, optimizer: LearnedOptimizer, num_steps: int):
    def run(meta_params, keys):
        tx = optimizer.as_optax(meta_params)
        return jax.vmap(lambda k: train_one(family, tx, k, num_steps))(keys)

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


def as_inf(values: Any) -> np.ndarray:
    """``values`` as float64 with every non-finite entry (NaN, ±inf) replaced by ``+inf``.

    A diverged run counts as the worst possible result, never as a missing one.

    Example:
        >>> import numpy as np
        >>> from learned_opt.evaluation import as_inf
        >>> as_inf([1.0, np.nan, -np.inf]).tolist()
        [1.0, inf, inf]
    """
    values = np.asarray(values, np.float64)
    return np.where(np.isfinite(values), values, np.inf)


def percentiles(values: Any, q: Any) -> np.ndarray:
    """Linear-interpolation percentiles ``q`` of ``values`` over their first axis.

    Non-finite values count as +inf: equals ``np.percentile(values, q, axis=0)`` on finite
    data, and a percentile that falls between a finite value and +inf (or on +inf) is +inf.

    Returns:
        Shape ``np.shape(q) + values.shape[1:]``.

    Raises:
        ValueError: for empty ``values``.

    Example:
        >>> import numpy as np
        >>> from learned_opt.evaluation import percentiles
        >>> percentiles([1.0, 2.0, 3.0, np.nan], [0, 50, 100]).tolist()
        [1.0, 2.5, inf]
    """
    ordered = np.sort(as_inf(values), axis=0)
    if not ordered.size:
        raise ValueError("values: expected at least one value, got none")
    position = np.asarray(q, np.float64) / 100 * (ordered.shape[0] - 1)
    lo, hi = np.floor(position).astype(int), np.ceil(position).astype(int)
    below, above = ordered[lo], ordered[hi]
    frac = (position - lo).reshape(position.shape + (1,) * (ordered.ndim - 1))
    with np.errstate(invalid="ignore"):
        between = below + frac * (above - below)
    return np.where(below == above, below, between)


def summarize(final: np.ndarray) -> dict[str, float]:
    """Median, 5th and 95th percentiles and the fraction of runs that stayed finite.

    A non-finite run counts as +inf in the median and the percentiles: it is the worst
    result, never dropped.

    Example:
        >>> import numpy as np
        >>> from learned_opt.evaluation import summarize
        >>> stats = summarize(np.array([1.0, 2.0, 3.0, np.inf]))
        >>> stats["median"], stats["q95"], stats["finite"]
        (2.5, inf, 0.75)
    """
    q05, median, q95 = percentiles(final, [5, 50, 95])
    return {
        "median": float(median),
        "q05": float(q05),
        "q95": float(q95),
        "finite": float(np.isfinite(np.asarray(final)).mean()),
    }
