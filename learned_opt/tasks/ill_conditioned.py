"""Ill-conditioned problems for testing an optimizer's robustness to curvature and scale."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp

from learned_opt.tasks import _nn
from learned_opt.tasks.base import PyTree, TaskFamily, boolean, float_range, integer, real


def random_rotation(key: jax.Array, dim: int) -> jax.Array:
    """A Haar-distributed random orthogonal ``(dim, dim)`` matrix (QR with sign correction)."""
    q, r = jnp.linalg.qr(_nn.normal(key, (dim, dim)))
    return q * jnp.sign(jnp.diagonal(r))[None, :]


@dataclasses.dataclass(frozen=True)
class ScaledQuadratic(TaskFamily):
    """Minimise ``f(θ) = ½ (θ - c)ᵀ Rᵀ diag(λ) R (θ - c)`` with condition number ``10^κ``.

    Each task draws the eigenvalues ``λ`` log-uniformly over ``[10^-κ, 1]`` (one is exactly
    ``1`` and one exactly ``10^-κ``, so every task has condition number ``10^κ``, in random
    order), a centre ``c ~ N(0, I)`` and, with ``rotate=True``, a random rotation ``R``;
    otherwise ``R = I`` and each coordinate has its own curvature. ``task_params`` holds
    ``"eigenvalues"``, ``"center"`` and (if rotated) ``"rotation"``. The minimum is ``0`` at
    ``c``; gradient descent is stable for learning rates below 2. ``θ₀ = init_scale · N(0, I)``
    and ``batch`` is ``()``.

    Args:
        dim: number of parameters.
        log10_condition: ``κ``, the base-10 logarithm of the condition number.
        rotate: rotate the eigenbasis randomly (otherwise the problem is axis-aligned).
        init_scale: standard deviation of the initial parameters.

    References:
        Wichrowska et al. 2017, "Learned optimizers that scale and generalize" (its ensemble of
        rescaled and ill-conditioned problems); Lv et al. 2017, "Learning gradient descent:
        better generalization and longer horizons" (random scaling).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from learned_opt.tasks import ScaledQuadratic
        >>> family = ScaledQuadratic(dim=5, log10_condition=3.0)
        >>> task_params = family.sample(jax.random.key(0))
        >>> eigenvalues = task_params["eigenvalues"]
        >>> round(float(jnp.log10(eigenvalues.max() / eigenvalues.min())), 3)
        3.0
        >>> float(family.loss(task_params, task_params["center"], ()))
        0.0
    """

    name: ClassVar[str] = "scaled_quadratic"

    dim: int = 10
    log10_condition: float = 3.0
    rotate: bool = True
    init_scale: float = 1.0

    def __post_init__(self) -> None:
        integer("dim", self.dim, minimum=1)
        real("log10_condition", self.log10_condition, minimum=0.0)
        boolean("rotate", self.rotate)
        real("init_scale", self.init_scale, minimum=0.0)

    def sample(self, key: jax.Array) -> PyTree:
        spread_key, center_key, rotation_key = jax.random.split(key, 3)
        # Exponents in [0, 1], uniform in random order; rescaled so that the smallest is 0 and
        # the largest 1, which makes the condition number exact.
        u = jax.random.uniform(spread_key, (self.dim,), jnp.float32)
        if self.dim > 1:
            exponents = (u - u.min()) / (u.max() - u.min())
        else:
            exponents = jnp.zeros_like(u)
        task_params = {
            "eigenvalues": 10.0 ** (-self.log10_condition * exponents),
            "center": _nn.normal(center_key, (self.dim,)),
        }
        if self.rotate:
            task_params["rotation"] = random_rotation(rotation_key, self.dim)
        return task_params

    def init(self, task_params: PyTree, key: jax.Array) -> PyTree:
        return self.init_scale * jax.random.normal(key, (self.dim,), jnp.float32)

    def batch(self, task_params: PyTree, key: jax.Array) -> PyTree:
        return ()

    def loss(self, task_params: PyTree, params: PyTree, batch: PyTree) -> jax.Array:
        z = params - task_params["center"]
        if self.rotate:
            z = task_params["rotation"] @ z
        return 0.5 * jnp.sum(task_params["eigenvalues"] * z**2)


@dataclasses.dataclass(frozen=True)
class Rosenbrock(TaskFamily):
    """Minimise the ``dim``-dimensional Rosenbrock function from a random start.

    ``f(θ) = Σ_{i<dim-1} b (θ_{i+1} - θ_i²)² + (a - θ_i)²``, a curved narrow valley with its
    minimum ``0`` at ``θ = (1, ..., 1)`` for the default ``a = 1, b = 100`` (at ``(a, a²)``
    when ``dim = 2``). The
    coefficients are the ``task_params`` (``{"a": f32[], "b": f32[]}``, the same for every task);
    tasks differ in the start ``θ₀ ~ U[box]^dim`` drawn by the init key. ``batch`` is ``()``.

    Args:
        dim: number of parameters (at least 2).
        a: the coefficient ``a``.
        b: the coefficient ``b`` (the valley's steepness).
        box: ``(low, high)`` of the uniform start.

    References:
        Rosenbrock 1960, "An automatic method for finding the greatest or least value of a
        function"; used as a learned-optimizer test problem by Wichrowska et al. 2017,
        "Learned optimizers that scale and generalize".

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from learned_opt.tasks import Rosenbrock
        >>> family = Rosenbrock(dim=3)
        >>> task_params = family.sample(jax.random.key(0))
        >>> float(family.loss(task_params, jnp.ones(3), ()))
        0.0
        >>> float(family.loss(task_params, jnp.zeros(3), ()))
        2.0
    """

    name: ClassVar[str] = "rosenbrock"

    dim: int = 2
    a: float = 1.0
    b: float = 100.0
    box: tuple[float, float] = (-2.0, 2.0)

    def __post_init__(self) -> None:
        integer("dim", self.dim, minimum=2)
        real("a", self.a)
        real("b", self.b)
        object.__setattr__(self, "box", float_range("box", self.box))

    def sample(self, key: jax.Array) -> PyTree:
        return {"a": jnp.asarray(self.a, jnp.float32), "b": jnp.asarray(self.b, jnp.float32)}

    def init(self, task_params: PyTree, key: jax.Array) -> PyTree:
        return jax.random.uniform(key, (self.dim,), jnp.float32, *self.box)

    def batch(self, task_params: PyTree, key: jax.Array) -> PyTree:
        return ()

    def loss(self, task_params: PyTree, params: PyTree, batch: PyTree) -> jax.Array:
        head, tail = params[:-1], params[1:]
        valley = task_params["b"] * (tail - head**2) ** 2
        return jnp.sum(valley + (task_params["a"] - head) ** 2)
