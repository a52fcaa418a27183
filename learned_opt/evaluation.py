"""Running optimizers on held-out tasks, and hand-designed baselines with tuned learning rates.

The protocol of the benchmarks: tune each baseline on training tasks
(``task_keys(seed, n, "train")``), then run every optimizer on the same held-out tasks
(``task_keys(seed, n, "test")``) and compare the final losses.

Example:
    >>> import optax
    >>> import learned_opt as lo
    >>> from learned_opt import evaluation
    >>> family = lo.tasks.Quadratic()
    >>> tuned = evaluation.tune_baseline(family, "adam", evaluation.task_keys(0, 4, "train"), 20)
    >>> test = evaluation.task_keys(0, 8, "test")
    >>> adam = evaluation.train_curves(family, tuned.transformation(), test, 20)
    >>> default = evaluation.train_curves(family, optax.adam(1e-3), test, 20)
    >>> median = lambda curves: evaluation.summarize(curves.final)["median"]
    >>> bool(median(adam) < median(default))
    True
"""

from __future__ import annotations

import functools
import itertools
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

#: Hand-designed baselines, each a function of the learning rate (and, for the momentum
#: methods, of the momentum).
BASELINES: dict[str, Callable[..., optax.GradientTransformation]] = {
    "adam": optax.adam,
    "sgd": optax.sgd,
    "rmsprop": optax.rmsprop,
    "momentum": lambda lr, momentum=0.9: optax.sgd(lr, momentum=momentum),
    "nag": lambda lr, momentum=0.9: optax.sgd(lr, momentum=momentum, nesterov=True),
}

#: Hyperparameters tuned besides the learning rate, with their grids.
EXTRA_GRIDS: dict[str, dict[str, tuple[float, ...]]] = {
    "momentum": {"momentum": (0.5, 0.9, 0.99)},
    "nag": {"momentum": (0.5, 0.9, 0.99)},
}

#: The default learning-rate grid: half-decades from 1e-4 to 10.
DEFAULT_GRID = tuple(float(x) for x in np.logspace(-4, 1, 11))


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


def task_keys(seed: int, num_tasks: int, split: str) -> jax.Array:
    """Keys of ``num_tasks`` tasks; ``split`` ("train" or "test") keeps tuning and test apart.

    Example:
        >>> import jax
        >>> from learned_opt.evaluation import task_keys
        >>> train, test = task_keys(0, 3, "train"), task_keys(0, 3, "test")
        >>> train.shape, bool((jax.random.key_data(train) != jax.random.key_data(test)).any())
        ((3,), True)
    """
    if split not in ("train", "test"):
        raise ValueError(f"split: expected 'train' or 'test', got {split!r}")
    return jax.random.split(jax.random.fold_in(jax.random.key(seed), split == "test"), num_tasks)


#: ``record(params, grads, updates, state)`` of :func:`trace`: what to keep of each step.
Recorder = Callable[[PyTree, PyTree, PyTree, Any], PyTree]


