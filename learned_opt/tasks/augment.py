"""Task augmentations: wrapper families that randomise the scale of another family per task.

Each wrapper draws its random factors in ``sample`` (so they are part of ``task_params`` and a
batch of tasks stays one vmapped program) and wraps any family, another wrapper included::

    family = RandomLossScale(RandomInitScale(RandomTensorScaling(MLP())))

Meta-training on augmented tasks keeps a learned optimizer from relying on the scale of any
parameter tensor, of the loss or of the initialisation of its training problems.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from learned_opt import _checks
from learned_opt.tasks.base import PyTree, TaskFamily
from learned_opt.tasks.scaled import RandomScaling


def check_family(value: Any) -> None:
    """Raises ``TypeError`` unless ``value`` is a :class:`TaskFamily` (the wrapped family)."""
    if not isinstance(value, TaskFamily):
        raise TypeError(f"family: expected a TaskFamily, got {value!r}")


def log_uniform(key: jax.Array, max_log_scale: float, shape: tuple[int, ...] = ()) -> jax.Array:
    """``exp(u)`` with ``u ~ U[-max_log_scale, max_log_scale]`` (float32)."""
    s = max_log_scale
    return jnp.exp(jax.random.uniform(key, shape, jnp.float32, -s, s))


@dataclasses.dataclass(frozen=True)
class RandomTensorScaling(RandomScaling):
    """``family``'s tasks with every parameter tensor rescaled by its own random factor.

    Each task draws one scale ``c = exp(u)``, ``u ~ U[-max_log_scale, max_log_scale]``, per
    parameter leaf and optimises ``f(c · θ)`` from ``θ₀ / c``: the same problem seen through a
    per-tensor reparameterisation. The optimizer sees ``θ / c``, and the gradient it sees is
    ``c · ∇f(c · θ)`` (chain rule), so tensors differ in gradient scale by up to
    ``exp(2 · max_log_scale)``. Unlike :class:`RandomScaling` (one factor per coordinate), the
    relative scales within a tensor are untouched.

    ``task_params`` is ``{"task": <family's task_params>, "scales": <tree of f32[] like params>}``.

    Args:
        family: the family to reparameterise.
        max_log_scale: half-width of the uniform range of ``log c``.

    References:
        Moudgil, Knyazev & Belilovsky 2026 ("Celo2", ICLR): task augmentation by random
        reparameterisation.

    Example:
        >>> import jax
        >>> from learned_opt.tasks import MLP, RandomTensorScaling
        >>> family = RandomTensorScaling(MLP(hidden_sizes=(8,)), max_log_scale=2.0)
        >>> tp = family.sample(jax.random.key(0))
        >>> [layer["w"].shape for layer in tp["scales"]]
        [(), ()]
        >>> theta = family.family.init(tp["task"], jax.random.key(1))
        >>> c_theta = jax.tree.map(lambda c, p: p / c, tp["scales"], theta)
        >>> batch = family.batch(tp, jax.random.key(2))
        >>> same = family.loss(tp, c_theta, batch) - family.family.loss(tp["task"], theta, batch)
        >>> abs(float(same)) < 1e-6
        True
    """

    name: ClassVar[str] = "random_tensor_scaling"

    def __post_init__(self) -> None:
        check_family(self.family)
        object.__setattr__(
            self, "max_log_scale", _checks.real("max_log_scale", self.max_log_scale, minimum=0.0)
        )
        super().__post_init__()

    def _scale_shape(self, leaf: jax.ShapeDtypeStruct) -> tuple[int, ...]:
        return ()


@dataclasses.dataclass(frozen=True)
class _PerTaskScale(TaskFamily):
    """A wrapper that draws one log-uniform factor per task and otherwise defers to ``family``.

    ``task_params`` is ``{"task": <family's task_params>, "scale": f32[]}``.
    """

    family: TaskFamily
    max_log_scale: float = 3.0

    def __post_init__(self) -> None:
        check_family(self.family)
        object.__setattr__(
            self, "max_log_scale", _checks.real("max_log_scale", self.max_log_scale, minimum=0.0)
        )

    def sample(self, key: jax.Array) -> PyTree:
        k_task, k_scale = jax.random.split(key)
        scale = log_uniform(k_scale, self.max_log_scale)
        return {"task": self.family.sample(k_task), "scale": scale}

    def init(self, task_params: PyTree, key: jax.Array) -> PyTree:
        return self.family.init(task_params["task"], key)

    def batch(self, task_params: PyTree, key: jax.Array) -> PyTree:
        return self.family.batch(task_params["task"], key)

    def loss(self, task_params: PyTree, params: PyTree, batch: PyTree) -> jax.Array:
        return self.family.loss(task_params["task"], params, batch)

    def eval_loss(self, task_params: PyTree, params: PyTree) -> jax.Array:
        return self.family.eval_loss(task_params["task"], params)

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "family": self.family.config(),
            "max_log_scale": self.max_log_scale,
        }


@dataclasses.dataclass(frozen=True)
class RandomLossScale(_PerTaskScale):
    """``family``'s tasks with the loss multiplied by a random factor per task.

    Each task draws ``k = exp(u)``, ``u ~ U[-max_log_scale, max_log_scale]``, and its loss
    and ``eval_loss`` are ``k`` times the family's: the same minimiser, gradients ``k`` times
    larger. An optimizer invariant to the loss's scale (Adam, up to its epsilon) behaves the
    same on every task; SGD's effective step changes by ``k``.

    Args:
        family: the family whose loss to rescale.
        max_log_scale: half-width of the uniform range of ``log k``.

    Example:
        >>> import jax
        >>> from learned_opt.tasks import Quadratic, RandomLossScale
        >>> family = RandomLossScale(Quadratic(dim=3), max_log_scale=3.0)
        >>> tp = family.sample(jax.random.key(0))
        >>> theta = family.init(tp, jax.random.key(1))
        >>> ratio = family.loss(tp, theta, ()) / family.family.loss(tp["task"], theta, ())
        >>> bool(abs(ratio / tp["scale"] - 1) < 1e-6)
        True
    """

    name: ClassVar[str] = "random_loss_scale"

    def loss(self, task_params: PyTree, params: PyTree, batch: PyTree) -> jax.Array:
        return task_params["scale"] * super().loss(task_params, params, batch)

    def eval_loss(self, task_params: PyTree, params: PyTree) -> jax.Array:
        return task_params["scale"] * super().eval_loss(task_params, params)


@dataclasses.dataclass(frozen=True)
class RandomInitScale(_PerTaskScale):
    """``family``'s tasks started from the family's initialisation times a random factor.

    Each task draws ``a = exp(u)``, ``u ~ U[-max_log_scale, max_log_scale]``, and starts from
    ``a · θ₀`` (every parameter leaf); the loss is the family's. A family that starts from
    zero (e.g. :class:`~learned_opt.tasks.Regression`) is unchanged.

    Args:
        family: the family whose initialisation to rescale.
        max_log_scale: half-width of the uniform range of ``log a``.

    Example:
        >>> import jax
        >>> from learned_opt.tasks import MLP, RandomInitScale
        >>> family = RandomInitScale(MLP(hidden_sizes=(8,)), max_log_scale=1.0)
        >>> tp = family.sample(jax.random.key(0))
        >>> scaled = family.init(tp, jax.random.key(1))
        >>> plain = family.family.init(tp["task"], jax.random.key(1))
        >>> bool(abs(scaled[0]["w"][0, 0] / plain[0]["w"][0, 0] - tp["scale"]) < 1e-6)
        True
    """

    name: ClassVar[str] = "random_init_scale"

    def init(self, task_params: PyTree, key: jax.Array) -> PyTree:
        scale = task_params["scale"]
        return jax.tree.map(lambda p: (scale * p).astype(p.dtype), super().init(task_params, key))
