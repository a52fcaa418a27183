"""The coordinatewise LSTM optimizer of Andrychowicz et al. (2016)."""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from learned_opt.optimizers import _trees, cell, features
from learned_opt.optimizers.base import LearnedOptimizer


class LSTMOptimizerState(NamedTuple):
    """State of :class:`LSTMOptimizer`.

    Attributes:
        layers: one ``LSTMCarry`` per layer, each array ``(num_coordinates, hidden_size)``.
        momentum: the momentum LSTM's carry ``(num_coordinates, momentum_size)``, or ``None``.
        moments: gradient EMAs for the normalised inputs, ``(num_coordinates,)`` each, or
            ``None``.
        loss_stats: running statistics for the scale-free loss input.
        spec: zero-size record of the parameters' structure, shapes and dtypes.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> import learned_opt as lo
        >>> opt = lo.LSTMOptimizer(hidden_size=8, momentum_size=4)
        >>> params = {"w": jnp.zeros((2, 3)), "b": jnp.zeros(3)}  # 9 coordinates
        >>> state = opt.init_state(opt.init(jax.random.key(0)), params)
        >>> [carry.h.shape for carry in state.layers], state.momentum.c.shape, state.moments
        ([(9, 8), (9, 8)], (9, 4), None)

    References:
        Andrychowicz et al., "Learning to learn by gradient descent by gradient descent",
        NeurIPS 2016 (one LSTM state per coordinate).
    """

    layers: tuple[cell.LSTMCarry, ...]
    momentum: cell.LSTMCarry | None
    moments: features.Moments | None
    loss_stats: features.LossStats
    spec: Any


@dataclasses.dataclass(frozen=True)
class LSTMOptimizer(LearnedOptimizer):
    """A coordinatewise LSTM optimizer: one small LSTM shared by every coordinate.

    Every coordinate of every tensor is one row of the LSTM's batch with its own hidden and cell
    state, and all coordinates share the LSTM's weights, so the optimizer is independent of the
    model's size and the whole model takes one matmul per layer. Per coordinate the inputs are
    the preprocessed gradient, optionally a loss feature invariant to the loss's scale and offset,
    and optionally the hidden state of a second *momentum* LSTM that carries a memory of past
    gradients, and optionally the Adam-normalised gradient and momentum of Lv et al. (2017).
    The output, times ``output_scale``, is the coordinate's update.

    Args:
        hidden_size: units per LSTM layer (20 in the paper).
        num_layers: stacked LSTM layers (2 in the paper).
        preprocess: ``"log_sign"`` (the paper's log-magnitude/sign pair) or ``"none"``.
        preprocess_p: the exponent ``p`` of the log/sign preprocessing (10 in the paper).
        use_loss: feed the loss (then ``tx.update`` needs ``value=``).
        momentum_size: units of the momentum LSTM; 0 disables it.
        normalized_inputs: also feed ``g / sqrt(v)`` and ``m / sqrt(v)`` (RNNprop inputs; two
            more float32 of state per parameter).
        output_scale: multiplies the network's output (0.1 in the paper on MNIST).

    Example:
        >>> import jax, jax.numpy as jnp, optax
        >>> import learned_opt as lo
        >>> opt = lo.LSTMOptimizer(hidden_size=8, momentum_size=4)
        >>> meta_params = opt.init(jax.random.key(0))
        >>> tx = opt.as_optax(meta_params)
        >>> params = {"w": jnp.zeros((2, 3)), "b": jnp.zeros(3)}
        >>> state = tx.init(params)
        >>> updates, state = tx.update(params, state, params, value=0.5)
        >>> jax.tree.map(jnp.shape, updates)
        {'b': (3,), 'w': (2, 3)}

    References:
        Andrychowicz et al., "Learning to learn by gradient descent by gradient descent",
        NeurIPS 2016. Lv, Jiang & Li, "Learning gradient descent: better generalization and
        longer horizons", ICML 2017 (``normalized_inputs``).
    """

    hidden_size: int = 20
    num_layers: int = 2
    preprocess: str = "log_sign"
    preprocess_p: float = 10.0
    use_loss: bool = True
    momentum_size: int = 0
    normalized_inputs: bool = False
    output_scale: float = 0.1

    def __post_init__(self):
        if self.preprocess not in features.GRADIENT_PREPROCESSING:
            raise ValueError(
                f"preprocess: expected one of {features.GRADIENT_PREPROCESSING}, "
                f"got {self.preprocess!r}"
            )
        for name in ("hidden_size", "num_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected a positive integer, got {getattr(self, name)}")
        if self.momentum_size < 0:
            raise ValueError(f"momentum_size: expected >= 0, got {self.momentum_size}")

    @property
    def _gradient_inputs(self) -> int:
        return 2 if self.preprocess == "log_sign" else 1

    def init(self, key: jax.Array) -> dict[str, Any]:
        """Samples LSTM weights; the output layer starts small (std 0.01)."""
        keys = jax.random.split(key, self.num_layers + 2)
        input_size = (
            self._gradient_inputs
            + int(self.use_loss)
            + self.momentum_size
            + 2 * int(self.normalized_inputs)
        )
        layers = []
        for k in range(self.num_layers):
            layers.append(cell.init_lstm_params(keys[k], input_size, self.hidden_size))
            input_size = self.hidden_size
        meta_params = {
            "layers": layers,
            "out": {
                "w": 0.01 * jax.random.normal(keys[-2], (self.hidden_size, 1), jnp.float32),
                "b": jnp.zeros((1,), jnp.float32),
            },
        }
        if self.momentum_size:
            meta_params["momentum"] = cell.init_lstm_params(
                keys[-1], self._gradient_inputs, self.momentum_size
            )
        return meta_params

    def init_state(self, meta_params, params) -> LSTMOptimizerState:
        del meta_params
        spec = _trees.param_spec(params)
        n = _trees.num_coordinates(spec)
        layers = tuple(cell.init_carry(n, self.hidden_size) for _ in range(self.num_layers))
        momentum = cell.init_carry(n, self.momentum_size) if self.momentum_size else None
        moments = features.init_moments(n) if self.normalized_inputs else None
        return LSTMOptimizerState(layers, momentum, moments, features.init_loss_stats(), spec)

    def _step(self, meta_params, state, grads, params, loss):
        del params
        g = _trees.ravel(grads)
        gx = features.gradient_features(g, self.preprocess, self.preprocess_p)
        inputs = [gx]
        loss_stats = state.loss_stats
        if self.use_loss:
            lf, loss_stats = features.loss_feature(loss_stats, loss)
            inputs.append(jnp.broadcast_to(lf, (g.shape[0], 1)))
        momentum = state.momentum
        if self.momentum_size:
            momentum = cell.lstm_step(meta_params["momentum"], gx, momentum)
            inputs.append(momentum.h)
        moments = state.moments
        if self.normalized_inputs:
            normalized, moments = features.normalized_features(moments, g)
            inputs.append(normalized)
        x = jnp.concatenate(inputs, axis=-1)
        layers = []
        for layer_params, carry in zip(meta_params["layers"], state.layers, strict=True):
            carry = cell.lstm_step(layer_params, x, carry)
            layers.append(carry)
            x = carry.h
        out = (x @ meta_params["out"]["w"])[:, 0] + meta_params["out"]["b"][0]
        out = out * self.output_scale
        new_state = LSTMOptimizerState(tuple(layers), momentum, moments, loss_stats, state.spec)
        return _trees.unravel(out, state.spec), new_state
