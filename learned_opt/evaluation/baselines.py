"""Hand-designed baselines and the tuning of step sizes on training tasks.

Each baseline is tuned per problem: its learning rate over a grid (half-decades 1e-4 … 10 by
default) and, where it has one, its momentum over {0.5, 0.9, 0.99}; the setting with the lowest
median final loss on the tuning tasks wins. A learned optimizer's step size is tuned the same
way: its direction ``opt.scale_by(meta_params)`` followed by
``optax.scale_by_learning_rate(lr)``, on the same grid and tasks.
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

from learned_opt.evaluation.runs import percentiles, train_one

if TYPE_CHECKING:
    from learned_opt.optimizers.base import LearnedOptimizer
    from learned_opt.tasks.base import TaskFamily

PyTree = Any

#: AdamW's weight decay in the ``"adamw_cosine"`` baseline: fixed (optax's default), not tuned.
ADAMW_WEIGHT_DECAY = 1e-4


def _adamw_cosine(learning_rate, num_steps, weight_decay=ADAMW_WEIGHT_DECAY):
    schedule = optax.cosine_decay_schedule(learning_rate, max(1, num_steps))
    return optax.adamw(schedule, weight_decay=weight_decay)


#: Hand-designed baselines: ``BASELINES[name](learning_rate, num_steps, **extras)``, ``extras``
#: from :data:`EXTRA_GRIDS`. ``"adamw_cosine"`` is AdamW with its learning rate decayed to 0 by
#: a cosine over the ``num_steps`` of the run, weight decay :data:`ADAMW_WEIGHT_DECAY`.
BASELINES: dict[str, Callable[..., optax.GradientTransformation]] = {
    "adam": lambda lr, num_steps: optax.adam(lr),
    "adamw_cosine": _adamw_cosine,
    "sgd": lambda lr, num_steps: optax.sgd(lr),
    "momentum": lambda lr, num_steps, momentum=0.9: optax.sgd(lr, momentum=momentum),
    "nag": lambda lr, num_steps, momentum=0.9: optax.sgd(lr, momentum=momentum, nesterov=True),
    "rmsprop": lambda lr, num_steps: optax.rmsprop(lr),
}

#: The tuning-free optimizers of ``optax.contrib`` at their defaults: what a user who does not want
#: to tune would pick, so the rivals of an untuned learned optimizer. ``schedule_free_adamw`` is
#: scored at its training iterate like every other optimizer (not at its averaged parameters).
TUNING_FREE: dict[str, Callable[[], optax.GradientTransformation]] = {
    "prodigy": lambda: optax.contrib.prodigy(),
    "dadapt_adamw": lambda: optax.contrib.dadapt_adamw(),
    "dog": lambda: optax.contrib.dog(),
    "dowg": lambda: optax.contrib.dowg(),
    "cocob": lambda: optax.contrib.cocob(),
    "mechanize": lambda: optax.contrib.mechanize(optax.adam(1.0)),
    "schedule_free_adamw": lambda: optax.contrib.schedule_free_adamw(),
}

#: Hyperparameters tuned besides the learning rate, with their grids.
EXTRA_GRIDS: dict[str, dict[str, tuple[float, ...]]] = {
    "momentum": {"momentum": (0.5, 0.9, 0.99)},
    "nag": {"momentum": (0.5, 0.9, 0.99)},
}

#: The default learning-rate grid: half-decades from 1e-4 to 10.
DEFAULT_GRID = tuple(float(x) for x in np.logspace(-4, 1, 11))


def median_or_inf(final: Any) -> float:
    """The median with every non-finite run counted as +inf."""
    return float(percentiles(final, 50))


def _check_grid(grid: Sequence[float]) -> tuple[float, ...]:
    values = tuple(float(lr) for lr in grid)
    if not values or not all(np.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"grid: expected positive finite learning rates, got {tuple(grid)}")
    return values


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
    rows = [(lr,) for lr in _check_grid(grid)]
    scores = {row[0]: score for row, score in _grid_scores(family, make_tx, rows, keys, num_steps)}
    best = min(scores, key=scores.__getitem__)
    return best, scores


def _grid_scores(family, make_tx, rows, keys, num_steps):
    """``(row, median final loss)`` for every hyperparameter row ``(lr, *extras)``.

    All rows and tasks run as one vmapped, jitted program (the hyperparameters are traced).
    """

    def final_losses(row):
        tx = optax.with_extra_args_support(make_tx(*row))
        return jax.vmap(lambda k: train_one(family, tx, k, num_steps)[1])(keys)

    values = jnp.asarray(rows, jnp.float32)
    finals = np.asarray(jax.jit(jax.vmap(lambda r: final_losses(tuple(r))))(values))
    return [(row, median_or_inf(f)) for row, f in zip(rows, finals, strict=True)]


class TunedBaseline(NamedTuple):
    """A hand-designed baseline with the hyperparameters chosen by :func:`tune_baseline`.

    Attributes:
        name: a key of :data:`BASELINES`.
        hyperparams: ``{"lr": ..., **extras}``, the setting with the lowest median final loss.
        scores: median final loss of every setting tried, keyed by ``(lr, *extras)``.
        at_edge: whether the best learning rate is the smallest or largest of the grid (then
            the grid may be too narrow).
        num_steps: the length of the runs it was tuned for (its schedule, if any, spans them).

    Example:
        >>> from learned_opt.evaluation import TunedBaseline
        >>> hyperparams = {"lr": 0.1, "momentum": 0.9}
        >>> tuned = TunedBaseline("nag", hyperparams, {(0.1, 0.9): 0.5}, False, 100)
        >>> type(tuned.transformation()).__name__
        'GradientTransformationExtraArgs'
    """

    name: str
    hyperparams: dict[str, float]
    scores: dict[tuple[float, ...], float]
    at_edge: bool
    num_steps: int

    def transformation(self) -> optax.GradientTransformation:
        """The baseline at its tuned hyperparameters."""
        extras = {k: v for k, v in self.hyperparams.items() if k != "lr"}
        return BASELINES[self.name](self.hyperparams["lr"], self.num_steps, **extras)


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
        ValueError: for an unknown ``name`` or an empty or non-positive ``grid``.

    Example:
        >>> import learned_opt as lo
        >>> from learned_opt.evaluation import task_keys, tune_baseline
        >>> tuned = tune_baseline(lo.tasks.Quadratic(), "nag", task_keys(0, 4, "train"), 20)
        >>> sorted(tuned.hyperparams), len(tuned.scores)
        (['lr', 'momentum'], 33)
    """
    if name not in BASELINES:
        raise ValueError(f"name: unknown baseline {name!r}; known: {sorted(BASELINES)}")
    lrs = _check_grid(grid)
    extras = EXTRA_GRIDS.get(name, {})

    def make_tx(lr, *values):
        return BASELINES[name](lr, num_steps, **dict(zip(extras, values, strict=True)))

    rows = list(itertools.product(lrs, *extras.values()))
    scores = dict(_grid_scores(family, make_tx, rows, keys, num_steps))
    best = min(scores, key=scores.__getitem__)
    hyperparams = dict(zip(("lr", *extras), best, strict=True))
    return TunedBaseline(name, hyperparams, scores, best[0] in (min(lrs), max(lrs)), num_steps)


