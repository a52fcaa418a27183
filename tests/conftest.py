"""Test configuration: strict JAX settings, as equinox does."""

import jax

from learned_opt.compilation_cache import enable_compilation_cache

jax.config.update("jax_numpy_rank_promotion", "raise")
# Test workers reuse the programs compiled by earlier runs ($LEARNED_OPT_CACHE_DIR, or
# ~/.cache/learned_opt/jax; LEARNED_OPT_CACHE_DIR=off turns it off).
enable_compilation_cache()


def pytest_configure(config):
    """A cache entry that another test worker is still writing reads as damaged: JAX warns and
    compiles the program itself, which is no failure."""
    config.addinivalue_line(
        "filterwarnings", "ignore:Error reading persistent compilation cache entry:UserWarning"
    )


# --- Shared helpers for the optimizer, optax-compatibility and save/load tests. ---

import jax.numpy as jnp  # noqa: E402
import pytest  # noqa: E402

import learned_opt as lo  # noqa: E402

#: Small instances of each architecture (hidden sizes shrunk where the default is not the point).
SMALL_OPTIMIZERS = {
    "lstm": lo.LSTMOptimizer(hidden_size=4, momentum_size=4, normalized_inputs=True),
    "meta_lstm": lo.MetaLSTMOptimizer(hidden_size=4),
    "rule": lo.LearnedRule(),
}


@pytest.fixture(params=sorted(SMALL_OPTIMIZERS))
def small_opt(request):
    """``(optimizer, meta_params)`` for a small instance of each architecture."""
    opt = SMALL_OPTIMIZERS[request.param]
    return opt, opt.init(jax.random.key(0))


def mlp_init(key, sizes=(3, 8, 1)):
    """Parameters of a small MLP: a list of ``{"w", "b"}`` layers."""
    keys = jax.random.split(key, len(sizes) - 1)
    return [
        {"w": jax.random.normal(k, (m, n)) / jnp.sqrt(m), "b": jnp.zeros((n,))}
        for k, m, n in zip(keys, sizes[:-1], sizes[1:], strict=True)
    ]


def mlp_loss(params, x, y):
    """Mean squared error of a tanh MLP."""
    for layer in params[:-1]:
        x = jnp.tanh(x @ layer["w"] + layer["b"][None, :])
    out = params[-1]
    return jnp.mean((x @ out["w"] + out["b"][None, :] - y) ** 2)


@pytest.fixture
def mlp_problem():
    """``(params, loss_fn)``: a 2-layer MLP on a fixed regression batch; ``loss_fn(params)``."""
    kx, kp = jax.random.split(jax.random.key(42))
    x = jax.random.normal(kx, (16, 3))
    y = jnp.sin(x[:, :1]) + 0.5 * x[:, 1:2]

    def loss_fn(params):
        return mlp_loss(params, x, y)

    return mlp_init(kp), loss_fn
