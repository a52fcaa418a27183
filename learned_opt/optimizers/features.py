"""Per-coordinate input features shared by the learned optimizers, and safe numerics for them.

Everything here is differentiable to any order (meta-training may take second derivatives),
survives non-finite inputs without spreading them, and neither overflows nor underflows over the
float32 range.
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp

Preprocess = Literal["log_sign", "none", "omit"]
GRADIENT_PREPROCESSING: tuple[Preprocess, ...] = ("log_sign", "none", "omit")
#: Number of gradient features each preprocessing gives.
GRADIENT_FEATURES: dict[str, int] = {"log_sign": 2, "none": 1, "omit": 0}

#: Half-width of the soft clip of the loss feature.
LOSS_FEATURE_BOUND = 5.0


def safe_sqrt(x: jax.Array) -> jax.Array:
    """``sqrt(x)`` for ``x >= 0`` with a finite derivative at 0 (there it is 0, not infinite).

    ``jnp.sqrt`` has an infinite derivative at 0, so the meta-gradient of anything that takes the
    root of a second moment that can be exactly 0 (a frozen or masked parameter's gradient) is
    NaN once second derivatives are taken. Negative inputs give 0.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from learned_opt.optimizers.features import safe_sqrt
        >>> d1, d2 = jax.grad(safe_sqrt), jax.grad(jax.grad(safe_sqrt))
        >>> float(safe_sqrt(4.0)), float(d1(0.0)), float(d2(0.0))
        (2.0, 0.0, 0.0)
    """
    x = jnp.asarray(x)
    positive = x > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, x, 1.0)), 0.0)


def finite_mean(x: jax.Array) -> jax.Array:
    """Mean of the finite entries of ``x`` (0 if there are none); a NaN entry spreads nowhere.

    Example:
        >>> import jax.numpy as jnp
        >>> from learned_opt.optimizers.features import finite_mean
        >>> float(finite_mean(jnp.array([1.0, 3.0, jnp.nan])))
        2.0
    """
    finite = jnp.isfinite(x)
    total = jnp.sum(jnp.where(finite, x, 0.0))
    return total / jnp.maximum(jnp.sum(finite), 1).astype(total.dtype)


def tensor_rms(x: jax.Array, eps: float = 1e-30) -> jax.Array:
    """Root mean square of the finite entries of a tensor, floored at ``eps`` (a scalar)."""
    return safe_sqrt(finite_mean(jnp.square(x))) + eps


def trailing(values: jax.Array, ndim: int) -> jax.Array:
    """A vector ``(k,)`` as ``(1, ..., 1, k)`` with ``ndim`` leading axes (explicit broadcast)."""
    return values.reshape((1,) * ndim + values.shape)


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


def gradient_features(g: jax.Array, preprocess: Preprocess, p: float) -> jax.Array:
    """Features of a gradient array, ``g.shape + (k,)``: the log/sign pair, the raw value, or
    none (``"omit"``: for optimizers whose scale-free inputs come from elsewhere)."""
    if preprocess == "log_sign":
        return log_sign(g, p)
    if preprocess == "omit":
        return jnp.zeros((*g.shape, 0), jnp.float32)
    return g[..., None].astype(jnp.float32)


#: Per-step decay of the warm start of the loss feature's scale.
LOSS_PRIOR_DECAY = 0.5


class LossStats(NamedTuple):
    """Running statistics of the loss.

    Attributes:
        mean: EMA of the loss (started at the first loss).
        std: square root of the EMA of squared deviations from ``mean`` (started at 0).
        first: magnitude of the first loss, the warm start of the feature's scale.
        count: finite losses seen (non-finite losses are not counted).
    """

    mean: jax.Array
    std: jax.Array
    first: jax.Array
    count: jax.Array  # type: ignore[assignment]  # optax\'s name; shadows tuple.count


def init_loss_stats() -> LossStats:
    """Statistics before the first loss."""
    zero = jnp.zeros((), jnp.float32)
    return LossStats(zero, zero, zero, jnp.zeros((), jnp.int32))


def loss_feature(
    stats: LossStats, loss: jax.Array | float, decay: float = 0.9
) -> tuple[jax.Array, LossStats]:
    """A loss input invariant to the loss's scale and offset, robust to non-finite losses.

    The feature is the loss's deviation from the running (EMA) mean over a running scale,
    soft-clipped to ``±5`` (``5 tanh(z / 5)``). The scale is the EMA standard deviation of the
    losses plus a warm start, ``|L_0| 0.5^t``, that fades within a few steps: on the second step
    the feature is ``(L_1 - L_0) / (|L_0| / 2)``. So the feature is a continuous function of the
    losses from the first step on, and a meta-gradient through it is well behaved. It is 0 on the
    first step.

    Multiplying every loss by ``a > 0`` leaves the feature unchanged; adding a constant changes it
    only through the warm start. All arithmetic is done relative to
    ``max(|L|, |mean|, std, warm start)``, so losses anywhere in the float32 range (1e-30 or
    1e30, and jumps between them) neither overflow nor underflow. A non-finite loss gives the
    feature 0 and leaves the statistics untouched, so one bad step does not poison later ones.

    Args:
        stats: the running statistics.
        loss: the current scalar loss.
        decay: EMA decay of the statistics.

    Returns:
        ``(feature, new_stats)``, the feature a float32 scalar.

    Example:
        >>> import jax.numpy as jnp
        >>> from learned_opt.optimizers.features import init_loss_stats, loss_feature
        >>> def features(losses):
        ...     stats, out = init_loss_stats(), []
        ...     for loss in losses:
        ...         value, stats = loss_feature(stats, loss)
        ...         out.append(round(float(value), 4))
        ...     return out
        >>> features([2.0, 1.8, 1.7]) == features([2e-30, 1.8e-30, 1.7e-30])
        True
        >>> features([2.0, float("inf"), 1.8])  # the inf step is skipped
        [0.0, 0.0, -0.1999]
    """
    loss = jnp.asarray(loss, jnp.float32)
    finite = jnp.isfinite(loss)
    loss = jnp.where(finite, loss, 0.0)
    first = stats.count == 0
    mean = jnp.where(first, loss, stats.mean)
    magnitude = jnp.where(first, jnp.abs(loss), stats.first)
    prior = magnitude * LOSS_PRIOR_DECAY ** stats.count.astype(jnp.float32)
    # Everything relative to c keeps the squares below in [0, 4]: no overflow, no underflow.
    c = jnp.maximum(jnp.maximum(jnp.abs(loss), jnp.abs(mean)), jnp.maximum(stats.std, prior))
    c = jnp.where(c > 0, c, 1.0)
    rel_loss, rel_mean, rel_std, rel_prior = loss / c, mean / c, stats.std / c, prior / c
    delta = rel_loss - rel_mean
    scale = safe_sqrt(rel_std**2 + rel_prior**2) + 1e-7 * jnp.abs(rel_mean) + 1e-30
    bound = LOSS_FEATURE_BOUND
    feature = jnp.where(first | ~finite, 0.0, bound * jnp.tanh(delta / scale / bound))
    new_mean = c * (decay * rel_mean + (1.0 - decay) * rel_loss)
    rel_var = decay * (rel_std**2 + (1.0 - decay) * delta**2)
    new_std = jnp.minimum(c * safe_sqrt(rel_var), jnp.finfo(jnp.float32).max)
    updated = LossStats(new_mean, new_std, magnitude, stats.count + 1)
    new_stats = jax.tree.map(lambda new, old: jnp.where(finite, new, old), updated, stats)
    return feature, new_stats


class Moments(NamedTuple):
    """EMAs of a gradient array and of its square.

    Attributes:
        mu: gradient EMAs, ``g.shape + (len(decays),)``.
        nu: squared-gradient EMA, ``g.shape``.
    """

    mu: Any
    nu: Any


def normalized_features(
    moments: Moments,
    g: jax.Array,
    count: jax.Array,
    decays: tuple[float, ...] = (0.95,),
    rms_decay: float = 0.95,
    eps: float = 1e-8,
) -> tuple[jax.Array, Moments]:
    """Scale-free inputs after Lv et al. (2017): ``g / sqrt(v)`` and ``m_b / sqrt(v)`` per decay.

    ``m_b`` (one per ``decays``) and ``v`` are bias-corrected EMAs of ``g`` and ``g**2``; with the
    defaults (one decay of 0.95 for both) these are RNNprop's two inputs. All are invariant to
    rescaling the loss. ``count`` is the number of the current step (1 on the first).

    Returns:
        ``(features g.shape + (1 + len(decays),), new_moments)``.

    Example:
        >>> import jax.numpy as jnp
        >>> from learned_opt.optimizers.features import Moments, normalized_features
        >>> g = jnp.array([2.0, -0.5, 0.0])
        >>> moments = Moments(jnp.zeros((3, 1)), jnp.zeros(3))
        >>> feats, _ = normalized_features(moments, g, jnp.int32(1))
        >>> feats.shape, [round(float(v), 4) for v in feats[:, 0]]
        ((3, 2), [1.0, -1.0, 0.0])

    References:
        Lv, Jiang & Li, "Learning gradient descent: better generalization and longer horizons",
        ICML 2017.
    """
    t = count.astype(jnp.float32)
    beta = trailing(jnp.asarray(decays, jnp.float32), g.ndim)
    mu = beta * moments.mu + (1.0 - beta) * g[..., None]
    nu = rms_decay * moments.nu + (1.0 - rms_decay) * jnp.square(g)
    rms = safe_sqrt(nu / (1.0 - rms_decay**t)) + eps
    m_hat = mu / (1.0 - beta**t)
    feats = jnp.concatenate([(g / rms)[..., None], m_hat / rms[..., None]], axis=-1)
    return feats, Moments(mu, nu)
