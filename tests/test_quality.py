"""Slow end-to-end checks of what meta-training achieves (run with ``pytest -m slow``)."""

import numpy as np
import optax
import pytest

import learned_opt as lo
from learned_opt import cli, evaluation

pytestmark = pytest.mark.slow

#: The quadratic recipe of benchmarks/RESULTS.md.
QUADRATIC_RECIPE = [
    "meta-train", "--family", "quadratic", "--unroll", "10", "--horizon", "100",
    "--tasks", "64", "--meta-steps", "1500", "--meta-lr", "3e-3", "--normalized-inputs",
    "--validate-every", "50", "--validate-tasks", "100", "--no-progress",
]  # fmt: skip


@pytest.fixture(scope="module")
def quadratic_optimizer(tmp_path_factory):
    out = tmp_path_factory.mktemp("quadratic")
    cli.main([*QUADRATIC_RECIPE, "--out", str(out)])
    return lo.load(out / "optimizer.msgpack")


@pytest.mark.parametrize("scale", [1.0, 10.0, 0.1])
def test_lstm_beats_tuned_adam_on_held_out_quadratics(quadratic_optimizer, scale):
    opt, meta_params = quadratic_optimizer
    family = lo.tasks.ScaledLoss(lo.tasks.Quadratic(dim=10), scale)
    test = evaluation.task_keys(0, 100, "test")
    lr, _ = evaluation.tune_learning_rate(
        family, optax.adam, evaluation.task_keys(0, 32, "train"), 100
    )
    adam = evaluation.train_curves(family, optax.adam(lr), test, 100)
    learned = evaluation.learned_curves(family, opt, meta_params, test, 100)
    assert np.isfinite(learned.final).all()
    # No divergence: every run ends below where it started.
    assert (learned.final < learned.losses[:, 0]).all()
    if scale == 1.0:
        assert np.median(learned.final) < np.median(adam.final)
