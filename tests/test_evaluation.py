"""The evaluation harness: closed-form checks of tuning, pairing, bootstrap intervals, results."""

import dataclasses
import json
import time
from typing import Any, NamedTuple, cast

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import learned_opt as lo
from learned_opt import evaluation


@dataclasses.dataclass(frozen=True)
class Bowl(lo.tasks.TaskFamily):
    """``0.5 |θ - target|²``: gradient descent at learning rate 1 solves it in one step.

    At learning rate η the error shrinks by ``|1 - η|`` per step, so on the half-decade grid
    1 is the best learning rate of SGD (0.316 shrinks by 0.68, 3.16 diverges).
    """

    dim: int = 3

    def sample(self, key):
        return {"target": jax.random.normal(key, (self.dim,))}

    def init(self, task_params, key):
        return jax.random.normal(key, (self.dim,))

    def batch(self, task_params, key):
        return ()

    def loss(self, task_params, params, batch):
        return 0.5 * jnp.sum((params - task_params["target"]) ** 2)


class GDState(NamedTuple):
    step: jax.Array
    spec: Any


@dataclasses.dataclass(frozen=True)
class LearnedGD(lo.LearnedOptimizer):
    """A learned optimizer whose direction is the gradient and whose step size is meta_params.

    At step size ``lr`` (``scale_by`` then ``optax.scale_by_learning_rate(lr)``) it is exactly
    ``optax.sgd(lr)``.
    """

    def init(self, key):
        return {"lr": jnp.float32(0.01)}

    def init_state(self, meta_params, params):
        spec = jax.tree.map(lambda p: jnp.zeros((0, *p.shape), p.dtype), params)
        return GDState(jnp.zeros((), jnp.int32), spec)

    def learning_rate(self, meta_params):
        return meta_params["lr"]

    def _direction(self, meta_params, state, grads, params, loss):
        return grads, state._replace(step=state.step + 1)


def test_task_key_splits_are_disjoint_and_validation_is_new():
    keys = {s: evaluation.task_keys(0, 5, s) for s in ("train", "validation", "test")}
    rows = {s: {bytes(k) for k in np.asarray(jax.random.key_data(v))} for s, v in keys.items()}
    assert all(len(r) == 5 for r in rows.values())
    assert not (rows["train"] & rows["validation"] or rows["train"] & rows["test"])
    assert not rows["validation"] & rows["test"]
    with pytest.raises(
        ValueError, match=r"split: expected one of \('train', 'test', 'validation'\)"
    ):
        evaluation.task_keys(0, 5, cast(Any, "tune"))


def test_percentiles_match_numpy_on_finite_data_and_count_nonfinite_as_inf():
    x = np.random.default_rng(0).lognormal(size=(37, 4))
    q = [5, 50, 95]
    np.testing.assert_allclose(evaluation.percentiles(x, q), np.percentile(x, q, axis=0))
    y = np.array([3.0, np.nan, 1.0, 2.0, -np.inf])
    assert evaluation.percentiles(y, [0, 25, 50, 75, 100]).tolist() == [1, 2, 3, np.inf, np.inf]
    assert evaluation.summarize(y) == {"median": 3.0, "q05": 1.2, "q95": np.inf, "finite": 0.6}


def test_bootstrap_of_identical_results_is_exactly_one_and_a_tie():
    x = np.random.default_rng(1).lognormal(size=50)
    assert evaluation.paired_ratio_interval(x, x.copy()) == (1.0, 1.0, 1.0, "tie")


@pytest.mark.parametrize("factors, verdict", [((0.5, 0.99), "win"), ((1.01, 2.0), "loss")])
def test_better_on_every_task_gives_an_interval_that_excludes_one(factors, verdict):
    # x_i < y_i for every task makes every order statistic of a paired resample smaller, so
    # every bootstrap ratio of medians is below 1 (and above 1 for the reverse).
    rng = np.random.default_rng(2)
    baseline = rng.lognormal(sigma=2.0, size=40)
    r = evaluation.paired_ratio_interval(
        baseline * rng.uniform(factors[0], factors[1], 40), baseline
    )
    assert r.verdict == verdict
    assert r.low is not None and r.high is not None
    assert (r.high < 1) if verdict == "win" else (r.low > 1)
    assert factors[0] <= r.low < r.high <= factors[1]