def _train_one(
    family: TaskFamily,
    tx: optax.GradientTransformationExtraArgs,
    key,
    num_steps,
    record: Recorder | None = None,
):
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
    run = jax.jit(jax.vmap(lambda k: _train_one(family, tx, k, num_steps, record)[0]))
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

    The whole grid runs as one vmapped, jitted program. :func:`tune_baseline` also tunes the
    momentum of the momentum methods.

    Returns:
        ``(best_lr, {lr: median final loss})``; a diverging setting scores ``inf``.

    Example:
        >>> import optax
        >>> import learned_opt as lo
        >>> from learned_opt.evaluation import task_keys, tune_learning_rate
        >>> family, keys = lo.tasks.Quadratic(), task_keys(0, 4, "train")
        >>> best, scores = tune_learning_rate(family, optax.sgd, keys, 20, grid=(1e-3, 1e-2, 1e3))
        >>> best, scores[1e3]
        (0.01, inf)
    """

    rows = [(float(lr),) for lr in grid]
    scores = {row[0]: score for row, score in _grid_scores(family, make_tx, rows, keys, num_steps)}
    best = min(scores, key=scores.get)
    return best, scores


def _grid_scores(family, make_tx, rows, keys, num_steps):
    """``(row, median final loss)`` for every hyperparameter row ``(lr, *extras)``.

    All rows and tasks run as one vmapped, jitted program (the hyperparameters are traced).
    """

    def final_losses(row):
        tx = optax.with_extra_args_support(make_tx(*row))
        return jax.vmap(lambda k: _train_one(family, tx, k, num_steps)[1])(keys)

    values = jnp.asarray(rows, jnp.float32)
    finals = np.asarray(jax.jit(jax.vmap(lambda r: final_losses(tuple(r))))(values))
    return [(row, _median_or_inf(f)) for row, f in zip(rows, finals, strict=True)]


class TunedBaseline(NamedTuple):
    """A hand-designed baseline with the hyperparameters chosen by :func:`tune_baseline`.

    Attributes:
        name: a key of :data:`BASELINES`.
        hyperparams: ``{"lr": ..., **extras}``, the setting with the lowest median final loss.
        scores: median final loss of every setting tried, keyed by ``(lr, *extras)``.
        at_edge: whether the best learning rate is the smallest or largest of the grid (then
            the grid may be too narrow).

    Example:
        >>> from learned_opt.evaluation import TunedBaseline
        >>> tuned = TunedBaseline("nag", {"lr": 0.1, "momentum": 0.9}, {(0.1, 0.9): 0.5}, False)
        >>> type(tuned.transformation()).__name__
        'GradientTransformationExtraArgs'
    """

    name: str
    hyperparams: dict[str, float]
    scores: dict[tuple[float, ...], float]
    at_edge: bool

    def transformation(self) -> optax.GradientTransformation:
        """The baseline at its tuned hyperparameters."""
        extras = {k: v for k, v in self.hyperparams.items() if k != "lr"}
        return BASELINES[self.name](self.hyperparams["lr"], **extras)


def tune_baseline(
    family: TaskFamily,
    name: str,
    keys: jax.Array,
    num_steps: int,
    grid: Sequence[float] = DEFAULT_GRID,
) -> TunedBaseline:
    """Tunes a baseline's learning rate over ``grid`` (and its :data:`EXTRA_GRIDS`) on ``keys``.

    ``keys`` should be training tasks (``task_keys(seed, n, "train")``), never the test tasks
    the baseline is then compared on.

    Args:
        family: the task family.
        name: a key of :data:`BASELINES`, e.g. ``"nag"`` (tunes learning rate and momentum).
        keys: task keys to tune on.
        num_steps: training steps per task; the score is the median final ``eval_loss``.
        grid: learning rates to try.

    Raises:
        ValueError: for an unknown ``name``.

    Example:
        >>> import learned_opt as lo
        >>> from learned_opt.evaluation import task_keys, tune_baseline
        >>> tuned = tune_baseline(lo.tasks.Quadratic(), "nag", task_keys(0, 4, "train"), 20)
        >>> sorted(tuned.hyperparams), len(tuned.scores)
        (['lr', 'momentum'], 33)
    """
    if name not in BASELINES:
        raise ValueError(f"name: unknown baseline {name!r}; known: {sorted(BASELINES)}")
    extras = EXTRA_GRIDS.get(name, {})

    def make_tx(lr, *values):
        return BASELINES[name](lr, **dict(zip(extras, values, strict=True)))

    rows = list(itertools.product((float(lr) for lr in grid), *extras.values()))
    scores = dict(_grid_scores(family, make_tx, rows, keys, num_steps))
    best = min(scores, key=scores.get)
    hyperparams = dict(zip(("lr", *extras), best, strict=True))
    at_edge = best[0] in (min(grid), max(grid))
    return TunedBaseline(name, hyperparams, scores, at_edge)


def summarize(final: np.ndarray) -> dict[str, float]:
    """Median, 5th and 95th percentiles and the fraction of runs that stayed finite.

    Percentiles are over the finite values only.

    Example:
        >>> import numpy as np
        >>> from learned_opt.evaluation import summarize
        >>> stats = summarize(np.array([1.0, 2.0, 3.0, np.inf]))
        >>> stats["median"], stats["finite"]
        (2.0, 0.75)
    """
    finite = np.isfinite(final)
    ok = final[finite] if finite.any() else np.array([np.inf])
    q05, median, q95 = np.percentile(ok, [5, 50, 95])
    return {
        "median": float(median),
        "q05": float(q05),
        "q95": float(q95),
        "finite": float(finite.mean()),
    }
