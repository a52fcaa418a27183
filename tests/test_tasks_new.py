"""Tests of the autoencoder, regression and transformer families and of the task augmentations."""

import json
import math
from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from learned_opt.tasks import (
    MLP,
    Autoencoder,
    CharTransformer,
    Quadratic,
    RandomInitScale,
    RandomLossScale,
    RandomScaling,
    RandomTensorScaling,
    Regression,
    ScaledLoss,
    get_family,
    language,
    load_dataset,
)

TINY_LM = CharTransformer(num_layers=2, d_model=16, num_heads=2, seq_len=8, batch_size=3)
TINY_MLP = MLP(hidden_sizes=(6, 5), activation="gelu", init_scale=None, batch_size=16)
AUGMENTED = RandomLossScale(RandomInitScale(RandomTensorScaling(TINY_MLP)))

# family, expected parameter shapes, expected batch shapes (None: the batch is ``()``).
CASES = {
    "autoencoder": (
        Autoencoder(hidden_sizes=(12,), bottleneck=4, batch_size=8, activation="gelu"),
        [
            {"w": (64, 12), "b": (12,)},
            {"w": (12, 4), "b": (4,)},
            {"w": (4, 12), "b": (12,)},
            {"w": (12, 64), "b": (64,)},
        ],
        (8, 64),
    ),
    "least_squares": (Regression(num_features=5, num_examples=20), {"w": (5,), "b": ()}, None),
    "logistic_minibatch": (
        Regression("logistic", num_features=3, num_examples=10, batch_size=4),
        {"w": (3,), "b": ()},
        (4,),
    ),
    "char_transformer": (
        TINY_LM,
        {
            "embed": (97, 16),
            "position": (8, 16),
            "blocks": [
                {
                    "norm1": {"scale": (16,), "bias": (16,)},
                    "qkv": {"w": (16, 48), "b": (48,)},
                    "proj": {"w": (16, 16), "b": (16,)},
                    "norm2": {"scale": (16,), "bias": (16,)},
                    "hidden": {"w": (16, 64), "b": (64,)},
                    "out": {"w": (64, 16), "b": (16,)},
                }
            ]
            * 2,
            "norm": {"scale": (16,), "bias": (16,)},
            "head": {"w": (16, 97), "b": (97,)},
        },
        (3, 9),
    ),
    "augmented_mlp": (
        AUGMENTED,
        [{"w": (64, 6), "b": (6,)}, {"w": (6, 5), "b": (5,)}, {"w": (5, 10), "b": (10,)}],
        ((16, 64), (16,)),
    ),
}


def shapes(tree):
    return jax.tree.map(lambda x: tuple(x.shape), tree)


@pytest.mark.parametrize("name", sorted(CASES))
def test_vmapped_shapes_and_dtypes(name):
    family, param_shapes, batch_shapes = CASES[name]

    def one(key):
        k_task, k_init, k_batch = jax.random.split(key, 3)
        task_params = family.sample(k_task)
        params = family.init(task_params, k_init)
        batch = family.batch(task_params, k_batch)
        return (
            params,
            batch,
            family.loss(task_params, params, batch),
            family.eval_loss(task_params, params),
        )

    params, batch, loss, eval_loss = jax.jit(jax.vmap(one))(jax.random.split(jax.random.key(0), 3))
    assert shapes(params) == jax.tree.map(lambda s: (3, *s), param_shapes, is_leaf=_is_shape)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(params))
    if batch_shapes is None:
        assert batch == ()
    else:
        assert shapes(batch) == jax.tree.map(lambda s: (3, *s), batch_shapes, is_leaf=_is_shape)
    assert loss.shape == eval_loss.shape == (3,)
    assert loss.dtype == eval_loss.dtype == jnp.float32
    assert np.all(np.isfinite(loss)) and np.all(np.isfinite(eval_loss))


def _is_shape(x):
    return isinstance(x, tuple) and all(isinstance(v, int) for v in x)


def value_and_grad(family):
    """The jitted ``(loss, grads)`` of ``family`` with respect to the parameters."""
    return jax.jit(jax.value_and_grad(family.loss, argnums=1))


