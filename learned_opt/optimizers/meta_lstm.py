"""The gated Meta-LSTM optimizer of Ravi & Larochelle (2017): the cell state is the parameter."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from learned_opt._checks import float_range
from learned_opt.optimizers import _trees, cell, features
from learned_opt.optimizers.base import LearnedOptimizer

# sigmoid(_PINNED_OPEN) rounds to exactly 1.0 in float32.
_PINNED_OPEN = 40.0


class MetaLSTMState(NamedTuple):
    """State of :class:`MetaLSTMOptimizer`.

    Attributes:
        lstm: carry of the input LSTM, ``(num_coordinates, hidden_size)`` each.
        forget: the previous forget gate per coordinate, ``(num_coordinates,)``.
        input: the previous input gate (learning rate) per coordinate, ``(num_coordinates,)``.
        loss_stats: running statistics for the scale-free loss input.
        spec: zero-size record of the parameters' structure, shapes and dtypes.

    The gates are kept because the next step reads them; they are also what to record to see
    inside a trained optimizer (``benchmarks/meta_lstm_gates.py``).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> import learned_opt as lo
        >>> opt = lo.MetaLSTMOptimizer()
        >>> tx = opt.as_optax(opt.sgd_meta_params(0.1))
        >>> params = {"w": jnp.ones((2, 3))}
        >>> state = tx.init(params)
        >>> _, state = tx.update({"w": jnp.ones((2, 3))}, state, params, value=1.0)
        >>> state.forget.shape, round(float(state.input[0]), 6), float(state.forget[0])
        ((6,), 0.1, 1.0)

    References:
        Ravi & Larochelle, "Optimization as a model for few-shot learning", ICLR 2017.
    """

    lstm: cell.LSTMCarry
    forget: jax.Array
    input: jax.Array
    loss_stats: features.LossStats
    spec: Any


@dataclasses.dataclass(frozen=True)
class MetaLSTMOptimizer(LearnedOptimizer):
    """The Meta-LSTM optimizer: parameters as the LSTM's cell state, with learned gates.

    Per coordinate, ``theta_t = f_t * theta_{t-1} + i_t * (-grad_t)``. The forget gate ``f`` and
    input gate ``i`` (a learned per-coordinate learning rate) are
    ``sigmoid(w . [h_t, theta_{t-1}, gate_{t-1}] + b)``, where ``h_t`` is the hidden state of a
    small coordinatewise LSTM that reads the log/sign-preprocessed gradient and (optionally) the
    scale-free loss feature. With ``f = 1`` and ``i = lr`` this is exactly SGD: gradient descent
    is a special case of an LSTM (see :meth:`sgd_meta_params`).

    Args:
        hidden_size: units of the input LSTM (20 in the paper).
        preprocess_p: the exponent ``p`` of the log/sign gradient preprocessing.
        use_loss: feed the loss (then ``tx.update`` needs ``value=``).
        forget_bias: range of the forget gate's initial bias (the paper's ``U[4, 6]``: ``f``
            close to 1).
        input_bias: range of the input gate's initial bias (the paper's ``U[-5, -4]``: a
            learning rate near 0.01). On a problem that needs larger steps, start higher, e.g.
            ``(-1.0, 0.0)`` (learning rates 0.27-0.5).

    Example:
        >>> import jax, jax.numpy as jnp, optax
        >>> import learned_opt as lo
        >>> opt = lo.MetaLSTMOptimizer()
        >>> tx = opt.as_optax(opt.sgd_meta_params(0.1))
        >>> params = {"w": jnp.ones(2)}
        >>> state = tx.init(params)
        >>> updates, state = tx.update({"w": jnp.array([1.0, -2.0])}, state, params, value=1.0)
        >>> updates["w"].tolist()
        [-0.10000000149011612, 0.20000000298023224]

    References:
        Ravi & Larochelle, "Optimization as a model for few-shot learning", ICLR 2017.
    """

    hidden_size: int = 20
    preprocess_p: float = 10.0
    use_loss: bool = True
    forget_bias: tuple[float, float] = (4.0, 6.0)
    input_bias: tuple[float, float] = (-5.0, -4.0)

    needs_params = True

    def __post_init__(self):
        if self.hidden_size < 1:
            raise ValueError(f"hidden_size: expected a positive integer, got {self.hidden_size}")
        for name in ("forget_bias", "input_bias"):
            object.__setattr__(self, name, float_range(name, getattr(self, name)))

    def init(self, key: jax.Array) -> dict[str, Any]:
        """Samples weights; gate biases start near SGD with a small step.

        Forget bias ~ ``U[*forget_bias]``, input bias ~ ``U[*input_bias]`` (by default the
        paper's U[4, 6] and U[-5, -4]: ``f`` close to 1, ``i`` ~ 0.01), gate weights ~
        U[-0.01, 0.01], as in the paper.
        """
        k_lstm, k_fw, k_fb, k_iw, k_ib = jax.random.split(key, 5)
        n_in = self.hidden_size + 2

        def gate(kw, kb, lo, hi):
            return {
                "w": jax.random.uniform(kw, (n_in,), jnp.float32, -0.01, 0.01),
                "b": jax.random.uniform(kb, (), jnp.float32, lo, hi),
            }

        return {
            "lstm": cell.init_lstm_params(k_lstm, 2 + int(self.use_loss), self.hidden_size),
            "forget": gate(k_fw, k_fb, *self.forget_bias),
            "input": gate(k_iw, k_ib, *self.input_bias),
        }

    def sgd_meta_params(self, learning_rate: float) -> dict[str, Any]:
        """Meta-parameters that pin ``f = 1`` and ``i = learning_rate``: plain SGD.

        Example:
            >>> import learned_opt as lo
            >>> float(lo.MetaLSTMOptimizer().sgd_meta_params(0.5)["input"]["b"])
            0.0
        """
        if not 0.0 < learning_rate < 1.0:
            raise ValueError(f"learning_rate: expected a value in (0, 1), got {learning_rate}")
        meta_params = jax.tree.map(jnp.zeros_like, self.init(jax.random.key(0)))
        logit = math.log(learning_rate) - math.log1p(-learning_rate)
        meta_params["forget"]["b"] = jnp.asarray(_PINNED_OPEN, jnp.float32)
        meta_params["input"]["b"] = jnp.asarray(logit, jnp.float32)
        return meta_params

    def init_state(self, meta_params, params) -> MetaLSTMState:
        del meta_params
        spec = _trees.param_spec(params)
        n = _trees.num_coordinates(spec)
        return MetaLSTMState(
            lstm=cell.init_carry(n, self.hidden_size),
            forget=jnp.ones((n,), jnp.float32),
            input=jnp.zeros((n,), jnp.float32),
            loss_stats=features.init_loss_stats(),
            spec=spec,
        )

    def _step(self, meta_params, state, grads, params, loss):
        g = _trees.ravel(grads)
        theta = _trees.ravel(params)
        inputs = [features.log_sign(g, self.preprocess_p)]
        loss_stats = state.loss_stats
        if self.use_loss:
            lf, loss_stats = features.loss_feature(loss_stats, loss)
            inputs.append(jnp.broadcast_to(lf, (g.shape[0], 1)))
        carry = cell.lstm_step(
            meta_params["lstm"], jnp.concatenate(inputs, axis=-1), carry=state.lstm
        )

        def gate(p, previous):
            return jax.nn.sigmoid(
                carry.h @ p["w"][:-2] + theta * p["w"][-2] + previous * p["w"][-1] + p["b"]
            )

        f = gate(meta_params["forget"], state.forget)
        i = gate(meta_params["input"], state.input)
        # theta_new - theta, written to stay exact when f == 1.
        step = (f - 1.0) * theta - i * g
        new_state = MetaLSTMState(carry, f, i, loss_stats, state.spec)
        return _trees.unravel(step, state.spec), new_state
