"""The generalisation benchmark: its problems lie outside the training distribution, its
summary is counted from the data, and a re-run reuses the cached baselines."""

import json
import math
import sys
from pathlib import Path

import jax
import numpy as np
import optax
import pytest

import learned_opt as lo
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

import ablation
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
    if isinstance(family, Regression) and family.num_features > 64:
        return True
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


def _unscaled(family):
    """The family's configuration without a loss scale: equal for problems that differ only
    in the scale of their loss."""
    while isinstance(family, ScaledLoss):
        family = family.family
    return family.config()


def test_every_problem_is_distinct_under_rescaling_and_from_the_validation_suite():
    problems = generalization.problems()
    configs = [_unscaled(p.family) for p in problems]
    assert all(configs.count(c) == 1 for c in configs), "two problems differ only in loss scale"
    validation = [_unscaled(p.family) for p in ablation.SUITE]
    assert not [p.name for p, c in zip(problems, configs, strict=True) if c in validation]
    names = [p.name for p in problems]
    assert "logistic_1e-3" not in names and "logistic_1e3" in names
    wide = {p.name: p for p in problems}["logistic_wide"]
    assert isinstance(wide.family, Regression)
    assert wide.family.num_features == 512 and wide.steps == 500
    assert "16 features" in generalization.TRAINING_DISTRIBUTION["regression"]


def test_the_untrained_control_is_adam_as_shipped_and_with_its_step_size_tuned():
    family = lo.tasks.Quadratic(dim=4)
    control = generalization.CONTROL
    c = evaluation.compare(
        family,
        20,
        {control: generalization.control()},
        tune_keys=evaluation.task_keys(0, 3, "train"),
        test_keys=evaluation.task_keys(0, 5, "test"),
        baselines=("adam",),
        references=("adam", evaluation.ADAM_DEFAULT),
        grid=(1e-3, 1e-2, 1e-1, 1.0),
        n_resamples=999,
    )
    tuned = control + evaluation.TUNED_SUFFIX
    np.testing.assert_allclose(c.runs[control].final, c.runs[evaluation.ADAM_DEFAULT].final, 1e-4)
    np.testing.assert_allclose(c.runs[tuned].final, c.runs["adam"].final, 1e-4)
    assert c.runs[tuned].hyperparams["lr"] == c.runs["adam"].hyperparams["lr"]
    assert f"{c.ratio(control, evaluation.ADAM_DEFAULT).ratio:.2f}" == "1.00"
    assert f"{c.ratio(tuned, 'adam').ratio:.2f}" == "1.00"


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
    first = generalization.main([*args, "--optimizers", "lstm_digits", "--rivals", "untrained"])
    second = generalization.main(
        [*args, "--optimizers", "rnnprop_quadratic", "--reuse-baselines", "--rivals", "dog"]
    )
    saved = json.loads((tmp_path / "generalization.json").read_text())
    assert saved == json.loads(json.dumps(second))
    (one,), (two,) = first["problems"], second["problems"]
    assert two["baselines"] == one["baselines"]
    assert two["learned"]["lstm_digits"] == one["learned"]["lstm_digits"]
    assert set(two["learned"]) == {"lstm_digits", "rnnprop_quadratic"}
    reproduced = {"lstm_digits": True, "rnnprop_quadratic": True, "untrained": True}
    assert two["adam_reproduced"] == reproduced
    assert second["optimizers"] == ["lstm_digits", "rnnprop_quadratic"]
    # The rivals and the control are cached per problem: only the new rival ran.
    assert set(two["rivals"]) == {"untrained", "dog"}
    assert two["rivals"]["untrained"] == one["rivals"]["untrained"]
    # Every optimizer of the problem is timed in the same rounds, Adam's ratio 1.
    timed = set(two["step_times"]["vs_adam"])
    assert {"adam", "lstm_digits", "rnnprop_quadratic", "dog", "untrained"} <= timed
    ratio = two["step_times"]["vs_adam"]["lstm_digits"]
    assert math.isfinite(ratio) and ratio > 0
    assert ("lstm_digits", "dog") in {(r["learned"], r["baseline"]) for r in two["ratios"]}
    assert "reused where unchanged" in generalization.render(second)
    # --resume keeps everything the document already has: nothing runs again.
    both = ["--optimizers", "lstm_digits", "rnnprop_quadratic", "--rivals", "untrained", "dog"]
    third = generalization.main([*args, *both, "--resume"])
    assert third["problems"] == second["problems"] and third["complete"]


