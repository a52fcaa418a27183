"""Meta-training faults: bad tasks are masked and counted, bad updates are never applied."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import learned_opt as lo
from learned_opt.meta.unroll import is_finite

QUAD = lo.tasks.Quadratic(dim=3)
RULE = lo.LearnedRule()
#: Its normalised inputs keep the inner runs finite when a loss is scaled by 1e30, so the
#: meta-gradients are finite but huge (a learned rule with a raw-gradient term diverges).
LSTM = lo.LSTMOptimizer(hidden_size=4, num_layers=1)
EST = lo.TruncatedBackprop(unroll_length=3, horizon=6)


@dataclasses.dataclass(frozen=True)
class BadTasks(lo.tasks.TaskFamily):
    """Quadratic tasks; a ``fraction`` of them has its loss times ``scale`` (NaN if ``None``)."""

    fraction: float = 0.5
    scale: float | None = None

    def sample(self, key):
        k1, k2 = jax.random.split(key)
        return {**QUAD.sample(k1), "bad": jax.random.uniform(k2) < self.fraction}

    def init(self, task_params, key):
        return QUAD.init(task_params, key)

    def batch(self, task_params, key):
        return ()

    def loss(self, task_params, params, batch):
        loss = QUAD.loss(task_params, params, batch)
        bad = jnp.nan if self.scale is None else self.scale * loss
        return jnp.where(task_params["bad"], bad, loss)


def _moved(before, after):
    return any(jax.tree.leaves(jax.tree.map(lambda a, b: not np.allclose(a, b), before, after)))


@pytest.mark.fault("survived")
@pytest.mark.parametrize("estimator", [lo.TruncatedBackprop(3, 6), lo.PES(3, 6)], ids=str)
def test_nonfinite_tasks_are_masked_counted_and_reset(estimator):
    trainer = lo.MetaTrainer(RULE, BadTasks(), estimator, num_tasks=8)
    state = trainer.init(jax.random.key(0))
    runs = state.estimator_state if isinstance(estimator, lo.TruncatedBackprop) else None
    before = state.meta_params
    new, metrics = trainer.step(state)
    if runs is not None:
        bad = np.asarray(runs.task_params["bad"])
        assert 0 < bad.sum() < 8 and int(metrics["nonfinite_tasks"]) == bad.sum()
        # A failed run is sent to reset: its step counter jumps to its horizon.
        np.testing.assert_array_equal(np.asarray(new.estimator_state.step)[bad], 6)
    assert int(metrics["masked_tasks"]) == int(metrics["nonfinite_tasks"]) > 0
    assert np.isfinite(float(metrics["meta_loss"])) and bool(metrics["applied"])
    assert is_finite(new.meta_params) and _moved(before, new.meta_params)


@pytest.mark.fault("survived")
def test_huge_finite_task_gradients_are_masked_before_the_meta_optimizer():
    # Issue 10: loss x 1e30 on half the tasks with clip_norm=None left Adam's state half inf
    # and the meta-parameters frozen, with nonfinite_tasks reading 0.
    family = BadTasks(scale=1e30)
    trainer = lo.MetaTrainer(LSTM, family, EST, optax.adam(1e-2), num_tasks=8, clip_norm=None)
    state = trainer.init(jax.random.key(0))
    bad = np.asarray(state.estimator_state.task_params["bad"])
    new, metrics = trainer.step(state)
    assert int(metrics["masked_tasks"]) == bad.sum() > 0 and int(metrics["nonfinite_tasks"]) == 0
    assert bool(metrics["applied"]) and is_finite(new.meta_opt_state)
    assert _moved(state.meta_params, new.meta_params)
    # Without the norm bound the update would poison Adam's state: it is refused instead.
    unbounded = lo.MetaTrainer(
        LSTM, family, EST, optax.adam(1e-2), num_tasks=8, clip_norm=None, max_task_grad_norm=None
    )
    kept, metrics = unbounded.step(unbounded.init(jax.random.key(0)))
    assert int(metrics["masked_tasks"]) == 0 and not bool(metrics["applied"])
    jax.tree.map(np.testing.assert_array_equal, kept.meta_params, state.meta_params)
    assert is_finite(kept.meta_opt_state)


@pytest.mark.fault("survived")
def test_with_clipping_the_good_tasks_gradient_is_kept_whole():
    # Issue 10: with clipping, the huge tasks dominated the mean and the good tasks' gradient
    # was clipped away. Masking comes before the mean and the clip.
    family = BadTasks(scale=1e30)
    trainer = lo.MetaTrainer(LSTM, family, EST, optax.sgd(1.0), num_tasks=8, clip_norm=1e-3)
    state = trainer.init(jax.random.key(0))
    new, _ = trainer.step(state)
    estimate, _ = EST.estimate(LSTM, family, state.meta_params, state.estimator_state, None)
    good = ~np.asarray(state.estimator_state.task_params["bad"])
    mean = jax.tree.map(lambda g: g[good].mean(0), estimate.grads)
    expected, _ = optax.clip_by_global_norm(1e-3).update(mean, optax.EmptyState())
    applied = jax.tree.map(jnp.subtract, state.meta_params, new.meta_params)
    close = lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-3, atol=5e-7)
    jax.tree.map(close, applied, expected)


@pytest.mark.fault("survived")
def test_every_task_masked_logs_nan_warns_and_stops_after_the_limit(tmp_path):
    # Issue 10: with every task masked the logs said meta_loss 0.0.
    trainer = lo.MetaTrainer(RULE, BadTasks(fraction=1.0), EST, num_tasks=2)
    state = trainer.init(jax.random.key(0))
    new, metrics = trainer.step(state)
    assert np.isnan(float(metrics["meta_loss"])) and np.isnan(float(metrics["inner_loss"]))
    assert int(metrics["masked_tasks"]) == 2 and not bool(metrics["applied"])
    jax.tree.map(np.testing.assert_array_equal, new.meta_params, state.meta_params)
    log = tmp_path / "metrics.jsonl"
    why = r"all 2 tasks were masked \(non-finite or meta-gradient norm above max_task_grad_norm="
    with (
        pytest.warns(lo.MetaTrainingWarning, match=rf"^meta-step 1: not applied, {why}.*1 in a"),
        pytest.raises(
            lo.MetaTrainingError,
            match=rf"^meta-step 2: not applied, {why}1000000.0\); the meta-parameters are "
            r"unchanged\. Stopping after 2 meta-steps in a row without an update "
            r"\(max_skipped_steps=2\); the last checkpoint is intact\.$",
        ),
    ):
        trainer.run(trainer.init(jax.random.key(0)), 5, log_path=log, progress=False,
                    max_skipped_steps=2)  # fmt: skip
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [m["step"] for m in lines] == [1, 2] and all(np.isnan(m["meta_loss"]) for m in lines)


def _transformation(update):
    return optax.GradientTransformation(lambda params: {"count": jnp.zeros(())}, update)


@pytest.mark.fault("survived")
@pytest.mark.parametrize(
    "meta_optimizer",
    [
        _transformation(lambda u, s, p=None: (jax.tree.map(lambda x: x * jnp.nan, u), s)),
        _transformation(lambda u, s, p=None: (u, {"count": s["count"] + jnp.inf})),
    ],
    ids=["nan_updates", "nonfinite_meta_optimizer_state"],
)
def test_a_nonfinite_meta_update_is_not_applied(meta_optimizer):
    trainer = lo.MetaTrainer(RULE, QUAD, EST, meta_optimizer, num_tasks=2)
    state = trainer.init(jax.random.key(0))
    new, metrics = trainer.step(state)
    assert int(metrics["masked_tasks"]) == 0 and not bool(metrics["applied"])
    assert np.isfinite(float(metrics["meta_loss"]))
    jax.tree.map(np.testing.assert_array_equal, new.meta_params, state.meta_params)
    jax.tree.map(np.testing.assert_array_equal, new.meta_opt_state, state.meta_opt_state)


@pytest.mark.fault("refused")
@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"num_tasks": 0}, ValueError, "num_tasks: expected an integer >= 1, got 0"),
        ({"num_tasks": 2.0}, TypeError, "num_tasks: expected an integer >= 1, got 2.0"),
        (
            {"clip_norm": -1.0},
            ValueError,
            r"clip_norm: expected a finite number > 0.0, got -1.0",
        ),
        ({"max_task_grad_norm": "big"}, TypeError, "max_task_grad_norm: expected a finite"),
    ],
    ids=["num_tasks_0", "num_tasks_float", "clip_norm_negative", "max_task_grad_norm_str"],
)
def test_bad_trainer_arguments_are_refused(kwargs, error, message):
    with pytest.raises(error, match=f"^{message}"):
        lo.MetaTrainer(RULE, QUAD, EST, **kwargs)
