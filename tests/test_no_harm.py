"""The options that keep a learned optimizer at its nominal one: Adam's step size per tensor and a
correction bounded relative to Adam's direction."""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import learned_opt as lo

GENERALIST: dict[str, Any] = dict(
    hidden_size=8,
    num_layers=1,
    preprocess="omit",
    use_loss=False,
    normalized_inputs=True,
    input_decays=(0.9, 0.5, 0.99),
    rms_decay=0.999,
    param_input=True,
    base_direction="adam",
    magnitude_output="coordinate",
    output_scale=1e-2,
)
PARAMS = {"w": jnp.ones((3, 5)), "b": jnp.zeros((5,)), "s": jnp.array(2.0)}


def _gradients(num_steps):
    keys = jax.random.split(jax.random.key(1), num_steps)
    return [jax.tree.map(lambda p, k=k: 3.0 * jax.random.normal(k, p.shape), PARAMS) for k in keys]


def _zeroed(meta_params):
    out = jax.tree.map(jnp.zeros_like, meta_params["out"])
    return {**meta_params, "out": out}


def _large(meta_params):
    out = jax.tree.map(lambda x: 30.0 * jnp.ones_like(x), meta_params["out"])
    return {**meta_params, "out": out}


def _run(tx, num_steps=6):
    state, outs = tx.init(PARAMS), []
    params = PARAMS
    for g in _gradients(num_steps):
        updates, state = tx.update(g, state, params)
        params = optax.apply_updates(params, updates)
        outs.append(updates)
    return outs


@pytest.mark.parametrize("bound", [None, 0.5])
def test_with_its_learned_outputs_at_zero_the_normalised_optimizer_is_adam(bound):
    opt = lo.LSTMOptimizer(**GENERALIST, update_norm="adam", correction_bound=bound)
    meta_params = _zeroed(opt.init(jax.random.key(0)))
    learned = _run(opt.as_optax(meta_params))
    adam = _run(optax.adam(1e-2, b1=0.9, b2=0.999, eps=1e-8))
    for a, b in zip(learned, adam, strict=True):
        for name in PARAMS:
            np.testing.assert_allclose(a[name], b[name], rtol=1e-5, atol=1e-9)


def _rms(x):
    return float(jnp.sqrt(jnp.mean(jnp.square(x))))


def test_adam_normalisation_keeps_adams_step_size_per_tensor_whatever_the_network_says():
    opt = lo.LSTMOptimizer(**GENERALIST, update_norm="adam")
    meta_params = _large(opt.init(jax.random.key(0)))
    learned = _run(opt.as_optax(meta_params))
    adam = _run(optax.adam(1e-2, b1=0.9, b2=0.999, eps=1e-8))
    for a, b in zip(learned, adam, strict=True):
        # The learned parts moved the direction away from Adam's ...
        assert not np.allclose(a["w"], b["w"], rtol=1e-2)
        for name in PARAMS:  # ... but every tensor keeps Adam's step size.
            assert _rms(a[name]) == pytest.approx(_rms(b[name]), rel=1e-5, abs=1e-12)


def test_the_bounded_correction_stays_within_its_bound_of_adams_direction():
    options = {**GENERALIST, "magnitude_output": "none"}
    opt = lo.LSTMOptimizer(**options, correction_bound=0.25)
    meta_params = _large(opt.init(jax.random.key(0)))
    learned = _run(opt.as_optax(meta_params))
    adam = _run(optax.adam(1e-2, b1=0.9, b2=0.999, eps=1e-8))
    for a, b in zip(learned, adam, strict=True):
        for name in ("w", "b"):
            gap = np.abs(np.asarray(a[name]) - np.asarray(b[name]))
            assert gap.max() > 0.2 * 0.25 * _rms(b[name])  # the correction acts ...
            assert gap.max() <= 0.25 * _rms(b[name]) * (1 + 1e-5)  # ... within its bound


def test_an_unbounded_correction_is_not_bounded():
    # The control of the test above: the same network without the bound leaves Adam far behind.
    options = {**GENERALIST, "magnitude_output": "none"}
    opt = lo.LSTMOptimizer(**options)
    updates = _run(opt.as_optax(_large(opt.init(jax.random.key(0)))), num_steps=1)[0]
    adam = _run(optax.adam(1e-2), num_steps=1)[0]
    assert np.abs(np.asarray(updates["w"] - adam["w"])).max() > _rms(adam["w"])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            dict(update_norm="adam"),
            "base_direction: update_norm='adam' and correction_bound are relative to Adam's "
            "direction; they need base_direction='adam'",
        ),
        (
            dict(correction_bound=1.0),
            "base_direction: update_norm='adam' and correction_bound are relative to Adam's "
            "direction; they need base_direction='adam'",
        ),
        (
            dict(normalized_inputs=True, base_direction="adam", correction_bound=0.0),
            "correction_bound: expected a finite number > 0.0, got 0.0",
        ),
    ],
)
def test_options_relative_to_adam_are_refused_without_it(options, message):
    with pytest.raises(ValueError) as error:
        lo.LSTMOptimizer(**options)
    assert str(error.value) == message


def test_the_flat_layout_refuses_the_per_tensor_correction_bound():
    with pytest.raises(ValueError, match="correction_bound and magnitude_output='tensor'"):
        lo.LSTMOptimizer(
            normalized_inputs=True, base_direction="adam", correction_bound=1.0, layout="flat"
        )
