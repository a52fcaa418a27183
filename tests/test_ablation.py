"""The generalist's ablation: its variants, controls, plan and step-size window."""

import sys
from pathlib import Path

import jax
import numpy as np
import optax
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import ablation


@pytest.mark.parametrize("name", sorted(ablation.VARIANTS))
def test_every_variant_builds_and_each_control_is_adam(name):
    optimizer = ablation.optimizer_of(name)
    assert optimizer.base_direction == "adam"
    if not ablation.VARIANTS[name].get("untrained"):
        return
    # A control is the untrained optimizer: exactly Adam at its built-in step size.
    params = {"w": np.linspace(-1.0, 1.0, 6).reshape(2, 3)}
    grads = {"w": np.cos(np.arange(6.0)).reshape(2, 3)}
    tx = optimizer.as_optax(ablation.zeroed(optimizer.init(jax.random.key(0))))
    adam = optax.adam(optimizer.output_scale)
    got, _ = tx.update(grads, tx.init(params), params)
    want, _ = adam.update(grads, adam.init(params), params)
    np.testing.assert_allclose(got["w"], want["w"], rtol=1e-6)


def test_the_plan_names_known_variants_and_starts_with_the_control():
    assert ablation.PLAN[0] == ("adam", 0)
    assert all(name in ablation.VARIANTS for name, _ in ablation.PLAN)
    assert len(set(ablation.PLAN)) == len(ablation.PLAN)


def test_the_tuning_window_holds_adams_learning_rate_and_the_built_in_step():
    grid = ablation.window(0.03, 1e-3)
    np.testing.assert_allclose(grid, [1e-3, 0.003, 0.03 / 10**0.5, 0.03, 0.03 * 10**0.5, 0.3])
    assert len(ablation.window(0.03, 0.03)) == 5  # the built-in step is in the window already


def test_the_quick_setup_is_the_full_one_made_small():
    full = {p.name: p for p in ablation.FULL.suite}
    assert len(full) >= 8
    for problem in ablation.QUICK.suite:
        assert problem._replace(steps=full[problem.name].steps) == full[problem.name]
    assert len(ablation.QUICK.mixture().components) < len(ablation.FULL.mixture().components)