def scaled_learned(
    optimizer: LearnedOptimizer, meta_params: PyTree, learning_rate: Any
) -> optax.GradientTransformationExtraArgs:
    """A learned optimizer's direction at step size ``learning_rate`` (may be traced).

    ``optax.chain(optimizer.scale_by(meta_params), optax.scale_by_learning_rate(learning_rate))``;
    at ``optimizer.learning_rate(meta_params)`` it equals ``optimizer.as_optax(meta_params)``.
    """
    return optax.chain(optimizer.scale_by(meta_params), optax.scale_by_learning_rate(learning_rate))


@functools.lru_cache(maxsize=16)
def _scaled_runner(family: TaskFamily, optimizer: LearnedOptimizer, num_steps: int):
    """``run(meta_params, lrs, keys) -> (losses (L, K, T), finals (L, K))``, one program."""

    def one(meta_params, lr, keys):
        tx = scaled_learned(optimizer, meta_params, lr)
        return jax.vmap(lambda k: train_one(family, tx, k, num_steps))(keys)

    return jax.jit(jax.vmap(one, in_axes=(None, 0, None)))


def run_scaled_learned(
    family: TaskFamily,
    optimizer: LearnedOptimizer,
    meta_params: PyTree,
    learning_rates: Sequence[float],
    keys: jax.Array,
    num_steps: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Trains every key at every step size of a learned optimizer, as one program.

    Returns:
        ``(losses, final)``: ``(len(learning_rates), num_tasks, num_steps)`` and
        ``(len(learning_rates), num_tasks)``.
    """
    lrs = jnp.asarray(learning_rates, jnp.float32)
    losses, final = jax.device_get(
        _scaled_runner(family, optimizer, num_steps)(meta_params, lrs, keys)
    )
    return np.asarray(losses), np.asarray(final)


class TunedStepSize(NamedTuple):
    """A learned optimizer's step size chosen by :func:`tune_step_size`.

    Attributes:
        learning_rate: the best step size of the grid.
        builtin: the optimizer's own step size, ``optimizer.learning_rate(meta_params)``.
        scores: median final loss on the tuning tasks per step size.
        at_edge: whether the best step size is the smallest or largest of the grid.
    """

    learning_rate: float
    builtin: float
    scores: dict[float, float]
    at_edge: bool


def tune_step_size(
    family: TaskFamily,
    optimizer: LearnedOptimizer,
    meta_params: PyTree,
    keys: jax.Array,
    num_steps: int,
    grid: Sequence[float] = DEFAULT_GRID,
) -> TunedStepSize:
    """Tunes a learned optimizer's step size on ``keys`` like Adam's learning rate.

    The optimizer's direction ``optimizer.scale_by(meta_params)`` is followed by
    ``optax.scale_by_learning_rate(lr)`` for every ``lr`` of ``grid`` (one vmapped program,
    ``lr`` traced); the lowest median final loss wins.

    Raises:
        ValueError: for an empty or non-positive ``grid``.
    """
    lrs = _check_grid(grid)
    _, final = run_scaled_learned(family, optimizer, meta_params, lrs, keys, num_steps)
    scores = {lr: median_or_inf(f) for lr, f in zip(lrs, final, strict=True)}
    best = min(scores, key=scores.__getitem__)
    builtin = float(optimizer.learning_rate(meta_params))
    return TunedStepSize(best, builtin, scores, best in (min(lrs), max(lrs)))