def test_least_squares_closed_form():
    family = Regression(num_features=6, num_examples=40, feature_log_scale=2.0, target_scale=30.0)
    task_params = jax.jit(family.sample)(jax.random.key(1))
    x = np.asarray(task_params["x"], np.float64)
    y = np.asarray(task_params["y"], np.float64)
    # Features have their own scales: their standard deviations span more than e^1.
    spread = np.std(x, axis=0)
    assert spread.max() / spread.min() > math.e
    x1 = np.concatenate([x, np.ones((40, 1))], axis=1)
    solution, *_ = np.linalg.lstsq(x1, y, rcond=None)
    params = {"w": jnp.asarray(solution[:6], jnp.float32), "b": jnp.float32(solution[6])}
    zero = family.init(task_params, jax.random.key(2))

    loss, grads = value_and_grad(family)(task_params, params, ())
    zero_loss, zero_grads = value_and_grad(family)(task_params, zero, ())
    np.testing.assert_allclose(loss, np.mean((x1 @ solution - y) ** 2), rtol=1e-3)
    assert np.abs(grads["w"]).max() < 1e-3 * np.abs(zero_grads["w"]).max()
    np.testing.assert_allclose(zero_loss, np.mean(y**2), rtol=1e-5)
    assert jax.jit(family.eval_loss)(task_params, params) == loss
    # The residual left is the noise: target_scale² noise_std² (1 - (d + 1) / n) on average.
    assert 0.3 < float(loss) / (30.0**2 * 0.1**2 * (1 - 7 / 40)) < 3.0


@pytest.mark.parametrize(("kind", "power"), [("least_squares", 2), ("logistic", 0)])
def test_target_scale_sets_the_loss_scale(kind, power):
    def loss_at_zero(scale):
        family = Regression(kind, num_features=4, num_examples=30, target_scale=scale)
        task_params = family.sample(jax.random.key(3))
        return family.loss(task_params, family.init(task_params, jax.random.key(4)), ())

    ratio = jax.jit(lambda: loss_at_zero(100.0) / loss_at_zero(1.0))()
    np.testing.assert_allclose(ratio, 100.0**power, rtol=1e-5)


