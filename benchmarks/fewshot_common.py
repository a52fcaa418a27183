"""The few-shot benchmarks' protocol: an equal budget, a grid chosen on validation tasks, intervals.

Every method meta-trains on the same stream of episodes (one key: the same tasks, in the same
order) for the same number of meta-iterations of the same meta-batch, so each gets the same
task visits. Each candidate of a method's grid (its inner learning rate, Reptile's meta step
too) is trained at that budget and scored on validation tasks; the candidate and the number of
adaptation steps with the best validation score are chosen, and only the chosen candidate
meets the test tasks. Validation and test tasks are drawn from their own keys, never from the
training stream.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np
import numpy.typing as npt
import scipy.stats

from learned_opt import fewshot

#: Resamples of every paired bootstrap interval (fixed seed: the intervals are reproducible).
BOOTSTRAP_RESAMPLES = 4000


def machine_line(m: dict[str, Any]) -> str:
    """One Markdown line describing :func:`_common.machine`, with the load and the backend.

    Whether a GPU was available is the section's to say (the sections rendered from the
    committed documents do not).
    """
    load = ", ".join(f"{x:.1f}" for x in m["load_average"])
    return (
        f"Machine: {m['cpu_model']}, {m['cpu_count']} cores, backend {m['backend']} "
        f"({', '.join(m['jax_devices'])}), jax {m['jax_version']}, Python {m['python']}; load "
        f"average at start {load} (the CPU is shared, so timings are noisy)."
    )


def mean_ci95(values: npt.ArrayLike, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Mean and half-width of its 95% normal interval (1.96 standard errors) along ``axis``."""
    array = np.asarray(values, np.float64)
    n = array.shape[axis]
    return array.mean(axis), 1.96 * array.std(axis, ddof=1) / np.sqrt(n)


def paired_interval(
    a: np.ndarray, b: np.ndarray, kind: str, seed: int = 0
) -> tuple[float, float, float]:
    """``mean(a) / mean(b)`` (``kind="ratio"``) or ``mean(a) - mean(b)`` (``"difference"``).

    ``a[i]`` and ``b[i]`` are two methods' scores on the same task ``i``; the 95% interval is a
    paired bootstrap over tasks (BCa, ``scipy.stats.bootstrap``, fixed seed).
    """
    if kind == "ratio":
        statistic = lambda x, y, axis: np.mean(x, axis) / np.mean(y, axis)
    elif kind == "difference":
        statistic = lambda x, y, axis: np.mean(x, axis) - np.mean(y, axis)
    else:
        raise ValueError(f"kind: expected 'ratio' or 'difference', got {kind!r}")
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    value = float(statistic(a, b, None))
    exact = np.allclose(a, value * b) if kind == "ratio" else np.allclose(a - b, value)
    if exact:  # every resample gives the same value (BCa's acceleration would divide by 0)
        return value, value, value
    result = scipy.stats.bootstrap(
        (a, b),
        statistic,
        paired=True,
        vectorized=True,
        n_resamples=BOOTSTRAP_RESAMPLES,
        random_state=np.random.default_rng(seed),
    )
    low, high = result.confidence_interval
    return value, float(low), float(high)


def train(
    learner: fewshot.FewShotLearner,
    state: fewshot.FewShotState,
    sample: Callable[[jax.Array], fewshot.Episodes],
    key: jax.Array,
    iterations: int,
    chunk: int,
    log: Callable[[str], None],
    name: str,
) -> tuple[fewshot.FewShotState, list[float], float]:
    """Meta-trains in compiled chunks; returns the state, the mean loss per chunk and seconds."""
    start, curve, done = time.perf_counter(), [], 0
    while done < iterations:
        n = min(chunk, iterations - done)
        state, losses = fewshot.fit(learner, state, sample, jax.random.fold_in(key, done), n)
        curve.append(float(losses.mean()))
        done += n
        log(f"{name}: {done}/{iterations} iterations, train loss {curve[-1]:.3f}")
    return state, curve, time.perf_counter() - start


