"""A parametric learning rule in the spirit of Bengio, Bengio & Cloutier (1991)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from learned_opt import _checks
from learned_opt.optimizers import _trees, features
from learned_opt.optimizers.base import LearnedOptimizer
from learned_opt.optimizers.lstm import STATE_DTYPES, StateDtype


class LearnedRuleState(NamedTuple):
    """State of :class:`LearnedRule`.

    Per-coordinate arrays are pytrees shaped like the parameters (``layout="per_leaf"``) or
    single arrays over all coordinates (``layout="flat"``), stored in ``state_dtype``.

    Attributes:
        momenta: gradient EMAs, with a trailing axis of ``len(decays)``.
        nu: EMA of the squared gradient.
        count: steps taken, int32.
        spec: zero-size record of the parameters' structure, shapes and dtypes.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> import learned_opt as lo
        >>> rule = lo.LearnedRule(decays=(0.5, 0.9, 0.99))
        >>> state = rule.init_state(rule.init(jax.random.key(0)), [jnp.zeros((4, 2))])
        >>> state.momenta[0].shape, state.nu[0].shape, int(state.count)
        ((4, 2, 3), (4, 2), 0)

    References:
        Bengio, Bengio & Cloutier, "Learning a synaptic learning rule", IJCNN 1991.
    """

    momenta: Any
    nu: Any
    count: jax.Array  # type: ignore[assignment]  # optax\'s name; shadows tuple.count
    spec: Any


@dataclasses.dataclass(frozen=True)
class LearnedRule(LearnedOptimizer):
    """The update as a learned linear combination of a few per-coordinate features.

    ``update = -exp(log_lr) * sum_k coef_k * feature_k`` (``exp(log_lr)`` is the built-in
    ``learning_rate``, the sum the direction) with features: the gradient ``g``; its
    bias-corrected momenta ``m_b`` for each decay ``b``; the parameter ``theta`` (learned weight
    decay); and the products ``g / sqrt(nu)`` and ``m_b / sqrt(nu)`` with the bias-corrected
    second moment ``nu`` (Adam-like directions). SGD, momentum, Adam without epsilon tuning and
    weight decay are all points of this family; meta-training picks the combination.

    Args:
        decays: momentum decays.
        rms_decay: decay of the squared-gradient EMA.
        eps: stabiliser of the normalised features.
        layout: ``"per_leaf"`` (state shaped like the parameters) or ``"flat"``.
        state_dtype: storage of the per-coordinate state (``"bfloat16"`` halves its bytes).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> import learned_opt as lo
        >>> rule = lo.LearnedRule()
        >>> rule.feature_names()[:3]
        ('grad', 'momentum_0.5', 'momentum_0.9')
        >>> tx = rule.as_optax(rule.init(jax.random.key(0)))
        >>> params = [jnp.ones(3)]
        >>> updates, _ = tx.update([jnp.ones(3)], tx.init(params), params)
        >>> updates[0].shape
        (3,)

    References:
        Bengio, Bengio & Cloutier, "Learning a synaptic learning rule", IJCNN 1991.
    """

    decays: tuple[float, ...] = (0.5, 0.9, 0.99)
    rms_decay: float = 0.999
    eps: float = 1e-8
    layout: _trees.Layout = "per_leaf"
    state_dtype: StateDtype = "float32"

    def __post_init__(self):
        decay: dict[str, Any] = {"minimum": 0.0, "maximum": 1.0, "inclusive_maximum": False}
        checked = {
            "decays": _checks.reals("decays", self.decays, **decay),
            "rms_decay": _checks.real("rms_decay", self.rms_decay, **decay),
            "eps": _checks.real("eps", self.eps, minimum=0.0, inclusive=False),
        }
        for name, value in checked.items():
            object.__setattr__(self, name, value)
        _checks.choice("layout", self.layout, _trees.LAYOUTS)
        _checks.choice("state_dtype", self.state_dtype, tuple(STATE_DTYPES))

    @property
    def needs_params(self) -> bool:
        return True

    def feature_names(self) -> tuple[str, ...]:
        """Names of the features, in the order of ``meta_params["coef"]``."""
        momenta = tuple(f"momentum_{d:g}" for d in self.decays)
        return (
            "grad",
            *momenta,
            "param",
            "grad/rms",
            *(f"{m}/rms" for m in momenta),
        )

    def init(self, key: jax.Array) -> dict[str, jax.Array]:
        """Starts at SGD with learning rate 0.01, other coefficients ~ N(0, 1e-3)."""
        n = len(self.feature_names())
        coef = 1e-3 * jax.random.normal(key, (n,), jnp.float32)
        return {
            "coef": coef.at[0].set(1.0),
            "log_lr": jnp.asarray(math.log(0.01), jnp.float32),
        }

    def learning_rate(self, meta_params) -> jax.Array:
        return jnp.exp(meta_params["log_lr"])

    def init_state(self, meta_params, params) -> LearnedRuleState:
        del meta_params
        spec = _trees.param_spec(params)
        dtype = STATE_DTYPES[self.state_dtype]

        def zeros(*trailing):
            return _trees.pack(
                _trees.zeros_like_groups(params, self.layout, trailing, dtype), spec, self.layout
            )

        return LearnedRuleState(
            momenta=zeros(len(self.decays)),
            nu=zeros(),
            count=jnp.zeros((), jnp.int32),
            spec=spec,
        )

    def _direction(self, meta_params, state, grads, params, loss):
        del loss
        layout, count = self.layout, state.count + 1
        template = (0, 0)
        directions, group_states = [], []
        for g, theta, group_state in zip(
            _trees.groups(grads, layout),
            _trees.groups(params, layout),
            _trees.split_state((state.momenta, state.nu), template, layout),
            strict=True,
        ):
            direction, group_state = self._group(meta_params, count, g, theta, group_state)
            directions.append(direction)
            group_states.append(group_state)
        dtype = STATE_DTYPES[self.state_dtype]
        momenta, nu = _trees.join_state(group_states, template, state.spec, layout, dtype)
        new_state = LearnedRuleState(momenta, nu, count, state.spec)
        return _trees.ungroup(directions, state.spec, layout), new_state

    def _group(self, meta_params, count, g, theta, group_state):
        """The direction and new state of one group of coordinates, in float32."""
        momenta, nu = (x.astype(jnp.float32) for x in group_state)
        decays = features.trailing(jnp.asarray(self.decays, jnp.float32), g.ndim)
        momenta = decays * momenta + (1.0 - decays) * g[..., None]
        nu = self.rms_decay * nu + (1.0 - self.rms_decay) * g**2
        t = count.astype(jnp.float32)
        m_hat = momenta / (1.0 - decays**t)
        rms = features.safe_sqrt(nu / (1.0 - self.rms_decay**t)) + self.eps
        # The features in the order of feature_names(), combined without materialising a
        # (..., num_features) array (several times faster for large tensors).
        m_hat = [m_hat[..., k] for k in range(len(self.decays))]
        columns = [g, *m_hat, theta, g / rms, *(m / rms for m in m_hat)]
        direction = sum(c * f for c, f in zip(meta_params["coef"], columns, strict=True))
        return direction, (momenta, nu)
