"""Random quadratic functions (the L2L synthetic problem)."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp

from learned_opt.tasks import _nn
from learned_opt.tasks.base import PyTree, TaskFamily, integer, real


@dataclasses.dataclass(frozen=True)
class Quadratic(TaskFamily):
    """Minimise ``f(θ) = ||Wθ - y||²`` (a sum of squares) for a random ``W`` and ``y``.

    Each task draws ``W (dim, dim)`` and ``y (dim,)`` with standard normal entries
    (``task_params = {"w": W, "y": y}``); ``θ₀ = init_scale · N(0, I)``. The loss is
    deterministic, so ``batch`` returns ``()``. The L2L paper draws ``W`` and ``y`` i.i.d.
    Gaussian; its official code draws them ``U[0, 1)`` and starts from ``θ₀ ~ N(0, 0.01²)``
    (``init_scale=0.01``).

    Args:
        dim: number of parameters (10 in the paper).
        init_scale: standard deviation of the initial parameters.

    References:
        Andrychowicz et al. 2016, "Learning to learn by gradient descent by gradient descent",
        section 3.1.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from learned_opt.tasks import Quadratic
        >>> family = Quadratic(dim=10)
        >>> task_params = family.sample(jax.random.key(0))
        >>> theta = family.init(task_params, jax.random.key(1))
        >>> theta.shape, theta.dtype, family.batch(task_params, jax.random.key(2))
        ((10,), dtype('float32'), ())
        >>> solution = jnp.linalg.solve(task_params["w"], task_params["y"])
        >>> bool(family.loss(task_params, solution, ()) < 1e-6)
        True
    """

    name: ClassVar[str] = "quadratic"

    dim: int = 10
    init_scale: float = 1.0

    def __post_init__(self) -> None:
        integer("dim", self.dim, minimum=1)
        real("init_scale", self.init_scale, minimum=0.0)

    def sample(self, key: jax.Array) -> PyTree:
        draws = _nn.normal(key, (self.dim + 1, self.dim))
        return {"w": draws[:-1], "y": draws[-1]}

    def init(self, task_params: PyTree, key: jax.Array) -> PyTree:
        return self.init_scale * jax.random.normal(key, (self.dim,), jnp.float32)

    def batch(self, task_params: PyTree, key: jax.Array) -> PyTree:
        return ()

    def loss(self, task_params: PyTree, params: PyTree, batch: PyTree) -> jax.Array:
        residual = task_params["w"] @ params - task_params["y"]
        return jnp.sum(residual**2)