def test_logistic_loss_gradient_and_minibatches():
    family = Regression("logistic", num_features=3, num_examples=12, target_scale=5.0)
    task_params = jax.jit(family.sample)(jax.random.key(4))
    x, y = np.asarray(task_params["x"]), np.asarray(task_params["y"])
    assert set(np.unique(y)) == {0.0, 1.0}
    zero = family.init(task_params, jax.random.key(0))
    loss, grads = value_and_grad(family)(task_params, zero, ())
    np.testing.assert_allclose(loss, math.log(2), rtol=1e-6)
    np.testing.assert_allclose(grads["w"], x.T @ (0.5 - y) / 12, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(grads["b"], np.mean(0.5 - y), atol=1e-7)

    params = {"w": jnp.asarray([1.0, -2.0, 0.5]), "b": jnp.float32(0.3)}
    minibatched = Regression("logistic", num_features=3, num_examples=12, batch_size=5)

    @jax.jit
    def run(task_params, params, key):
        indices = minibatched.batch(task_params, key)
        return (
            indices,
            minibatched.loss(task_params, params, indices),
            minibatched.eval_loss(task_params, params),
            family.loss(task_params, params, ()),
        )

    indices, batch_loss, eval_loss, full_loss = run(task_params, params, jax.random.key(5))
    assert indices.shape == (5,) and indices.min() >= 0 and indices.max() < 12
    z = x[np.asarray(indices)] @ np.asarray(params["w"]) + 0.3
    expected = np.mean(np.log1p(np.exp(z)) - y[np.asarray(indices)] * z)
    np.testing.assert_allclose(batch_loss, expected, rtol=1e-5)
    np.testing.assert_allclose(eval_loss, full_loss, rtol=1e-6)


def test_autoencoder_loss_is_the_reconstruction_error():
    family = Autoencoder(hidden_sizes=(), bottleneck=3, batch_size=5, eval_size=100)
    assert family.layer_sizes == (64, 3, 64)

    @jax.jit
    def run(key):
        params = family.init({}, key)
        zero = jax.tree.map(jnp.zeros_like, params)
        x = family.batch({}, jax.random.fold_in(key, 1))
        # A linear autoencoder with a bias equal to the image reproduces that image exactly.
        exact = [params[0], {"w": jnp.zeros((3, 64)), "b": x[0]}]
        return (
            x,
            family.loss({}, zero, x),
            family.loss({}, exact, x[:1]),
            family.eval_loss({}, zero),
        )

    x, zero_loss, exact_loss, eval_zero = run(jax.random.key(0))
    images = load_dataset("digits")[0]
    assert x.shape == (5, 64) and all((images == row).all(axis=1).any() for row in np.asarray(x))
    np.testing.assert_allclose(zero_loss, np.mean(np.asarray(x) ** 2), rtol=1e-6)
    assert float(exact_loss) == 0.0
    assert 0.15 < float(eval_zero) < 0.3  # the digits' mean square pixel value is 0.23


def test_char_transformer_is_causal_and_reads_the_corpus():
    family = TINY_LM

    @jax.jit
    def run(key):
        params = family.init({}, key)
        tokens = family.batch({}, jax.random.fold_in(key, 1))
        # Change the last input token: only the last position's logits may change.
        inputs = tokens[:, :-1].astype(jnp.int32)
        changed = inputs.at[:, -1].set((inputs[:, -1] + 1) % language.VOCAB_SIZE)
        logits = family.apply(params, inputs), family.apply(params, changed)
        return tokens, logits, family.loss({}, params, tokens), family.eval_loss({}, params)

    tokens, (before, after), loss, eval_loss = run(jax.random.key(0))
    train, held_out = language.corpus_tokens()
    for window in np.asarray(tokens):
        assert train.tobytes().find(window.tobytes()) != -1
    np.testing.assert_array_equal(before[:, :-1], after[:, :-1])
    assert not np.allclose(before[:, -1], after[:, -1])
    # At initialisation the prediction is near uniform: about log(97) nats per character.
    assert abs(float(loss) - math.log(97)) < 0.05 and abs(float(eval_loss) - math.log(97)) < 0.05
    # The vocabulary is fixed: newline, printable ASCII and one unknown token.
    assert language.VOCAB_SIZE == 97 and language.VOCABULARY[1:3] == " !"
    text = language.corpus_text()
    split = len(train)
    assert len(train) + len(held_out) == len(text)
    decoded = "".join(language.VOCABULARY[t] if t < 96 else "\0" for t in held_out[:200])
    expected = "".join(c if c in language.VOCABULARY else "\0" for c in text[split : split + 200])
    assert decoded == expected


def _tree_close(a, b, rtol):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(x, y, rtol=rtol, atol=1e-6 * float(np.abs(y).max()))


def test_tensor_scaling_is_a_reparameterisation():
    family = RandomTensorScaling(TINY_MLP, max_log_scale=2.0)
    base = family.family

    @jax.jit
    def run(key):
        k_tasks, k_init, k_batch = jax.random.split(key, 3)
        scales = jax.vmap(family.sample)(jax.random.split(k_tasks, 50))["scales"]
        tp = family.sample(k_tasks)
        theta = base.init(tp["task"], k_init)
        batch = family.batch(tp, k_batch)
        reparam = jax.tree.map(lambda c, p: p / c, tp["scales"], theta)
        return (
            scales,
            tp["scales"],
            (family.init(tp, k_init), reparam),
            (
                jax.value_and_grad(family.loss, argnums=1)(tp, reparam, batch),
                jax.value_and_grad(base.loss, argnums=1)(tp["task"], theta, batch),
            ),
            (family.eval_loss(tp, reparam), base.eval_loss(tp["task"], theta)),
        )

    scales, c, (init, reparam), ((loss, grads), (base_loss, base_grads)), evals = run(
        jax.random.key(0)
    )
    scales = np.concatenate([np.asarray(s) for s in jax.tree.leaves(scales)])
    assert scales.shape == (50 * 6,)
    assert np.exp(-2.0) <= scales.min() < np.exp(-1.5) and np.exp(1.5) < scales.max() <= np.exp(2)
    assert all(s.shape == () for s in jax.tree.leaves(c))
    _tree_close(init, reparam, rtol=1e-6)
    np.testing.assert_allclose(loss, base_loss, rtol=1e-6)
    np.testing.assert_allclose(evals[0], evals[1], rtol=1e-6)
    # Chain rule: d f(c θ') / dθ' = c ∇f(c θ').
    _tree_close(grads, jax.tree.map(jnp.multiply, c, base_grads), rtol=1e-5)


def test_loss_and_init_scales():
    base = Quadratic(dim=4)
    losses = RandomLossScale(base, max_log_scale=3.0)
    inits = RandomInitScale(base, max_log_scale=1.0)

    @jax.jit
    def run(key):
        keys = jax.random.split(key, 4)
        all_scales = jax.vmap(losses.sample)(jax.random.split(keys[0], 64))["scale"]
        tp = losses.sample(keys[0])
        theta = base.init(tp["task"], keys[1])
        scaled = jax.value_and_grad(losses.loss, argnums=1)(tp, theta, ())
        plain = jax.value_and_grad(base.loss, argnums=1)(tp["task"], theta, ())
        tp_init = inits.sample(keys[2])
        init = inits.init(tp_init, keys[3]), tp_init["scale"] * base.init(tp_init["task"], keys[3])
        same_loss = inits.loss(tp_init, theta, ()), base.loss(tp_init["task"], theta, ())
        return all_scales, tp["scale"], scaled, plain, losses.eval_loss(tp, theta), init, same_loss

    all_scales, k, (loss, grads), (base_loss, base_grads), eval_loss, init, same = run(
        jax.random.key(0)
    )
    assert all_scales.shape == (64,) and len(np.unique(all_scales)) == 64
    assert np.exp(-3) <= all_scales.min() < np.exp(-2) and np.exp(2) < all_scales.max() <= np.exp(3)
    np.testing.assert_allclose(loss, k * base_loss, rtol=1e-6)
    np.testing.assert_allclose(grads, k * base_grads, rtol=1e-6)
    np.testing.assert_allclose(eval_loss, loss, rtol=1e-6)
    np.testing.assert_allclose(init[0], init[1], rtol=1e-6)
    assert same[0] == same[1]


def test_augmentations_compose():
    family = AUGMENTED

    @jax.jit
    def run(key):
        tp = family.sample(key)
        tensor, inner = tp["task"]["task"], tp["task"]["task"]["task"]
        theta = TINY_MLP.init(inner, jax.random.fold_in(key, 1))
        init = family.init(tp, jax.random.fold_in(key, 1))
        expected_init = jax.tree.map(
            lambda c, p: tp["task"]["scale"] * p / c, tensor["scales"], theta
        )
        batch = family.batch(tp, jax.random.fold_in(key, 2))
        reparam = jax.tree.map(lambda c, p: p / c, tensor["scales"], theta)
        loss = family.loss(tp, reparam, batch)
        return (init, expected_init), (loss, tp["scale"] * TINY_MLP.loss(inner, theta, batch))

    (init, expected_init), (loss, expected_loss) = run(jax.random.key(0))
    _tree_close(init, expected_init, rtol=1e-6)
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-5)


