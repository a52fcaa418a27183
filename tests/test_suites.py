"""Problem suites: tuned-Adam references, scores, and the control that must read 0."""

import math
from typing import Any

import jax
import numpy as np
import optax
import pytest

import learned_opt as lo
from learned_opt import evaluation

SUITE = (
    evaluation.Problem("quadratic", lo.tasks.Quadratic(dim=6), 30),
    evaluation.Problem("logistic", lo.tasks.Regression("logistic", num_features=8), 25),
)
GRID = (0.003, 0.03, 0.3)
SETTINGS: dict[str, Any] = dict(num_tasks=3, seed=1)


@pytest.fixture(scope="module")
def references():
    return evaluation.adam_references(SUITE, tune_tasks=2, grid=GRID, **SETTINGS)


def test_a_reference_is_adams_median_at_the_learning_rate_tuned_on_training_tasks(references):
    for problem in SUITE:
        tune = evaluation.task_keys(1, 2, "train")
        best, _ = evaluation.tune_learning_rate(
            problem.family, optax.adam, tune, problem.steps, grid=GRID
        )
        keys = evaluation.task_keys(1, 3, "validation")
        final = evaluation.train_curves(problem.family, optax.adam(best), keys, problem.steps)
        assert references[problem.name] == {
            "learning_rate": best,
            "final": float(np.median(final.final)),
        }


def test_tuned_adam_scores_exactly_zero(references):
    for problem in SUITE:
        lr = references[problem.name]["learning_rate"]
        result = evaluation.score((problem,), optax.adam(lr), references, **SETTINGS)
        assert result["score"] == 0.0


def test_the_untrained_optimizer_that_is_adam_scores_zero_with_its_step_size_tuned(references):
    # The harness's control: an LSTM optimizer whose learned outputs are zero is Adam, so with
    # its step size tuned like Adam's it must read 1.00x tuned Adam on every problem.
    opt = lo.LSTMOptimizer(
        hidden_size=4,
        num_layers=1,
        preprocess="omit",
        use_loss=False,
        normalized_inputs=True,
        input_decays=(0.9,),
        rms_decay=0.999,
        base_direction="adam",
        update_norm="adam",
    )
    meta_params = opt.init(jax.random.key(0))
    meta_params = {**meta_params, "out": jax.tree.map(np.zeros_like, meta_params["out"])}
    result = evaluation.score(
        SUITE, (opt, meta_params), references, tune_tasks=2, grid=GRID, **SETTINGS
    )
    for name, entry in result["per_problem"].items():
        assert entry["learning_rate"] == references[name]["learning_rate"]
        assert abs(entry["log_ratio"]) < 1e-4
    assert abs(result["score"]) < 1e-4


def test_a_diverging_optimizer_scores_the_clip(references):
    result = evaluation.score(SUITE, optax.sgd(1e6), references, clip=10.0, **SETTINGS)
    assert result["score"] == pytest.approx(math.log(10.0))
    assert math.isinf(result["per_problem"]["quadratic"]["final"])  # non-finite counts as inf
    for entry in result["per_problem"].values():
        assert entry["log_ratio"] == pytest.approx(math.log(10.0))


def test_log_ratio_clips_both_ways():
    assert evaluation.log_ratio(1e6, 1.0, clip=100.0) == pytest.approx(math.log(100.0))
    assert evaluation.log_ratio(1e-6, 1.0, clip=100.0) == pytest.approx(-math.log(100.0))
    assert evaluation.log_ratio(2.0, 1.0) == pytest.approx(math.log(2.0))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda r: evaluation.score((), optax.adam(0.1), r),
            "suite: expected a non-empty sequence of Problem, got ()",
        ),
        (
            lambda r: evaluation.score(SUITE[:1] * 2, optax.adam(0.1), r),
            "suite: problem names repeat: ['quadratic', 'quadratic']",
        ),
        (
            lambda r: evaluation.score(
                (evaluation.Problem("other", lo.tasks.Quadratic(), 5),), optax.adam(0.1), r
            ),
            "references: no reference for problems ['other']",
        ),
        (
            lambda r: evaluation.score(SUITE, optax.adam(0.1), r, tune_tasks=2),
            "tune_tasks: a ready transformation runs as given; tune a learned optimizer's step "
            "size by passing (optimizer, meta_params)",
        ),
    ],
)
def test_bad_input_is_refused_with_one_line(references, call, message):
    with pytest.raises(ValueError) as error:
        call(references)
    assert str(error.value) == message


def test_the_tuning_free_rivals_are_optax_contribs_at_their_defaults():
    assert set(evaluation.TUNING_FREE) == {
        "prodigy",
        "dadapt_adamw",
        "dog",
        "dowg",
        "cocob",
        "mechanize",
        "schedule_free_adamw",
    }
    keys = evaluation.task_keys(0, 2, "test")
    for make in evaluation.TUNING_FREE.values():
        curves = evaluation.train_curves(lo.tasks.Quadratic(dim=4), make(), keys, 10)
        assert np.isfinite(curves.losses).all()


def test_an_interval_that_excludes_1_only_by_rounding_is_a_tie():
    # The control and Adam differ by float32 rounding, which may lean one way on every task.
    a = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    result = evaluation.paired_ratio_interval(a * (1 - 1e-6), a, n_resamples=999)
    assert result.high is not None and result.high < 1.0 and result.verdict == "tie"
    result = evaluation.paired_ratio_interval(a * 0.99, a, n_resamples=999)
    assert result.verdict == "win"


def test_timing_nothing_is_refused_with_one_line():
    with pytest.raises(ValueError) as error:
        evaluation.time_interleaved({}, rounds=2)
    assert str(error.value) == "calls: expected at least one call to time, got none"
