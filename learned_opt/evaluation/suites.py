"""Problem suites: a learned optimizer's score against cached tuned-Adam references.

A suite is a tuple of :class:`Problem`. :func:`adam_references` tunes Adam's learning rate on
each problem's training-split tasks and records its median final loss on the scoring split;
:func:`score` runs a learned optimizer on the same tasks, as shipped or with its step size tuned
on the training split like Adam's, and returns the median final loss per problem and the suite's
score: the mean over problems of ``log(median / tuned Adam's median)``, each term clipped to
``±log(clip)``. Lower is better; 0 is tuned Adam on average, and Adam itself reads exactly 0.

References are plain JSON-able dicts, so a study computes them once and caches them.

Example:
    >>> import jax
    >>> import learned_opt as lo
    >>> from learned_opt import evaluation
    >>> suite = (evaluation.Problem("quadratic", lo.tasks.Quadratic(dim=4), 20),)
    >>> refs = evaluation.adam_references(suite, num_tasks=2, tune_tasks=2, grid=(0.01, 0.1))
    >>> opt = lo.LSTMOptimizer(hidden_size=4, use_loss=False)
    >>> learned = (opt, opt.init(jax.random.key(0)))
    >>> result = evaluation.score(suite, learned, refs, num_tasks=2)
    >>> sorted(result), bool(result["score"] > 0)  # an untrained LSTM is worse than Adam
    (['per_problem', 'score'], True)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import optax

from learned_opt import _checks
from learned_opt.evaluation.baselines import (
    DEFAULT_GRID,
    median_or_inf,
    run_scaled_learned,
    tune_learning_rate,
)
from learned_opt.evaluation.runs import Split, learned_curves, task_keys, train_curves
from learned_opt.optimizers.base import LearnedOptimizer
from learned_opt.tasks.base import TaskFamily

PyTree = Any


class Problem(NamedTuple):
    """One problem of a suite.

    Attributes:
        name: its identifier.
        family: the task family.
        steps: training steps per run.
        why: what makes it a test of generalisation (free text).
    """

    name: str
    family: TaskFamily
    steps: int
    why: str = ""


def _check_suite(suite: Sequence[Problem]) -> tuple[Problem, ...]:
    problems = tuple(suite)
    _checks.check(
        bool(problems) and all(isinstance(p, Problem) for p in problems),
        f"suite: expected a non-empty sequence of Problem, got {suite!r}",
    )
    names = [p.name for p in problems]
    _checks.check(len(set(names)) == len(names), f"suite: problem names repeat: {names}")
    return problems


def adam_references(
    suite: Sequence[Problem],
    *,
    seed: int = 0,
    num_tasks: int = 8,
    tune_tasks: int = 4,
    grid: Sequence[float] = DEFAULT_GRID,
    split: Split = "validation",
) -> dict[str, dict[str, float]]:
    """Tuned Adam on every problem: ``{name: {"learning_rate": lr, "final": median}}``.

    The learning rate is tuned on ``tune_tasks`` training-split tasks over ``grid``; the median
    final loss is taken over ``num_tasks`` tasks of ``split``.
    """
    out = {}
    for problem in _check_suite(suite):
        tune = task_keys(seed, tune_tasks, "train")
        best, _ = tune_learning_rate(problem.family, optax.adam, tune, problem.steps, grid=grid)
        keys = task_keys(seed, num_tasks, split)
        final = train_curves(problem.family, optax.adam(best), keys, problem.steps).final
        out[problem.name] = {"learning_rate": best, "final": median_or_inf(final)}
    return out


def log_ratio(loss: float, reference: float, clip: float = 100.0) -> float:
    """``log(loss / reference)`` clipped to ``±log(clip)``; a non-finite loss scores the clip.

    Example:
        >>> from learned_opt.evaluation import log_ratio
        >>> log_ratio(1.0, 1.0), round(log_ratio(float("nan"), 1.0), 3)
        (0.0, 4.605)
    """
    bound = math.log(clip)
    if not math.isfinite(loss) or not reference > 0:
        return bound
    return min(max(math.log(max(loss, 1e-300) / reference), -bound), bound)


def score(
    suite: Sequence[Problem],
    learned: tuple[LearnedOptimizer, PyTree] | optax.GradientTransformation,
    references: dict[str, dict[str, float]],
    *,
    seed: int = 0,
    num_tasks: int = 8,
    tune_tasks: int | None = None,
    grid: Sequence[float] = DEFAULT_GRID,
    split: Split = "validation",
    clip: float = 100.0,
) -> dict[str, Any]:
    """An optimizer's median final loss per problem and its score against ``references``.

    Args:
        suite: the problems.
        learned: a learned optimizer ``(optimizer, meta_params)``, or any optax transformation
            (run as given, e.g. a tuning-free optimizer at its defaults).
        references: :func:`adam_references` of the same suite, seed, tasks and split.
        seed, num_tasks, split: the scoring tasks, ``task_keys(seed, num_tasks, split)``.
        tune_tasks: ``None`` runs the optimizer at its built-in step size; otherwise its step
            size is tuned over ``grid`` on that many training-split tasks per problem, like
            Adam's learning rate, and recorded per problem.
        grid: the step sizes tried when tuning.
        clip: each problem's log ratio is clipped to ``±log(clip)``.

    Returns:
        A dict: ``"score"``, the mean log ratio, and ``"per_problem"``, for each problem's name
        a dict of its median ``"final"`` loss, its ``"log_ratio"`` and, when tuned, its
        ``"learning_rate"``.

    Raises:
        ValueError: for an empty suite, a problem without a reference, or ``tune_tasks`` with
            a transformation (only a learned optimizer's step size is tuned here).
    """
    problems = _check_suite(suite)
    ready = isinstance(learned, optax.GradientTransformation)
    _checks.check(
        not (ready and tune_tasks is not None),
        "tune_tasks: a ready transformation runs as given; tune a learned optimizer's step "
        "size by passing (optimizer, meta_params)",
    )
    missing = [p.name for p in problems if p.name not in references]
    _checks.check(not missing, f"references: no reference for problems {missing}")
    keys = task_keys(seed, num_tasks, split)
    per_problem: dict[str, dict[str, float]] = {}
    for problem in problems:
        entry: dict[str, float] = {}
        if ready:
            loss = median_or_inf(train_curves(problem.family, learned, keys, problem.steps).final)
        elif tune_tasks is None:
            optimizer, meta_params = learned
            final = learned_curves(problem.family, optimizer, meta_params, keys, problem.steps)
            loss = median_or_inf(final.final)
        else:
            optimizer, meta_params = learned
            tune = task_keys(seed, tune_tasks, "train")
            lrs = tuple(float(lr) for lr in grid)
            _, finals = run_scaled_learned(
                problem.family, optimizer, meta_params, lrs, tune, problem.steps
            )
            medians = [median_or_inf(f) for f in finals]
            best = lrs[min(range(len(lrs)), key=medians.__getitem__)]
            _, test = run_scaled_learned(
                problem.family, optimizer, meta_params, (best,), keys, problem.steps
            )
            loss, entry["learning_rate"] = median_or_inf(test[0]), best
        entry["final"] = loss
        entry["log_ratio"] = log_ratio(loss, references[problem.name]["final"], clip)
        per_problem[problem.name] = entry
    mean = sum(e["log_ratio"] for e in per_problem.values()) / len(per_problem)
    return {"score": mean, "per_problem": per_problem}
