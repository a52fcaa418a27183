"""The generalisation benchmark: its problems lie outside the training distribution, its
summary is counted from the data, and a re-run reuses the cached baselines."""

import json
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from learned_opt import evaluation
from learned_opt.tasks import (
    MLP,
    Autoencoder,
    CharTransformer,
    ConvNet,
    RandomTensorScaling,
    Regression,
    Rosenbrock,
    ScaledLoss,
    ScaledQuadratic,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import generalization


def test_smoothed_curve_and_steps_to_target():
    curve = [4.0, 3.0, 2.0, 1.0, 0.0]
    np.testing.assert_allclose(generalization.smoothed(curve, 2), [4, 3.5, 2.5, 1.5, 0.5])
    np.testing.assert_allclose(generalization.smoothed(curve, 1), curve)
    assert generalization.steps_to_target(curve, 2.5, 2) == 2  # after 2 steps
    assert generalization.steps_to_target(curve, 4.0, 1) == 0
    assert generalization.steps_to_target(curve, -1.0, 2) is None
    # A non-finite loss keeps the window above any target until it leaves the window.
    assert generalization.steps_to_target([1.0, float("nan"), 0.0, 0.0], 0.5, 2) == 3


def _initial_loss(family):
    @jax.jit
    def loss(key):
        task_params = family.sample(key)
        return family.eval_loss(task_params, family.init(task_params, key))

    return float(np.median([loss(k) for k in jax.random.split(jax.random.key(0), 3)]))


def _outside(problem):
    """Checks the problem against the training distribution's stated bounds."""
    family = problem.family
    if problem.steps > 2000 or getattr(family, "dataset", "digits") != "digits":
        return True
    if isinstance(family, MLP):
        return len(family.hidden_sizes) > 4 or max(family.hidden_sizes) > 256
    if isinstance(family, ConvNet):
        return len(family.channels) > 2 or max(family.channels) > 16
    if isinstance(family, Autoencoder):
        return not 8 <= family.bottleneck <= 32
    if isinstance(family, ScaledQuadratic):
        return family.dim > 100 or family.log10_condition > 4
    if isinstance(family, RandomTensorScaling):
        return family.max_log_scale > 3
    if isinstance(family, Regression | ScaledLoss):
        return not 1 / 20 <= _initial_loss(family) <= 20
    return isinstance(family, CharTransformer | Rosenbrock)


def test_problems_lie_outside_the_training_distribution():
    problems = generalization.problems()
    assert len(problems) >= 12 and len({p.name for p in problems}) == len(problems)
    assert min(p.steps for p in problems) == 100 and max(p.steps for p in problems) == 5000
    assert sum(p.time_to_target for p in problems) == 3
    kinds = {type(p.family) for p in problems}
    assert {MLP, ConvNet, CharTransformer, Autoencoder, ScaledQuadratic, ScaledLoss} <= kinds
    for problem in problems:
        assert problem.why and _outside(problem), problem.name
    losses = {
        p.name: _initial_loss(p.family)
        for p in problems
        if isinstance(p.family, Regression | ScaledLoss)
    }
    assert min(losses.values()) < 2e-3 and max(losses.values()) > 5e3, losses


def _run(kind, final, step_seconds=1.0, hyperparams=None):
    final = tuple(float(v) for v in final)
    q05, median, q95 = evaluation.percentiles(np.asarray(final), [5, 50, 95])
    nonfinite = sum(1 for v in final if not np.isfinite(v))
    hyper = hyperparams or {"lr": 1e-3}
    return evaluation.Run(kind, final, median, q05, q95, nonfinite, hyper, False, step_seconds)


def _comparison(runs, ratios):
    return evaluation.Comparison(
        family={"name": "quadratic"},
        num_steps=10,
        num_tasks=5,
        num_tune_tasks=3,
        grid=(1e-3, 1e-2),
        extra_grids={"nag": {"momentum": (0.9,)}},
        adamw_weight_decay=1e-4,
        confidence_level=0.95,
        runs=runs,
        ratios=tuple(evaluation.Ratio(*r) for r in ratios),
        best_baseline="adam",
    ).to_dict()


def _entry(name, ratio, verdict, default_verdict, nonfinite=0):
    adam = _run("baseline", [1.0] * 5)
    learned_final = [ratio] * (5 - nonfinite) + [np.inf] * nonfinite
    learned = {
        "opt": _run("learned", learned_final, step_seconds=3.0),
        "adam": adam,
        evaluation.ADAM_DEFAULT: _run("default", [2.0] * 5),
    }
    ratios = [
        ("opt", "adam", ratio, ratio * 0.9, ratio * 1.1, verdict),
        ("opt", evaluation.ADAM_DEFAULT, ratio / 2, 0.1, 0.9, default_verdict),
    ]
    baselines = {b: _run("baseline", [1.5] * 5) for b in evaluation.DEFAULT_BASELINES}
    baselines |= {"adam": adam, evaluation.ADAM_DEFAULT: learned[evaluation.ADAM_DEFAULT]}
    return {
        "name": name,
        "label": name,
        "why": "because",
        "steps": 10,
        "params": 3,
        "baselines": _comparison(baselines, []),
        "baselines_seconds": 60.0,
        "learned": {"opt": _comparison(learned, ratios)},
        "learned_seconds": {"opt": 60.0},
    }


def test_summary_and_tables_are_counted_from_the_document():
    doc = {
        "command": "python benchmarks/generalization.py",
        "machine": {"cpu_model": "test CPU", "cpu_count": 2},
        "seconds": 600.0,
        "settings": {"seed": 0, "tasks": 5, "tune_tasks": 3, "tune_learned": False},
        "training_distribution": {"data": "digits"},
        "optimizers": ["opt"],
        "problems": [
            _entry("a", 0.5, "win", "win"),
            _entry("b", 1.0, "tie", "win"),
            _entry("c", 1.8, "loss", "tie", nonfinite=2),
        ],
        "skipped": [],
    }
    assert generalization.summary(doc) == [
        "- `opt`: beats tuned Adam on **1 of 3** problems (interval below 1), loses on 1, ties "
        "on 1; worst ratio to tuned Adam 1.8x (c), never worse than 1.5x: no; beats Adam at "
        "1e-3 on 2 of 3; non-finite runs: 2 of 15; median step time 3x Adam's."
    ]
    text = generalization.render(doc)
    assert "| `a` | 1 | 0.5 | 0.5x [0.45, 0.55] win | 0.25x [0.1, 0.9] win | 0 | 3.00x |" in text
    assert "| `c` | c | 10 | 3 | because | 2.0 |" in text
    assert "Machine: test CPU, 2 cores. Wall-clock 6 min over all problems" in text


@pytest.mark.slow
def test_quick_run_then_reuse_keeps_the_baselines_and_resume_keeps_everything(tmp_path):
    args = ["--quick", "--no-tune-learned", "--problems", "least_squares_1e4"]
    args += ["--results-dir", str(tmp_path)]
    first = generalization.main([*args, "--optimizers", "lstm_digits"])
    second = generalization.main([*args, "--optimizers", "rnnprop_quadratic", "--reuse-baselines"])
    saved = json.loads((tmp_path / "generalization.json").read_text())
    assert saved == json.loads(json.dumps(second))
    (one,), (two,) = first["problems"], second["problems"]
    assert two["baselines"] == one["baselines"]
    assert two["learned"]["lstm_digits"] == one["learned"]["lstm_digits"]
    assert set(two["learned"]) == {"lstm_digits", "rnnprop_quadratic"}
    assert two["adam_reproduced"] == {"lstm_digits": True, "rnnprop_quadratic": True}
    assert second["optimizers"] == ["lstm_digits", "rnnprop_quadratic"]
    assert "reused where unchanged" in generalization.render(second)
    # --resume keeps everything the document already has: nothing runs again.
    both = ["--optimizers", "lstm_digits", "rnnprop_quadratic"]
    third = generalization.main([*args, *both, "--resume"])
    assert third["problems"] == second["problems"] and third["complete"]
