"""Task families that rescale another family: its loss (``ScaledLoss``) or its coordinates
(``RandomScaling``)."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from learned_opt.tasks.base import PyTree, TaskFamily, real


@dataclasses.dataclass(frozen=True)
class ScaledLoss(TaskFamily):
    """``family``'s tasks with the loss multiplied by ``scale``: a robustness check.

    A well-behaved optimizer should neither diverge nor stall when the objective is rescaled
    (SGD's effective step changes by ``scale``; Adam's does not).

    Args:
        family: the family to rescale.
        scale: the positive factor.

    Example:
        >>> import jax
        >>> from learned_opt.tasks import Quadratic, ScaledLoss
        >>> base = Quadratic(dim=3)
        >>> tp = base.sample(jax.random.key(0))
        >>> theta = base.init(tp, jax.random.key(1))
        >>> ratio = ScaledLoss(base, 10.0).loss(tp, theta, ()) / base.loss(tp, theta, ())
        >>> round(float(ratio), 4)
        10.0
    """

    name: ClassVar[str] = "scaled_loss"
    family: TaskFamily
    scale: float = 1.0

    def __post_init__(self) -> None:
        _check_family(self.family)
        real("scale", self.scale, minimum=0.0, inclusive=False)

    def sample(self, key: jax.Array) -> PyTree:
        return self.family.sample(key)

    def init(self, task_params: PyTree, key: jax.Array) -> PyTree:
        return self.family.init(task_params, key)

    def batch(self, task_params: PyTree, key: jax.Array) -> PyTree:
        return self.family.batch(task_params, key)

    def loss(self, task_params: PyTree, params: PyTree, batch: PyTree) -> jax.Array:
        return self.scale * self.family.loss(task_params, params, batch)

    def eval_loss(self, task_params: PyTree, params: PyTree) -> jax.Array:
        return self.scale * self.family.eval_loss(task_params, params)

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "family": self.family.config(), "scale": self.scale}


@dataclasses.dataclass(frozen=True)
class RandomScaling(TaskFamily):
    """``family``'s tasks with every parameter coordinate rescaled at random.

    Each task draws a scale ``c = exp(u)``, ``u ~ U[-max_log_scale, max_log_scale]``, for every
    coordinate and optimises ``f(c * theta)`` from ``theta_0 / c``: the same problem, badly
    conditioned in a different way per task. Meta-training on it keeps a learned optimizer
    from relying on the gradient scales of its training family.

    ``task_params`` is ``{"task": <family's task_params>, "scales": <tree like params>}``.

    Args:
        family: the family to rescale.
        max_log_scale: half-width of the uniform range of ``log c`` (3 in the paper).

    References:
        Lv, Jiang & Li 2017, "Learning gradient descent: better generalization and longer
        horizons" (random scaling).

    Example:
        >>> import jax
        >>> from learned_opt.tasks import Quadratic, RandomScaling
        >>> family = RandomScaling(Quadratic(dim=3))
        >>> tp = family.sample(jax.random.key(0))
        >>> theta = family.init(tp, jax.random.key(1))
        >>> same = family.family.loss(tp["task"], tp["scales"] * theta, ())
        >>> bool(family.loss(tp, theta, ()) == same)
        True
    """

    name: ClassVar[str] = "random_scaling"
    family: TaskFamily
    max_log_scale: float = 3.0

    def __post_init__(self) -> None:
        _check_family(self.family)
        real("max_log_scale", self.max_log_scale, minimum=0.0)

    def sample(self, key: jax.Array) -> PyTree:
        k_task, k_scale = jax.random.split(key)
        task = self.family.sample(k_task)
        shapes = jax.eval_shape(self.family.init, task, k_scale)
        leaves, treedef = jax.tree.flatten(shapes)
        keys = jax.random.split(k_scale, len(leaves))
        s = self.max_log_scale
        scales = [
            jnp.exp(jax.random.uniform(k, self._scale_shape(leaf), jnp.float32, -s, s)).astype(
                leaf.dtype
            )
            for k, leaf in zip(keys, leaves, strict=True)
        ]
        return {"task": task, "scales": jax.tree.unflatten(treedef, scales)}

    def _scale_shape(self, leaf: jax.ShapeDtypeStruct) -> tuple[int, ...]:
        """Shape of the scales of one parameter leaf: one scale per coordinate."""
        return leaf.shape

    def _unscaled(self, task_params: PyTree, params: PyTree) -> PyTree:
        return jax.tree.map(jnp.multiply, task_params["scales"], params)

    def init(self, task_params: PyTree, key: jax.Array) -> PyTree:
        params = self.family.init(task_params["task"], key)
        return jax.tree.map(jnp.divide, params, task_params["scales"])

    def batch(self, task_params: PyTree, key: jax.Array) -> PyTree:
        return self.family.batch(task_params["task"], key)

    def loss(self, task_params: PyTree, params: PyTree, batch: PyTree) -> jax.Array:
        return self.family.loss(task_params["task"], self._unscaled(task_params, params), batch)

    def eval_loss(self, task_params: PyTree, params: PyTree) -> jax.Array:
        return self.family.eval_loss(task_params["task"], self._unscaled(task_params, params))

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "family": self.family.config(),
            "max_log_scale": self.max_log_scale,
        }


def _check_family(family: object) -> None:
    if not isinstance(family, TaskFamily):
        raise TypeError(f"family: expected a TaskFamily, got {type(family).__name__}")