@pytest.mark.parametrize(
    "family",
    [
        Autoencoder(dataset="digits", hidden_sizes=cast(Any, [8]), bottleneck=2),
        Regression("logistic", batch_size=8),
        TINY_LM,
        AUGMENTED,
        RandomScaling(ScaledLoss(Quadratic(dim=2), 10.0)),
    ],
    ids=lambda f: f.name,
)
def test_config_round_trips_through_json(family):
    assert get_family(**json.loads(json.dumps(family.config()))) == family


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (
            lambda: Regression(kind=cast(Any, "ridge")),
            ValueError,
            "kind: expected one of ('least_squares', 'logistic'), got 'ridge'",
        ),
        (
            lambda: Regression(num_features=0),
            ValueError,
            "num_features: expected an integer >= 1, got 0",
        ),
        (
            lambda: Regression(num_examples=cast(Any, 2.5)),
            TypeError,
            "num_examples: expected an integer >= 1, got 2.5",
        ),
        (
            lambda: Regression(target_scale=0.0),
            ValueError,
            "target_scale: expected a finite number > 0.0, got 0.0",
        ),
        (
            lambda: Regression(noise_std=cast(Any, "0.1")),
            TypeError,
            "noise_std: expected a finite number >= 0.0, got '0.1'",
        ),
        (
            lambda: Regression(batch_size=True),
            TypeError,
            "batch_size: expected an integer >= 1, got True",
        ),
        (
            lambda: Autoencoder(bottleneck=0),
            ValueError,
            "bottleneck: expected an integer >= 1, got 0",
        ),
        (
            lambda: Autoencoder(dataset="cifar"),
            ValueError,
            "dataset: expected one of ('digits', 'fashion_mnist', 'mnist'), got 'cifar'",
        ),
        (
            lambda: Autoencoder(hidden_sizes=(8, -1)),
            ValueError,
            "hidden_sizes: expected positive integers, got (8, -1)",
        ),
        (
            lambda: Autoencoder(activation="swish"),
            ValueError,
            "activation: expected one of ('elu', 'gelu', 'relu', 'sigmoid', 'tanh'), got 'swish'",
        ),
        (
            lambda: CharTransformer(d_model=64, num_heads=3),
            ValueError,
            "num_heads: must divide d_model=64, got 3",
        ),
        (
            lambda: CharTransformer(init_scale=-1),
            ValueError,
            "init_scale: expected a finite number > 0.0, got -1.0",
        ),
        (lambda: CharTransformer(seq_len=10**6), ValueError, "seq_len: must be <"),
        (
            lambda: RandomLossScale(cast(Any, "mlp")),
            TypeError,
            "family: expected a TaskFamily, got 'mlp'",
        ),
        (
            lambda: RandomInitScale(MLP(), max_log_scale=-1),
            ValueError,
            "max_log_scale: expected a finite number >= 0.0, got -1.0",
        ),
        (
            lambda: RandomTensorScaling(MLP(), max_log_scale=cast(Any, None)),
            TypeError,
            "max_log_scale: expected a finite number >= 0.0, got None",
        ),
        (
            lambda: get_family("random_loss_scale", family={"name": "nope"}),
            ValueError,
            "task family: unknown 'nope'",
        ),
    ],
)
def test_bad_arguments_raise_one_clear_error(build, error, message):
    with pytest.raises(error) as info:
        build()
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)
