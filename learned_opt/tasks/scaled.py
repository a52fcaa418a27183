"""A task family whose loss is another family's, multiplied by a constant."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import jax

from learned_opt.tasks.base import PyTree, TaskFamily, check


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
        check(self.scale > 0, f"scale: must be > 0, got {self.scale}")

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
