"""Few-shot sinusoid regression (the MAML protocol)."""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import jax
import jax.numpy as jnp

from learned_opt.tasks import _nn
from learned_opt.tasks.base import PyTree, TaskFamily, float_range, integer, positive_ints, real


def _affine(u: jax.Array, bounds: tuple[float, float]) -> jax.Array:
    """Maps ``u`` in ``[0, 1)`` to ``[low, high)``."""
    low, high = bounds
    return low + (high - low) * u


@dataclasses.dataclass(frozen=True)
class Sinusoid(TaskFamily):
    """Regress ``y = A sin(x - φ)`` from a few points with a small ReLU network.

    Each task draws an amplitude ``A ~ U[0.1, 5]`` and a phase ``φ ~ U[0, π]``
    (``task_params = {"amplitude": f32[], "phase": f32[]}``); a batch is ``batch_size`` points
    ``x ~ U[-5, 5]`` with their targets, as ``(x, y)`` arrays of shape ``(batch_size, 1)``. The
    network is 1-40-40-1 with ReLU and the loss is the mean squared error. ``eval_loss`` is the
    error on ``eval_size`` evenly spaced points of the input range (noise-free and the same for
    every call). ``support_query`` draws the independent support and query sets of few-shot
    learning (MAML, Reptile).

    Args:
        batch_size: points per batch (K = 10 in MAML's meta-training).
        hidden_sizes: hidden layer widths.
        activation: ``"relu"``, ``"tanh"``, ``"sigmoid"`` or ``"elu"`` (Reptile's demo uses
            tanh).
        init_scale: standard deviation of the initial weights and biases; ``None`` (default)
            for LeCun-normal weights and zero biases (MAML's code uses 0.01 and zero biases).
        amplitude_range: ``(low, high)`` of the uniform amplitude.
        phase_range: ``(low, high)`` of the uniform phase.
        input_range: ``(low, high)`` of the uniform inputs.
        eval_size: number of grid points of ``eval_loss``.

    References:
        Finn et al. 2017, "Model-agnostic meta-learning for fast adaptation of deep networks"
        (MAML), section 5.1.

    Example:
        >>> import jax
        >>> from learned_opt.tasks import Sinusoid
        >>> family = Sinusoid(batch_size=10)
        >>> task_params = family.sample(jax.random.key(0))
        >>> sorted(task_params)
        ['amplitude', 'phase']
        >>> params = family.init(task_params, jax.random.key(1))
        >>> (x, y), (xq, yq) = family.support_query(task_params, jax.random.key(2), 5, 20)
        >>> x.shape, xq.shape, family.apply(params, xq).shape
        ((5, 1), (20, 1), (20, 1))
    """

    name: ClassVar[str] = "sinusoid"

    batch_size: int = 10
    hidden_sizes: tuple[int, ...] = (40, 40)
    activation: str = "relu"
    init_scale: float | None = None
    amplitude_range: tuple[float, float] = (0.1, 5.0)
    phase_range: tuple[float, float] = (0.0, math.pi)
    input_range: tuple[float, float] = (-5.0, 5.0)
    eval_size: int = 256

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "hidden_sizes", positive_ints("hidden_sizes", self.hidden_sizes, allow_empty=True)
        )
        for field in ("amplitude_range", "phase_range", "input_range"):
            object.__setattr__(self, field, float_range(field, getattr(self, field)))
        integer("batch_size", self.batch_size, minimum=1)
        integer("eval_size", self.eval_size, minimum=1)
        _nn.activation(self.activation)
        if self.init_scale is not None:
            real("init_scale", self.init_scale, minimum=0.0, inclusive=False)

    def sample(self, key: jax.Array) -> PyTree:
        u = jax.random.uniform(key, (2,), jnp.float32)
        return {
            "amplitude": _affine(u[0], self.amplitude_range),
            "phase": _affine(u[1], self.phase_range),
        }

    def init(self, task_params: PyTree, key: jax.Array) -> PyTree:
        return _nn.init_mlp(key, (1, *self.hidden_sizes, 1), self.init_scale)

    def apply(self, params: PyTree, x: jax.Array) -> jax.Array:
        """Runs the network on inputs ``x`` of shape ``(n, 1)``."""
        return _nn.mlp(params, x, _nn.activation(self.activation))

    def target(self, task_params: PyTree, x: jax.Array) -> jax.Array:
        """The task's function ``A sin(x - φ)``."""
        return task_params["amplitude"] * jnp.sin(x - task_params["phase"])

    def points(self, task_params: PyTree, key: jax.Array, num: int) -> tuple[jax.Array, jax.Array]:
        """Draws ``num`` points ``(x, y)``, each of shape ``(num, 1)``."""
        x = _affine(jax.random.uniform(key, (num,), jnp.float32), self.input_range)[:, None]
        return x, self.target(task_params, x)

    def batch(self, task_params: PyTree, key: jax.Array) -> tuple[jax.Array, jax.Array]:
        return self.points(task_params, key, self.batch_size)

    def support_query(
        self, task_params: PyTree, key: jax.Array, k_support: int, k_query: int
    ) -> tuple[tuple[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]:
        """Draws independent support (``k_support`` points) and query (``k_query``) batches."""
        support_key, query_key = jax.random.split(key)
        return (
            self.points(task_params, support_key, k_support),
            self.points(task_params, query_key, k_query),
        )

    def loss(self, task_params: PyTree, params: PyTree, batch: PyTree) -> jax.Array:
        x, y = batch
        return _nn.mean_squared_error(self.apply(params, x), y)

    def eval_loss(self, task_params: PyTree, params: PyTree) -> jax.Array:
        x = jnp.linspace(*self.input_range, self.eval_size, dtype=jnp.float32)[:, None]
        return self.loss(task_params, params, (x, self.target(task_params, x)))