def _with_rivals(entry, prodigy, step_ratio=2.5):
    """``entry`` with the rival ``prodigy`` (final losses ``prodigy`` x tuned Adam's), the
    untrained control (Adam) and an interleaved step timing."""
    adam, default = _run("baseline", [1.0] * 5), _run("default", [2.0] * 5)
    control, tuned = generalization.CONTROL, generalization.CONTROL + evaluation.TUNED_SUFFIX
    entry["rivals"] = {
        "prodigy": _comparison(
            {"prodigy": _run("learned", [prodigy] * 5), evaluation.ADAM_DEFAULT: default}, []
        ),
        control: _comparison(
            {
                control: _run("learned", [2.0] * 5),
                tuned: _run("learned_tuned_lr", [1.0] * 5, hyperparams={"lr": 0.1}),
                "adam": adam,
                evaluation.ADAM_DEFAULT: default,
            },
            [],
        ),
    }
    entry["ratios"] = generalization.cross_ratios(entry)
    names = [*evaluation.DEFAULT_BASELINES, evaluation.ADAM_DEFAULT, "opt", "prodigy"]
    vs_adam = {n: 1.0 for n in names} | {"opt": step_ratio, "prodigy": 1.5}
    entry["step_times"] = {"rounds": 3, "seconds": {n: 1e-3 * r for n, r in vs_adam.items()}}
    entry["step_times"]["vs_adam"] = vs_adam
    return entry


def _document(entries, **settings):
    return {
        "command": "python benchmarks/generalization.py",
        "machine": {"cpu_model": "test CPU", "cpu_count": 2},
        "seconds": 600.0,
        "settings": {"seed": 0, "tasks": 5, "tune_tasks": 3, "tune_learned": False, **settings},
        "training_distribution": {"data": "digits"},
        "optimizers": ["opt"],
        "problems": entries,
        "skipped": [],
    }


def test_cross_ratios_pair_the_rivals_with_tuned_adam_and_the_learned_runs_with_the_rivals():
    entry = _with_rivals(_entry("a", 0.5, "win", "win"), prodigy=1.2)
    ratios = {(r["learned"], r["baseline"]): r for r in entry["ratios"]}
    control, default = generalization.CONTROL, evaluation.ADAM_DEFAULT
    tuned = control + evaluation.TUNED_SUFFIX
    assert set(ratios) == {
        (default, "adam"),
        *[(n, ref) for n in ("prodigy", control, tuned) for ref in ("adam", default)],
        ("opt", "prodigy"),
    }
    assert ratios["opt", "prodigy"]["ratio"] == pytest.approx(0.5 / 1.2)
    assert ratios["opt", "prodigy"]["verdict"] == "win"
    assert ratios["prodigy", "adam"]["verdict"] == "loss"
    assert ratios[tuned, "adam"]["ratio"] == 1.0 and ratios[control, default]["ratio"] == 1.0