def test_bootstrap_interval_is_paired_and_seeded():
    rng = np.random.default_rng(3)
    task_scale = rng.lognormal(sigma=3.0, size=60)  # tasks differ far more than optimizers
    a, b = task_scale * 0.95, task_scale * rng.uniform(0.99, 1.01, size=60)
    paired = evaluation.paired_ratio_interval(a, b, n_resamples=2000)
    assert paired.verdict == "win"  # pairing removes the task-to-task spread
    assert paired == evaluation.paired_ratio_interval(a, b, n_resamples=2000)
    assert paired != evaluation.paired_ratio_interval(a, b, n_resamples=2000, seed=1)


def test_ratio_counts_diverged_runs_as_infinitely_bad():
    finite = np.ones(6)
    diverged = np.array([np.nan, np.inf, np.nan, np.inf, 1.0, 1.0])
    r = evaluation.paired_ratio_interval(diverged, finite, n_resamples=999)
    assert (r.ratio, r.verdict) == (np.inf, "tie")  # some resamples keep a finite median
    r = evaluation.paired_ratio_interval(np.full(6, np.nan), finite, n_resamples=999)
    assert r == (np.inf, np.inf, np.inf, "loss")
    assert evaluation.paired_ratio_interval([2.0], [1.0]) == (2.0, None, None, None)
    with pytest.raises(ValueError, match=r"a, b: expected 1-d arrays of the same length"):
        evaluation.paired_ratio_interval([1.0, 2.0], [1.0])


def test_tuning_picks_the_known_best_learning_rate_of_a_quadratic():
    keys = evaluation.task_keys(0, 3, "train")
    sgd = evaluation.tune_baseline(Bowl(), "sgd", keys, 5)
    assert sgd.hyperparams == {"lr": 1.0} and not sgd.at_edge
    others = [score for (lr,), score in sgd.scores.items() if lr != 1.0]
    assert sgd.scores[(1.0,)] < 1e-10 < 1e-3 < min(others)
    learned = evaluation.tune_step_size(Bowl(), LearnedGD(), LearnedGD().init(None), keys, 5)
    assert (learned.learning_rate, learned.at_edge) == (1.0, False)
    assert learned.builtin == pytest.approx(0.01)
    assert learned.scores == pytest.approx({lr: sgd.scores[(lr,)] for lr in learned.scores})
    edge = evaluation.tune_step_size(
        Bowl(), LearnedGD(), LearnedGD().init(None), keys, 5, grid=(1e-3, 0.1)
    )
    assert (edge.learning_rate, edge.at_edge) == (0.1, True)


def test_the_tuned_path_at_the_builtin_step_size_is_the_shipped_optimizer():
    optimizer, meta_params = lo.load_pretrained("rnnprop_quadratic")
    keys, family = evaluation.task_keys(0, 3, "test"), lo.tasks.Quadratic()
    shipped = evaluation.learned_curves(family, optimizer, meta_params, keys, 10)
    builtin = float(optimizer.learning_rate(meta_params))
    losses, final = evaluation.run_scaled_learned(
        family, optimizer, meta_params, [builtin, 10 * builtin], keys, 10
    )
    # lr * direction vs the built-in step: the same product, rounded in another order.
    np.testing.assert_allclose(final[0], shipped.final, rtol=1e-5)
    np.testing.assert_allclose(losses[0], shipped.losses, rtol=1e-5)
    assert not np.allclose(final[1], shipped.final)


def test_adamw_cosine_decays_its_step_to_zero_over_the_run():
    tx = evaluation.BASELINES["adamw_cosine"](0.1, 4)
    params, state, steps = jnp.ones(2), None, []
    state = tx.init(params)
    for _ in range(5):
        updates, state = tx.update(jnp.ones(2), state, params)
        steps.append(float(jnp.abs(updates).max()))
    assert steps[0] == pytest.approx(0.1 * (1 + 1e-4), rel=1e-3)
    assert steps[0] > steps[1] > steps[2] > steps[3] > steps[4] == 0.0