class Candidate(NamedTuple):
    """One point of a method's grid.

    Attributes:
        hyperparameters: what the point sets, as plain values (for the tables).
        learner: the learner built with them.
        trains_with: the index of an earlier candidate whose meta-trained state this one
            reuses (pre-training: the grid only changes the fine-tuning rate), else ``None``.
    """

    hyperparameters: dict[str, Any]
    learner: fewshot.FewShotLearner
    trains_with: int | None = None


class Setting(NamedTuple):
    """Where a method is scored: its validation episodes and its test episodes."""

    validation: fewshot.Episodes
    test: fewshot.Episodes


def finite_list(values: npt.ArrayLike) -> list[float | None]:
    """``values`` as a JSON list, ``None`` where not finite (a diverged run)."""
    return [float(v) if np.isfinite(v) else None for v in np.asarray(values, np.float64)]


def tune_and_test(
    name: str,
    candidates: list[Candidate],
    init_params: Any,
    sample: Callable[[jax.Array], fewshot.Episodes],
    key: jax.Array,
    iterations: int,
    chunk: int,
    settings: dict[str, Setting],
    num_steps: int,
    metric: Callable[[jax.Array, jax.Array], jax.Array] | None,
    higher_is_better: bool,
    log: Callable[[str], None],
) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, fewshot.FewShotState]]:
    """Trains every candidate at the budget, chooses one per setting on validation, tests it.

    For each setting the chosen candidate and adaptation step are those with the best mean
    validation score over steps ``0..num_steps`` (a non-finite score counts as the worst).
    Returns the JSON record of the method and, per setting, the chosen candidate's per-task
    test scores at its chosen step (for paired comparisons: every method meets the same test
    tasks) and its meta-trained state.
    """
    worst = -np.inf if higher_is_better else np.inf
    pick = np.argmax if higher_is_better else np.argmin
    trained, grid, validation = [], [], []
    for candidate in candidates:
        if candidate.trains_with is None:
            state = candidate.learner.init(init_params)
            label = f"{name} {candidate.hyperparameters}"
            trained.append(
                train(candidate.learner, state, sample, key, iterations, chunk, log, label)
            )
        else:
            trained.append(trained[candidate.trains_with])
        state, curve, seconds = trained[-1]
        scores = {}
        for setting, episodes in settings.items():
            values = candidate.learner.evaluate(state, episodes.validation, num_steps, metric)
            mean = np.asarray(values, np.float64).mean(0)
            scores[setting] = np.where(np.isfinite(mean), mean, worst)
        validation.append(scores)
        grid.append(
            {
                "hyperparameters": candidate.hyperparameters,
                "train_seconds": seconds if candidate.trains_with is None else 0.0,
                "train_loss_per_chunk": finite_list(curve),
                "validation": {s: finite_list(v) for s, v in scores.items()},
            }
        )
    record: dict[str, Any] = {"grid": grid, "settings": {}}
    per_task: dict[str, np.ndarray] = {}
    states: dict[str, fewshot.FewShotState] = {}
    for setting, episodes in settings.items():
        best = [float(scores[setting][pick(scores[setting])]) for scores in validation]
        chosen = int(pick(best))
        step = int(pick(validation[chosen][setting]))
        state = trained[chosen][0]
        test = candidates[chosen].learner.evaluate(state, episodes.test, num_steps, metric)
        test_scores = np.asarray(test, np.float64)
        mean, ci = mean_ci95(test_scores)
        record["settings"][setting] = {
            "chosen": chosen,
            "hyperparameters": grid[chosen]["hyperparameters"],
            "chosen_step": step,
            "mean": finite_list(mean),
            "ci95": finite_list(ci),
            "peak_step": int(pick(np.where(np.isfinite(mean), mean, worst))),
        }
        per_task[setting], states[setting] = test_scores[:, step], state
        log(
            f"{name} {setting}: chose {grid[chosen]['hyperparameters']} at step {step}; "
            f"test {mean[step]:.3f} ± {ci[step]:.3f}"
        )
    return record, per_task, states
