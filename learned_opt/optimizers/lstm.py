"""The coordinatewise LSTM optimizer of Andrychowicz et al. (2016), with options for generality."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp

from learned_opt import _checks
from learned_opt.optimizers import _chunks, _trees, cell, features
from learned_opt.optimizers.base import LearnedOptimizer

UpdateNorm = Literal["none", "rms", "adam"]
BaseDirection = Literal["none", "adam"]
Magnitude = Literal["none", "tensor", "coordinate"]
StateDtype = Literal["float32", "bfloat16"]
STATE_DTYPES: dict[str, Any] = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}

#: Time constants of the training-progress inputs ``tanh(t / tau)`` (``step_input=True``).
STEP_TIMESCALES = (10.0, 100.0, 1000.0, 10000.0)
BOOL_OPTIONS = ("use_loss", "normalized_inputs", "param_input", "step_input")


class LSTMOptimizerState(NamedTuple):
    """State of :class:`LSTMOptimizer`.

    With the default ``layout="per_leaf"`` every per-coordinate array is a pytree shaped like
    the parameters, each leaf the parameter's shape plus a trailing feature axis, so the state can
    be sharded exactly like the parameters. With ``layout="flat"`` each is one array
    ``(num_coordinates, features)``. Arrays are stored in ``state_dtype``.

    Attributes:
        layers: one ``LSTMCarry`` per layer; ``h`` and ``c`` have ``hidden_size`` features.
        momentum: the momentum LSTM's carry (``momentum_size`` features), or ``None``.
        moments: gradient EMAs for the normalised inputs (``mu``: one feature per input decay,
            ``nu``: the parameter's shape), or ``None``.
        loss_stats: running statistics for the scale-free loss input.
        count: steps taken, int32.
        spec: zero-size record of the parameters' structure, shapes and dtypes.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> import learned_opt as lo
        >>> opt = lo.LSTMOptimizer(hidden_size=8, momentum_size=4)
        >>> params = {"w": jnp.zeros((2, 3)), "b": jnp.zeros(3)}
        >>> state = opt.init_state(opt.init(jax.random.key(0)), params)
        >>> jax.tree.map(jnp.shape, state.layers[0].h), state.momentum.c["w"].shape
        ({'b': (3, 8), 'w': (2, 3, 8)}, (2, 3, 4))

    References:
        Andrychowicz et al., "Learning to learn by gradient descent by gradient descent",
        NeurIPS 2016 (one LSTM state per coordinate).
    """

    layers: tuple[cell.LSTMCarry, ...]
    momentum: cell.LSTMCarry | None
    moments: features.Moments | None
    loss_stats: features.LossStats
    count: jax.Array  # type: ignore[assignment]  # optax\'s name; shadows tuple.count
    spec: Any


@dataclasses.dataclass(frozen=True)
class LSTMOptimizer(LearnedOptimizer):
    """A coordinatewise LSTM optimizer: one small LSTM shared by every coordinate.

    Every coordinate of every tensor is one row of the LSTM's batch with its own hidden and cell
    state, and all coordinates share the LSTM's weights, so the optimizer is independent of the
    model's size. Per coordinate the inputs are the preprocessed gradient, optionally a loss
    feature invariant to the loss's scale, the hidden state of a second *momentum* LSTM, the
    Adam-normalised gradient and momenta of Lv et al. (2017), the parameter relative to its
    tensor's RMS, and training-progress features. The network's output is the update's
    direction; the update is ``output_scale`` times it (``learning_rate``).

    The defaults are those of Andrychowicz et al. The options for an optimizer that carries over
    to problems it was not trained on follow the learned optimizers that generalise (Celo,
    Moudgil et al. 2025; Celo2, ICLR 2026): ``update_norm="rms"`` divides each tensor's output by
    its RMS, so the network only chooses a direction and relative sizes while ``output_scale``
    (or a user's learning rate or schedule) sets the step, like Adam's learning rate;
    ``magnitude_output`` adds a learned per-tensor factor on that step.

    Args:
        hidden_size: units per LSTM layer (20 in the paper).
        num_layers: stacked LSTM layers (2 in the paper).
        preprocess: ``"log_sign"`` (the paper's log-magnitude/sign pair), ``"none"`` (the raw
            gradient) or ``"omit"`` (no gradient input besides the normalised inputs, which
            are invariant to the loss's scale; needs ``normalized_inputs`` and no momentum LSTM).
        preprocess_p: the exponent ``p`` of the log/sign preprocessing (10 in the paper).
        use_loss: feed the loss (then ``tx.update`` needs ``value=``).
        momentum_size: units of the momentum LSTM; 0 disables it.
        normalized_inputs: also feed ``g / sqrt(v)`` and ``m_b / sqrt(v)`` for each of
            ``input_decays`` (with the defaults, RNNprop's two inputs).
        output_scale: the built-in step size (0.1 in the paper on MNIST).
        input_decays: EMA decays of the momenta ``m_b`` of the normalised inputs.
        rms_decay: EMA decay of ``v`` of the normalised inputs.
        param_input: feed each parameter divided by its tensor's RMS (scale-free).
        step_input: feed ``tanh(t / tau)`` for the step ``t`` and ``tau`` in
            ``STEP_TIMESCALES``.
        base_direction: ``"adam"`` adds Adam's direction ``m_b / sqrt(v)`` (``b`` the first of
            ``input_decays``) to the network's output, so an untrained optimizer is Adam and
            meta-training learns a correction; ``"none"``: the network's output alone.
        update_norm: ``"rms"`` divides each tensor's direction by its RMS (before the
            magnitude factor); ``"adam"`` rescales each tensor's final direction to the RMS of
            Adam's direction over that tensor (needs ``base_direction="adam"``), so the learned
            parts can only change the direction within a tensor, never its step size, and the
            optimizer with its learned outputs at zero is exactly Adam; ``"none"`` keeps it.
        correction_bound: with ``base_direction="adam"``, bounds the learned correction
            relative to Adam's direction: the correction is ``c * RMS(adam) * tanh(out)`` with
            ``c = correction_bound``, ``RMS`` over the tensor; ``None``: the output itself.
        magnitude_output: a second output that sets a learned step-size factor
            ``exp(b tanh(out / b))`` with ``b = magnitude_bound``, per coordinate
            (``"coordinate"``), or from the output's mean over each tensor (``"tensor"``);
            ``"none"``: no such output.
        magnitude_bound: the factor lies in ``[exp(-b), exp(b)]``.
        layout: ``"per_leaf"`` (state shaped like the parameters; updates need no
            communication between devices) or ``"flat"`` (all coordinates in one array; no
            per-tensor options).
        state_dtype: storage of the per-coordinate state; ``"bfloat16"`` halves its bytes
            (arithmetic stays float32).

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
        longer horizons", ICML 2017 (``normalized_inputs``). Moudgil, Knyazev, Lajoie &
        Belilovsky, "Celo: training versatile learned optimizers on a compute diet", 2025, and
        Moudgil, Knyazev & Belilovsky, "Celo2", ICLR 2026 (``update_norm="rms"``).
    """

    hidden_size: int = 20
    num_layers: int = 2
    preprocess: features.Preprocess = "log_sign"
    preprocess_p: float = 10.0
    use_loss: bool = True
    momentum_size: int = 0
    normalized_inputs: bool = False
    output_scale: float = 0.1
    input_decays: tuple[float, ...] = (0.95,)
    rms_decay: float = 0.95
    param_input: bool = False
    step_input: bool = False
    base_direction: BaseDirection = "none"
    update_norm: UpdateNorm = "none"
    magnitude_output: Magnitude = "none"
    magnitude_bound: float = 3.0
    correction_bound: float | None = None
    layout: _trees.Layout = "per_leaf"
    state_dtype: StateDtype = "float32"

    def __post_init__(self):
        positive: dict[str, Any] = {"minimum": 0.0, "inclusive": False}
        decay: dict[str, Any] = {"minimum": 0.0, "maximum": 1.0, "inclusive_maximum": False}
        checked = {
            "hidden_size": _checks.integer("hidden_size", self.hidden_size, minimum=1),
            "num_layers": _checks.integer("num_layers", self.num_layers, minimum=1),
            "momentum_size": _checks.integer("momentum_size", self.momentum_size, minimum=0),
            "preprocess_p": _checks.real("preprocess_p", self.preprocess_p, **positive),
            "output_scale": _checks.real("output_scale", self.output_scale, **positive),
            "input_decays": _checks.reals("input_decays", self.input_decays, **decay),
            "rms_decay": _checks.real("rms_decay", self.rms_decay, **decay),
            "magnitude_bound": _checks.real("magnitude_bound", self.magnitude_bound, **positive),
        }
        for name in BOOL_OPTIONS:
            checked[name] = _checks.boolean(name, getattr(self, name))
        for name, value in checked.items():
            object.__setattr__(self, name, value)
        _checks.choice("preprocess", self.preprocess, features.GRADIENT_PREPROCESSING)
        _checks.choice("update_norm", self.update_norm, ("none", "rms", "adam"))
        if self.correction_bound is not None:
            bound = _checks.real("correction_bound", self.correction_bound, **positive)
            object.__setattr__(self, "correction_bound", bound)
        _checks.choice("base_direction", self.base_direction, ("none", "adam"))
        _checks.choice("magnitude_output", self.magnitude_output, ("none", "tensor", "coordinate"))
        _checks.check(
            self.preprocess != "omit" or (self.normalized_inputs and not self.momentum_size),
            "preprocess: 'omit' drops the gradient input; it needs normalized_inputs=True and "
            "momentum_size=0 (the momentum LSTM reads the gradient input)",
        )
        _checks.check(
            self.base_direction == "none" or self.normalized_inputs,
            "base_direction: 'adam' is built from the normalised inputs; it needs "
            "normalized_inputs=True",
        )
        _checks.check(
            self.base_direction == "adam"
            or (self.update_norm != "adam" and self.correction_bound is None),
            "base_direction: update_norm='adam' and correction_bound are relative to Adam's "
            "direction; they need base_direction='adam'",
        )
        _checks.choice("layout", self.layout, _trees.LAYOUTS)
        _checks.choice("state_dtype", self.state_dtype, tuple(STATE_DTYPES))
        per_tensor = (
            self.param_input
            or self.update_norm != "none"
            or self.magnitude_output == "tensor"
            or self.correction_bound is not None
        )
        _checks.check(
            not (self.layout == "flat" and per_tensor),
            "layout: 'flat' treats all parameters as one vector; param_input, update_norm, "
            "correction_bound and magnitude_output='tensor' work per tensor and need "
            "layout='per_leaf'",
        )

    @property
    def needs_params(self) -> bool:
        return self.param_input

    @property
    def input_size(self) -> int:
        """Number of per-coordinate inputs of the first LSTM layer."""
        return (
            features.GRADIENT_FEATURES[self.preprocess]
            + int(self.use_loss)
            + self.momentum_size
            + (1 + len(self.input_decays)) * int(self.normalized_inputs)
            + int(self.param_input)
            + len(STEP_TIMESCALES) * int(self.step_input)
        )

    def learning_rate(self, meta_params) -> float:
        del meta_params
        return self.output_scale

    def init(self, key: jax.Array) -> dict[str, Any]:
        """Samples LSTM weights; the output layer starts small (std 0.01)."""
        keys = jax.random.split(key, self.num_layers + 2)
        input_size, layers = self.input_size, []
        for k in range(self.num_layers):
            layers.append(cell.init_lstm_params(keys[k], input_size, self.hidden_size))
            input_size = self.hidden_size
        outputs = 1 + int(self.magnitude_output != "none")
        meta_params = {
            "layers": layers,
            "out": {
                "w": 0.01 * jax.random.normal(keys[-2], (self.hidden_size, outputs), jnp.float32),
                "b": jnp.zeros((outputs,), jnp.float32),
            },
        }
        if self.momentum_size:
            gradient_inputs = features.GRADIENT_FEATURES[self.preprocess]
            meta_params["momentum"] = cell.init_lstm_params(
                keys[-1], gradient_inputs, self.momentum_size
            )
        return meta_params

    def init_state(self, meta_params, params) -> LSTMOptimizerState:
        del meta_params
        spec = _trees.param_spec(params)
        dtype = STATE_DTYPES[self.state_dtype]

        def zeros(*trailing):
            return _trees.pack(
                _trees.zeros_like_groups(params, self.layout, trailing, dtype), spec, self.layout
            )

        def carry(size):
            return cell.LSTMCarry(zeros(size), zeros(size))

        return LSTMOptimizerState(
            layers=tuple(carry(self.hidden_size) for _ in range(self.num_layers)),
            momentum=carry(self.momentum_size) if self.momentum_size else None,
            moments=(
                features.Moments(zeros(len(self.input_decays)), zeros())
                if self.normalized_inputs
                else None
            ),
            loss_stats=features.init_loss_stats(),
            count=jnp.zeros((), jnp.int32),
            spec=spec,
        )

    def _template(self) -> tuple:
        """One group's per-coordinate state, with a placeholder for each array."""
        return (
            tuple(cell.LSTMCarry(0, 0) for _ in range(self.num_layers)),
            cell.LSTMCarry(0, 0) if self.momentum_size else None,
            features.Moments(0, 0) if self.normalized_inputs else None,
        )

    def _direction(self, meta_params, state, grads, params, loss):
        layout, count = self.layout, state.count + 1
        shared, loss_stats = [], state.loss_stats
        if self.use_loss:
            loss_value, loss_stats = features.loss_feature(loss_stats, loss)
            shared.append(loss_value)
        if self.step_input:
            t = count.astype(jnp.float32)
            shared.extend(jnp.tanh(t / tau) for tau in STEP_TIMESCALES)
        template = self._template()
        stored = (state.layers, state.momentum, state.moments)
        grads = _trees.groups(grads, layout)
        params = _trees.groups(params, layout) if self.param_input else [None] * len(grads)
        directions, group_states = [], []
        for g, p, group_state in zip(
            grads, params, _trees.split_state(stored, template, layout), strict=True
        ):
            direction, group_state = self._group(meta_params, shared, count, g, p, group_state)
            directions.append(direction)
            group_states.append(group_state)
        dtype = STATE_DTYPES[self.state_dtype]
        layers, momentum, moments = _trees.join_state(
            group_states, template, state.spec, layout, dtype
        )
        new_state = LSTMOptimizerState(layers, momentum, moments, loss_stats, count, state.spec)
        return _trees.ungroup(directions, state.spec, layout), new_state

    def _group(self, meta_params, shared, count, g, p, group_state):
        """The direction and new state of one group of coordinates (shape ``S``), in float32.

        The per-coordinate part runs through :func:`_chunks.map_chunks` (large tensors a
        cache-sized chunk at a time) with the LSTMs hidden-major; the per-tensor parts (the
        parameter's RMS, the update's normalisation and magnitude) are computed around it.
        """

        def coordinates(shared_values, inputs, state):
            weights, shared, p_rms = shared_values
            g, p = inputs
            carries, momentum, moments = state
            ndim = g.ndim

            def major(x):  # (..., k) -> (k, ...)
                return jnp.moveaxis(x, -1, 0)

            def minor(x):  # (k, ...) -> (..., k)
                return jnp.moveaxis(x, 0, -1)

            gx = features.gradient_features(g, self.preprocess, self.preprocess_p)
            inputs = [major(gx)]
            if shared:
                values = jnp.stack(shared).reshape(len(shared), *(1,) * ndim)
                inputs.append(jnp.broadcast_to(values, (len(shared), *g.shape)))
            if momentum is not None:
                carry = cell.LSTMCarry(major(momentum.h), major(momentum.c))
                carry = cell.lstm_step(weights["momentum"], major(gx), carry, feature_axis=0)
                inputs.append(carry.h)
                momentum = cell.LSTMCarry(minor(carry.h), minor(carry.c))
            adam = None  # Adam's direction, for base_direction="adam"
            if moments is not None:
                moments = features.Moments(*(m.astype(jnp.float32) for m in moments))
                normalized, moments = features.normalized_features(
                    moments, g, count, self.input_decays, self.rms_decay
                )
                inputs.append(major(normalized))
                if self.base_direction == "adam":
                    adam = normalized[..., 1]
            if p is not None:
                inputs.append((p / p_rms)[None])
            x = jnp.concatenate(inputs, axis=0)
            new_carries = []
            for layer_params, carry in zip(weights["layers"], carries, strict=True):
                carry = cell.LSTMCarry(major(carry.h), major(carry.c))
                carry = cell.lstm_step(layer_params, x, carry, feature_axis=0)
                new_carries.append(cell.LSTMCarry(minor(carry.h), minor(carry.c)))
                x = carry.h
            w, b = weights["out"]["w"], weights["out"]["b"]
            out = jnp.tensordot(w, x, axes=(0, 0)) + b.reshape(-1, *(1,) * ndim)
            step = out[0]
            if adam is not None and not per_tensor_adam:
                step, adam = step - adam, None
            log_factor = out[1] if self.magnitude_output != "none" else None
            return (step, adam, log_factor), (tuple(new_carries), momentum, moments)

        # Adam's direction leaves the per-coordinate part when a per-tensor option reads it.
        per_tensor_adam = self.correction_bound is not None or self.update_norm == "adam"
        p_rms = None if p is None else features.tensor_rms(p)
        (step, adam, log_factor), new_state = _chunks.map_chunks(
            coordinates, g.shape, (meta_params, shared, p_rms), (g, p), group_state
        )
        if adam is not None:
            if self.correction_bound is not None:
                step = self.correction_bound * features.tensor_rms(adam) * jnp.tanh(step)
            step = step - adam
        if self.update_norm == "rms":
            step = step / features.tensor_rms(step)
        if log_factor is not None:
            if self.magnitude_output == "tensor":
                log_factor = features.finite_mean(log_factor)
            bound = self.magnitude_bound
            step = step * jnp.exp(bound * jnp.tanh(log_factor / bound))
        if self.update_norm == "adam":
            step = step * (features.tensor_rms(adam) / features.tensor_rms(step))
        return -step, new_state