def test_the_same_test_key_gives_every_optimizer_the_same_task_and_start():
    keys = evaluation.task_keys(0, 4, "test")
    first = lambda params, grads, updates, state: params
    runs = [
        evaluation.trace(Bowl(), tx, keys, 3, first) for tx in (optax.adam(0.1), optax.sgd(1.0))
    ]
    (loss_a, params_a), (loss_b, params_b) = runs
    np.testing.assert_array_equal(params_a[:, 0], params_b[:, 0])
    np.testing.assert_array_equal(loss_a[:, 0], loss_b[:, 0])
    assert len({float(v) for v in loss_a[:, 0]}) == 4  # and different keys, different tasks
    assert not np.array_equal(params_a[:, 1], params_b[:, 1])


@pytest.fixture(scope="module")
def comparison():
    learned = {"gd": (LearnedGD(), LearnedGD().init(None)), "diverges": optax.sgd(1e19)}
    return evaluation.compare(
        Bowl(),
        5,
        learned,
        tune_keys=evaluation.task_keys(0, 3, "train"),
        test_keys=evaluation.task_keys(0, 6, "test"),
        baselines=("sgd", "adam"),
        references=("adam", evaluation.ADAM_DEFAULT),
        time_steps=True,
        keep_curves=True,
        n_resamples=999,
    )


def test_compare_runs_every_optimizer_on_the_same_tasks(comparison):
    c = comparison
    assert list(c.runs) == ["gd", "diverges", "gd (tuned lr)", "sgd", "adam", "adam (1e-3)"]
    kinds = [r.kind for r in c.runs.values()]
    assert kinds == ["learned", "learned", "learned_tuned_lr", "baseline", "baseline", "default"]
    assert (c.num_steps, c.num_tasks, c.num_tune_tasks, c.best_baseline) == (5, 6, 3, "sgd")
    assert c.runs["gd (tuned lr)"].hyperparams == {"lr": 1.0, "builtin_lr": pytest.approx(0.01)}
    assert c.runs["sgd"].hyperparams == {"lr": 1.0}
    # The tuned learned direction at lr 1 is SGD at lr 1: the same numbers on the same tasks.
    assert c.runs["gd (tuned lr)"].final == c.runs["sgd"].final
    assert c.ratio("gd (tuned lr)", "sgd") == ("gd (tuned lr)", "sgd", 1.0, 1.0, 1.0, "tie")
    assert c.ratio("gd", "sgd").verdict == "loss"
    starts = {run.curve[1][0] for run in c.runs.values()}
    assert len(starts) == 1  # the loss before the first step: same task, same start
    pairs = [(r.learned, r.baseline) for r in c.ratios]
    assert pairs == [
        (name, ref)
        for name in ("gd", "diverges", "gd (tuned lr)")
        for ref in ("adam", "adam (1e-3)", "sgd")
    ]


def test_compare_counts_nonfinite_runs_and_round_trips_through_json(comparison):
    c = comparison
    diverged = c.runs["diverges"]
    assert (diverged.nonfinite, diverged.median, diverged.q05) == (6, np.inf, np.inf)
    assert c.ratio("diverges", "adam")[2:] == (np.inf, np.inf, np.inf, "loss")
    text = json.dumps(c.to_dict(), allow_nan=False)
    assert evaluation.Comparison.from_dict(json.loads(text)) == c
    assert all(r.step_seconds > 0 for r in c.runs.values())
    assert c.step_ratio("adam") == 1.0


def test_comparison_table_and_markdown(comparison):
    table = comparison.table()
    assert "final loss after 5 steps on 6 held-out tasks of bowl" in table
    assert "gd (tuned lr) / sgd" in table and "1x [1, 1] tie" in table
    lines = comparison.markdown().splitlines()
    assert lines[0].startswith("| optimizer | hyperparameters | final loss")
    assert any(line.startswith("| `diverges` | — | inf [inf, inf] | 6 |") for line in lines)
    assert "| `gd (tuned lr)` | lr 1e+00, built-in 0.01 |" in comparison.markdown()