def test_the_rivals_the_control_and_the_interleaved_step_times_are_rendered_and_counted():
    doc = _document(
        [
            _with_rivals(_entry("a", 0.5, "win", "win"), prodigy=1.2),
            _with_rivals(_entry("b", 1.0, "tie", "win"), prodigy=0.8, step_ratio=3.5),
            _entry("c", 1.8, "loss", "tie"),  # run before the rivals existed
        ]
    )
    (line,) = generalization.summary(doc)
    assert "beats Adam at 1e-3 on 2 of 3; beats each tuning-free optimizer at its defaults " in line
    assert "on: `prodigy` 1 of 2; non-finite runs: 0 of 15; median step time 3x Adam's." in line
    assert generalization.rivals_summary(doc) == [
        "- `prodigy` (tuning-free, at its defaults): beats tuned Adam on 1 of 2 problems, loses "
        "on 1; beats Adam at 1e-3 on 2 of 2.",
        "- control `untrained (= Adam)`: reads 1.00x Adam at 1e-3 on **2 of 2** problems "
        "(ratios 1x to 1x); the harness is fair where it does.",
        "- control `untrained (= Adam) (tuned lr)`: reads 1.00x tuned Adam on **2 of 2** "
        "problems (ratios 1x to 1x); the harness is fair where it does.",
    ]
    text = generalization.render(doc)
    header = "| problem | tuned Adam | `adam (1e-3)` | `prodigy` | `untrained (= Adam)` |"
    assert header + " `untrained (= Adam) (tuned lr)` |" in text
    assert "| `a` | 1 | 2x loss | 1.2x loss | 2x loss | 1x tie |" in text
    assert "| `c` | 1 | not run | not run | not run | not run |" in text
    # The learned table counts its wins over the tuning-free optimizers; step times come from
    # the interleaved timing, and from the comparison where a problem predates it.
    assert (
        "| `a` | 1 | 0.5 | 0.5x [0.45, 0.55] win | 0.25x [0.1, 0.9] win | 1 of 1 | 0 | 2.50x |"
        in text
    )
    assert (
        "| `c` | 1 | 1.8 | 1.8x [1.62, 1.98] loss | 0.9x [0.1, 0.9] tie | not run | 0 | 3.00x |"
        in text
    )
    assert "| `opt` | 3.00x | 2.50x to 3.50x | 2 |" in text
    assert "the steps of all the optimizers of a problem are timed round-robin" in text
    assert "the tuning-free optimizers of optax (`prodigy`) at their defaults, untuned" in text


def test_a_document_from_before_the_rivals_renders_and_says_what_it_lacks():
    doc = _document([_entry("logistic_1e-3", 0.5, "win", "win")])
    text = generalization.render(doc)
    assert "No tuning-free optimizer or untrained control in this document." in text
    assert "Step time: median wall-clock of one jitted training step" in text
    line = next(x for x in text.splitlines() if x.startswith("Problems not run"))
    assert "`logistic_wide`" in line and "`mlp_deep`" in line
    assert line.endswith("; no longer in the benchmark: `logistic_1e-3`.")
    committed = Path(generalization.__file__).parent / "results" / "generalization.json"
    if committed.exists():
        old = json.loads(committed.read_text())
        rivals_run = any(entry.get("rivals") for entry in old["problems"])
        text = generalization.render(old)
        assert rivals_run or "No tuning-free optimizer or untrained control" in text


def test_transformations_rebuild_every_run_of_a_problem_as_it_ran():
    entry = _with_rivals(_entry("a", 0.5, "win", "win"), prodigy=1.2)
    nag = json.loads(json.dumps(entry["baselines"]))
    nag["runs"]["nag"]["hyperparams"] = {"lr": 0.1, "momentum": 0.5}
    entry["baselines"] = nag
    entry["learned"] = {}
    txs = generalization.transformations(entry, {})
    control = generalization.CONTROL
    tuned = control + evaluation.TUNED_SUFFIX
    expected = [*evaluation.DEFAULT_BASELINES, evaluation.ADAM_DEFAULT, "prodigy", control, tuned]
    assert list(txs) == expected
    params = {"w": np.ones(3, np.float32)}
    grads = {"w": np.array([0.5, -2.0, 1.0], np.float32)}

    def update(tx):
        return tx.update(grads, tx.init(params), params)[0]["w"]

    # The control's step-size-tuned run is Adam at its tuned learning rate, as shipped Adam
    # at 1e-3; the baselines keep their tuned hyperparameters.
    np.testing.assert_allclose(update(txs[tuned]), update(optax.adam(0.1)), rtol=1e-5)
    np.testing.assert_allclose(update(txs[control]), update(optax.adam(1e-3)), rtol=1e-5)
    nesterov = optax.sgd(0.1, momentum=0.5, nesterov=True)
    np.testing.assert_allclose(update(txs["nag"]), update(nesterov), rtol=1e-6)
