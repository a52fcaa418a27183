"""Linear least-squares and logistic regression on synthetic data drawn per task."""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Literal

import jax
import jax.numpy as jnp

from learned_opt import _checks
from learned_opt.tasks import _nn
from learned_opt.tasks.base import PyTree, TaskFamily

KINDS = ("least_squares", "logistic")


@dataclasses.dataclass(frozen=True)
class Regression(TaskFamily):
    """A linear model ``x·w + b`` fitted to a synthetic data set that each task draws.

    Each task draws ``num_examples`` standard-normal latent features ``z`` (``num_features``
    of them), a per-feature scale ``s_j = exp(U[-feature_log_scale, feature_log_scale])``
    (the features are ``x = s · z``, unnormalised), and a true weight ``w* ~ N(0, I / d)`` so
    that the signal ``u = z·w*`` has unit variance. Then

    * ``"least_squares"``: targets ``y = target_scale · (u + noise_std · ε)``, loss the mean
      squared error. The loss at ``w = 0`` is about ``target_scale² (1 + noise_std²)`` and the
      least-squares solution leaves about ``target_scale² noise_std² (1 - (d + 1) / n)``, so
      ``target_scale`` sets the scale of the loss;
    * ``"logistic"``: labels ``y ~ Bernoulli(sigmoid(target_scale · u))``, loss the mean
      binary cross-entropy of the logits ``x·w + b`` (``log 2`` at ``w = 0``); a large
      ``target_scale`` makes the classes nearly separable. ``noise_std`` is not used.

    ``task_params`` is ``{"x": f32[n, d], "y": f32[n]}`` and ``params`` is
    ``{"w": f32[d], "b": f32[]}``, both zero at initialisation (so the init key is unused).
    With ``batch_size=None`` (the default) the loss is the full-data loss and ``batch``
    returns ``()``; otherwise each minibatch is ``batch_size`` of the task's examples drawn
    with replacement (their indices). ``eval_loss`` is always the full-data loss.

    Args:
        kind: ``"least_squares"`` or ``"logistic"``.
        num_features: ``d``, the number of features.
        num_examples: ``n``, the number of examples of each task.
        feature_log_scale: half-width of the uniform range of ``log s_j``.
        target_scale: scale of the targets (least squares) or of the true logits (logistic).
        noise_std: standard deviation of the target noise relative to the signal (least
            squares only).
        batch_size: examples per minibatch, or ``None`` for the full (deterministic) loss.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from learned_opt.tasks import Regression
        >>> family = Regression("least_squares", num_features=4, target_scale=100.0)
        >>> task_params = family.sample(jax.random.key(0))
        >>> task_params["x"].shape, family.init(task_params, jax.random.key(1))["w"].shape
        ((256, 4), (4,))
        >>> x1 = jnp.concatenate([task_params["x"], jnp.ones((256, 1))], axis=1)
        >>> solution = jnp.linalg.lstsq(x1, task_params["y"])[0]
        >>> params = {"w": solution[:4], "b": solution[4]}
        >>> at_zero = family.loss(task_params, family.init(task_params, jax.random.key(1)), ())
        >>> bool(at_zero > 5e3), bool(family.loss(task_params, params, ()) < 1e2)
        (True, True)
    """

    name: ClassVar[str] = "regression"

    kind: Literal["least_squares", "logistic"] = "least_squares"
    num_features: int = 16
    num_examples: int = 256
    feature_log_scale: float = 1.0
    target_scale: float = 1.0
    noise_std: float = 0.1
    batch_size: int | None = None

    def __post_init__(self) -> None:
        _checks.choice("kind", self.kind, KINDS)
        object.__setattr__(
            self, "num_features", _checks.integer("num_features", self.num_features, minimum=1)
        )
        object.__setattr__(
            self, "num_examples", _checks.integer("num_examples", self.num_examples, minimum=1)
        )
        for field in ("feature_log_scale", "noise_std"):
            object.__setattr__(self, field, _checks.real(field, getattr(self, field), minimum=0.0))
        object.__setattr__(
            self,
            "target_scale",
            _checks.real("target_scale", self.target_scale, minimum=0.0, inclusive=False),
        )
        if self.batch_size is not None:
            object.__setattr__(
                self, "batch_size", _checks.integer("batch_size", self.batch_size, minimum=1)
            )

    def sample(self, key: jax.Array) -> PyTree:
        n, d = self.num_examples, self.num_features
        k_z, k_scale, k_w, k_noise = jax.random.split(key, 4)
        z = _nn.normal(k_z, (n, d))
        s = self.feature_log_scale
        scales = jnp.exp(jax.random.uniform(k_scale, (d,), jnp.float32, -s, s))
        signal = z @ (_nn.normal(k_w, (d,)) / jnp.sqrt(jnp.float32(d)))
        if self.kind == "least_squares":
            y = self.target_scale * (signal + self.noise_std * _nn.normal(k_noise, (n,)))
        else:
            p = jax.nn.sigmoid(self.target_scale * signal)
            y = jax.random.bernoulli(k_noise, p).astype(jnp.float32)
        return {"x": z * scales[None, :], "y": y}

    def init(self, task_params: PyTree, key: jax.Array) -> PyTree:
        return {"w": jnp.zeros(self.num_features, jnp.float32), "b": jnp.zeros((), jnp.float32)}

    def batch(self, task_params: PyTree, key: jax.Array) -> PyTree:
        if self.batch_size is None:
            return ()
        return jax.random.randint(key, (self.batch_size,), 0, self.num_examples)

    def loss(self, task_params: PyTree, params: PyTree, batch: PyTree) -> jax.Array:
        x, y = task_params["x"], task_params["y"]
        if self.batch_size is not None:
            x, y = x[batch], y[batch]
        return self._error(params, x, y)

    def eval_loss(self, task_params: PyTree, params: PyTree) -> jax.Array:
        return self._error(params, task_params["x"], task_params["y"])

    def _error(self, params: PyTree, x: jax.Array, y: jax.Array) -> jax.Array:
        prediction = x @ params["w"] + params["b"]
        if self.kind == "least_squares":
            return _nn.mean_squared_error(prediction, y)
        # Binary cross-entropy of the logits: softplus(z) - y z.
        return jnp.mean(jax.nn.softplus(prediction) - y * prediction)