def test_compare_rejects_bad_input():
    tune, test = evaluation.task_keys(0, 3, "train"), evaluation.task_keys(0, 3, "test")
    args = (Bowl(), 5, {"x": optax.sgd(0.1)})
    with pytest.raises(ValueError, match=r"tune_keys, test_keys: 3 task\(s\) are in both"):
        evaluation.compare(*args, tune_keys=test, test_keys=test)
    with pytest.raises(ValueError, match=r"baselines: unknown \['adagrad'\]"):
        evaluation.compare(*args, tune_keys=tune, test_keys=test, baselines=("adagrad",))
    with pytest.raises(ValueError, match=r"references: \['nag'\] are not runs"):
        evaluation.compare(*args, tune_keys=tune, test_keys=test, baselines=("adam",),
                           references=("nag",))  # fmt: skip
    with pytest.raises(ValueError, match=r"learned: names \['adam'\] clash"):
        evaluation.compare(Bowl(), 5, {"adam": optax.sgd(0.1)}, tune_keys=tune, test_keys=test)
    with pytest.raises(ValueError, match=r"num_steps: expected an integer >= 1, got 0"):
        evaluation.compare(Bowl(), 0, {}, tune_keys=tune, test_keys=test)
    with pytest.raises(TypeError, match=r"learned\['x'\]: expected \(optimizer, meta_params\)"):
        evaluation.compare(Bowl(), 5, {"x": [1]}, tune_keys=tune, test_keys=test, baselines=())
    with pytest.raises(ValueError, match=r"references: \['adam'\] are not runs"):
        evaluation.compare(*args, tune_keys=tune, test_keys=test, baselines=("sgd",),
                           references=("adam",))  # fmt: skip
    with pytest.raises(ValueError, match=r"grid: expected positive finite learning rates"):
        evaluation.tune_baseline(Bowl(), "sgd", tune, 5, grid=(0.1, -1.0))


def test_time_calls_warms_up_then_times_every_call():
    calls = []

    def call():
        calls.append(1)
        return jnp.zeros(())

    timing = evaluation.time_calls(call, 4, warmup=2)
    assert len(calls) == 6 and len(timing.seconds) == 4 and timing.median > 0
    with pytest.raises(ValueError, match=r"repeats: expected at least 1, got 0"):
        evaluation.time_calls(lambda: None, 0)


def test_time_interleaved_calls_round_robin_and_ratios_come_from_the_same_rounds():
    order, now = [], [0.0]

    def work(name, seconds):
        def call():
            order.append(name)
            now[0] += seconds

        return call

    calls = {"a": work("a", 1.0), "b": work("b", 3.0), "c": work("c", 0.5)}
    timings = evaluation.time_interleaved(calls, rounds=4, warmup=1, clock=lambda: now[0])
    # Each call warmed up once (untimed), then 4 rounds of a, b, c in order, each round
    # starting one call later.
    warmup, rounds = "abc", ["abc", "bca", "cab", "abc"]
    assert "".join(order) == warmup + "".join(rounds)
    assert list(timings) == ["a", "b", "c"]
    assert timings["a"].seconds == (1.0,) * 4 and timings["b"].seconds == (3.0,) * 4
    assert timings["b"].ratio(timings["a"]) == 3.0 and timings["c"].ratio(timings["a"]) == 0.5
    with pytest.raises(ValueError, match=r"rounds: expected at least 1, got 0"):
        evaluation.time_interleaved(calls, rounds=0)
    with pytest.raises(ValueError, match=r"expected 4 timed calls \(one per round\), got 2"):
        timings["a"].ratio(evaluation.Timing((1.0, 1.0), 0))


def test_interleaved_ratio_of_two_known_workloads_on_the_real_clock():
    # 10x apart, so that a wake-up delay of a few ms on a loaded machine cannot bring the
    # ratio near 1 (it stays above 3 even with 3 ms added to each call), nor a late wake of the
    # long call push it far above 10.
    calls = {"short": lambda: time.sleep(0.001), "long": lambda: time.sleep(0.010)}
    timings = evaluation.time_interleaved(calls, rounds=5)
    assert 3.0 < timings["long"].ratio(timings["short"]) < 15.0


def test_step_timings_time_every_optimizer_in_the_same_rounds():
    txs = {"adam": optax.adam(1e-3), "sgd": optax.sgd(1e-2)}
    timings = evaluation.step_timings(Bowl(), txs, jax.random.key(0), rounds=3)
    assert list(timings) == ["adam", "sgd"]
    assert all(len(t.seconds) == 3 and t.median > 0 for t in timings.values())
