"""Per-coordinate input features shared by the learned optimizers."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

GRADIENT_PREPROCESSING = ("log_sign", "none")


def log_sign(g: jax.Array, p: float = 10.0) -> jax.Array:
    """The log-magnitude / sign gradient preprocessing of Andrychowicz et al. (2016), Appendix A.

    Each coordinate becomes the pair ``(log|g| / p, sign g)`` if ``|g| >= exp(-p)`` and
    ``(-1, exp(p) g)`` otherwise, so gradients spanning many orders of magnitude reach the
    network on a common scale.

    Args:
        g: gradients, any shape.
        p: the cut-off exponent (10 in the paper).

    Returns:
        An array of shape ``g.shape + (2,)``.

    Example:
        >>> import jax.numpy as jnp
        >>> from learned_opt.optimizers.features import log_sign
        >>> [[round(float(v), 3) for v in row] for row in log_sign(jnp.array([1.0, -1e-6]))]
        [[0.0, 1.0], [-1.0, -0.022]]

    References:
        Andrychowicz et al., "Learning to learn by gradient descent by gradient descent", 2016.
    """
    g = g.astype(jnp.float32)
    big = jnp.abs(g) >= jnp.exp(-p)
    safe = jnp.where(big, jnp.abs(g), 1.0)
    first = jnp.where(big, jnp.log(safe) / p, -1.0)
    second = jnp.where(big, jnp.sign(g), jnp.exp(p) * g)
    return jnp.stack([first, second], axis=-1)


def gradient_features(g: jax.Array, preprocess: str, p: float) -> jax.Array:
    """Returns ``(N, k)`` features of a flat gradient vector: log/sign pair or the raw value."""
    if preprocess == "log_sign":
        return log_sign(g, p)
    if preprocess == "none":
        return g[:, None].astype(jnp.float32)
    raise ValueError(f"preprocess: expected one of {GRADIENT_PREPROCESSING}, got {preprocess!r}")


class LossStats(NamedTuple):
    """Running mean and variance of the loss (exponential moving averages)."""

    mean: jax.Array
    var: jax.Array
    count: jax.Array


def init_loss_stats() -> LossStats:
    return LossStats(
        jnp.zeros((), jnp.float32), jnp.zeros((), jnp.float32), jnp.zeros((), jnp.int32)
    )


def loss_feature(
    stats: LossStats, loss: jax.Array, decay: float = 0.9
) -> tuple[jax.Array, LossStats]:
    """A loss input invariant to the loss's scale and offset.

    The feature is the loss's z-score against running (EMA) statistics of the losses seen so far,
    clipped to ``[-5, 5]``: ``(L - mean) / std``. Multiplying the loss by ``a > 0`` and adding ``b``
    leaves it unchanged (up to the tiny stabiliser in the denominator). It is 0 on the first step.

    Args:
        stats: the running statistics.
        loss: the current scalar loss.
        decay: EMA decay of the statistics.

    Returns:
        ``(feature, new_stats)``, the feature a float32 scalar.
    """
    loss = jnp.asarray(loss, jnp.float32)
    first = stats.count == 0
    mean = jnp.where(first, loss, stats.mean)
    positive = stats.var > 0  # sqrt has an infinite derivative at 0: keep it out of the graph
    std = jnp.where(positive, jnp.sqrt(jnp.where(positive, stats.var, 1.0)), 0.0)
    scale = std + 1e-7 * jnp.abs(mean) + 1e-30
    feature = jnp.where(first, 0.0, jnp.clip((loss - mean) / scale, -5.0, 5.0))
    delta = loss - mean
    new_mean = mean + (1.0 - decay) * delta
    new_var = decay * (stats.var + (1.0 - decay) * delta**2)
    return feature, LossStats(new_mean, new_var, stats.count + 1)


class Moments(NamedTuple):
    """Per-coordinate EMAs of the gradient and its square, and the step count."""

    mu: jax.Array
    nu: jax.Array
    count: jax.Array


def init_moments(num_coordinates: int) -> Moments:
    shape = (num_coordinates,)
    return Moments(
        jnp.zeros(shape, jnp.float32), jnp.zeros(shape, jnp.float32), jnp.zeros((), jnp.int32)
    )


def normalized_features(
    moments: Moments, g: jax.Array, decay: float = 0.95, eps: float = 1e-8
) -> tuple[jax.Array, Moments]:
    """The scale-free RNNprop inputs of Lv et al. (2017): ``g / sqrt(v)`` and ``m / sqrt(v)``.

    ``m`` and ``v`` are bias-corrected EMAs of ``g`` and ``g**2`` with the same ``decay`` (0.95
    in the paper). Both features are invariant to rescaling the loss.

    Returns:
        ``(features (N, 2), new_moments)``.

    References:
        Lv, Jiang & Li, "Learning gradient descent: better generalization and longer horizons",
        ICML 2017.
    """
    count = moments.count + 1
    mu = decay * moments.mu + (1.0 - decay) * g
    nu = decay * moments.nu + (1.0 - decay) * g**2
    correction = 1.0 - decay ** count.astype(jnp.float32)
    rms = jnp.sqrt(nu / correction) + eps
    feats = jnp.stack([g / rms, mu / correction / rms], axis=-1)
    return feats, Moments(mu, nu, count)
