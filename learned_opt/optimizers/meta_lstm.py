"""The gated Meta-LSTM optimizer of Ravi & Larochelle (2017): the cell state is the parameter."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from learned_opt import _checks
from learned_opt.optimizers import _chunks, _trees, cell, features
from learned_opt.optimizers.base import LearnedOptimizer
from learned_opt.optimizers.lstm import STATE_DTYPES, StateDtype

# sigmoid(_PINNED_OPEN) rounds to exactly 1.0 in float32.
_PINNED_OPEN = 40.0


class MetaLSTMState(NamedTuple):
    """State of :class:`MetaLSTMOptimizer`.

    Per-coordinate arrays are pytrees shaped like the parameters (``layout="per_leaf"``, the
    carry with a trailing ``hidden_size`` axis) or single arrays over all coordinates
    (``layout="flat"``), stored in ``state_dtype``.

    Attributes:
        lstm: carry of the input LSTM.
        forget: the previous forget gate per coordinate.
        input: the previous input gate (learning rate) per coordinate.
        loss_stats: running statistics for the scale-free loss input.
        count: steps taken, int32.
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
        >>> state.forget["w"].shape, round(float(state.input["w"][0, 0]), 6)
        ((2, 3), 0.1)

    References:
        Ravi & Larochelle, "Optimization as a model for few-shot learning", ICLR 2017.
    """

    lstm: cell.LSTMCarry
    forget: Any
    input: Any
    loss_stats: features.LossStats
    count: jax.Array  # type: ignore[assignment]  # optax\'s name; shadows tuple.count
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
        layout: ``"per_leaf"`` (state shaped like the parameters) or ``"flat"``.
        state_dtype: storage of the per-coordinate state (``"bfloat16"`` halves its bytes).

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
    layout: _trees.Layout = "per_leaf"
    state_dtype: StateDtype = "float32"

    def __post_init__(self):
        checked = {
            "hidden_size": _checks.integer("hidden_size", self.hidden_size, minimum=1),
            "preprocess_p": _checks.real(
                "preprocess_p", self.preprocess_p, minimum=0.0, inclusive=False
            ),
            "use_loss": _checks.boolean("use_loss", self.use_loss),
            "forget_bias": _checks.float_range("forget_bias", self.forget_bias),
            "input_bias": _checks.float_range("input_bias", self.input_bias),
        }
        for name, value in checked.items():
            object.__setattr__(self, name, value)
        _checks.choice("layout", self.layout, _trees.LAYOUTS)
        _checks.choice("state_dtype", self.state_dtype, tuple(STATE_DTYPES))

    @property
    def needs_params(self) -> bool:
        return True

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
        dtype = STATE_DTYPES[self.state_dtype]

        def full(value, *trailing):
            zeros = _trees.zeros_like_groups(params, self.layout, trailing, dtype)
            return _trees.pack([z + value for z in zeros], spec, self.layout)

        return MetaLSTMState(
            lstm=cell.LSTMCarry(full(0.0, self.hidden_size), full(0.0, self.hidden_size)),
            forget=full(1.0),
            input=full(0.0),
            loss_stats=features.init_loss_stats(),
            count=jnp.zeros((), jnp.int32),
            spec=spec,
        )

    def _direction(self, meta_params, state, grads, params, loss):
        layout, loss_stats = self.layout, state.loss_stats
        shared = []
        if self.use_loss:
            loss_value, loss_stats = features.loss_feature(loss_stats, loss)
            shared.append(loss_value)
        template = (cell.LSTMCarry(0, 0), 0, 0)
        stored = (state.lstm, state.forget, state.input)
        directions, group_states = [], []
        for g, theta, group_state in zip(
            _trees.groups(grads, layout),
            _trees.groups(params, layout),
            _trees.split_state(stored, template, layout),
            strict=True,
        ):
            direction, group_state = self._group(meta_params, shared, g, theta, group_state)
            directions.append(direction)
            group_states.append(group_state)
        dtype = STATE_DTYPES[self.state_dtype]
        lstm, forget, input_gate = _trees.join_state(
            group_states, template, state.spec, layout, dtype
        )
        new_state = MetaLSTMState(lstm, forget, input_gate, loss_stats, state.count + 1, state.spec)
        return _trees.ungroup(directions, state.spec, layout), new_state

    def _group(self, meta_params, shared, g, theta, group_state):
        """The direction and new state of one group of coordinates, in float32.

        Computed by :func:`_chunks.map_chunks` (large tensors a cache-sized chunk at a time),
        the LSTM hidden-major.
        """

        def coordinates(shared_values, inputs, state):
            weights, shared = shared_values
            g, theta = inputs
            carry, forget, input_gate = state
            x = [jnp.moveaxis(features.log_sign(g, self.preprocess_p), -1, 0)]
            if shared:
                values = jnp.stack(shared).reshape(len(shared), *(1,) * g.ndim)
                x.append(jnp.broadcast_to(values, (len(shared), *g.shape)))
            carry = cell.LSTMCarry(*(jnp.moveaxis(a, -1, 0) for a in carry))
            carry = cell.lstm_step(
                weights["lstm"], jnp.concatenate(x, axis=0), carry, feature_axis=0
            )

            def gate(p, previous):
                previous = previous.astype(jnp.float32)
                h_term = jnp.tensordot(p["w"][:-2], carry.h, axes=(0, 0))
                return jax.nn.sigmoid(h_term + theta * p["w"][-2] + previous * p["w"][-1] + p["b"])

            f = gate(weights["forget"], forget)
            i = gate(weights["input"], input_gate)
            # theta_new - theta, written to stay exact when f == 1; the direction is its negative.
            step = (f - 1.0) * theta - i * g
            carry = cell.LSTMCarry(*(jnp.moveaxis(a, 0, -1) for a in carry))
            return -step, (carry, f, i)

        return _chunks.map_chunks(
            coordinates, g.shape, (meta_params, shared), (g, theta), group_state
        )
