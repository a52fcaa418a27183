"""A parametric learning rule in the spirit of Bengio, Bengio & Cloutier (1991)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from learned_opt.optimizers import _trees
from learned_opt.optimizers.base import LearnedOptimizer


class LearnedRuleState(NamedTuple):
    """State of :class:`LearnedRule`.

    Attributes:
        momenta: gradient EMAs, ``(num_coordinates, len(decays))``.
        nu: EMA of the squared gradient, ``(num_coordinates,)``.
        count: steps taken, int32.
        spec: zero-size record of the parameters' structure, shapes and dtypes.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> import learned_opt as lo
        >>> rule = lo.LearnedRule(decays=(0.5, 0.9, 0.99))
        >>> state = rule.init_state(rule.init(jax.random.key(0)), [jnp.zeros((4, 2))])
        >>> state.momenta.shape, state.nu.shape, int(state.count)
        ((8, 3), (8,), 0)

    References:
        Bengio, Bengio & Cloutier, "Learning a synaptic learning rule", IJCNN 1991.
    """

    momenta: jax.Array
    nu: jax.Array
    count: jax.Array
    spec: Any


@dataclasses.dataclass(frozen=True)
class LearnedRule(LearnedOptimizer):
    """The update as a learned linear combination of a few per-coordinate features.

    ``update = -exp(log_lr) * sum_k coef_k * feature_k`` with features: the gradient ``g``; its
    bias-corrected momenta ``m_b`` for each decay ``b``; the parameter ``theta`` (learned weight
    decay); and the products ``g / sqrt(nu)`` and ``m_b / sqrt(nu)`` with the bias-corrected
    second moment ``nu`` (Adam-like directions). SGD, momentum, Adam without epsilon tuning and
    weight decay are all points of this family; meta-training picks the combination.

    Args:
        decays: momentum decays.
        rms_decay: decay of the squared-gradient EMA.
        eps: stabiliser of the normalised features.

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

    needs_params = True

    def __post_init__(self):
        object.__setattr__(self, "decays", tuple(float(d) for d in self.decays))
        if not all(0.0 <= d < 1.0 for d in (*self.decays, self.rms_decay)):
            raise ValueError(f"decays, rms_decay: expected values in [0, 1), got {self}")

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

    def init_state(self, meta_params, params) -> LearnedRuleState:
        del meta_params
        spec = _trees.param_spec(params)
        n = _trees.num_coordinates(spec)
        return LearnedRuleState(
            momenta=jnp.zeros((n, len(self.decays)), jnp.float32),
            nu=jnp.zeros((n,), jnp.float32),
            count=jnp.zeros((), jnp.int32),
            spec=spec,
        )

    def _step(self, meta_params, state, grads, params, loss):
        del loss
        g = _trees.ravel(grads)
        theta = _trees.ravel(params)
        decays = jnp.asarray(self.decays, jnp.float32)[None, :]
        count = state.count + 1
        momenta = decays * state.momenta + (1.0 - decays) * g[:, None]
        nu = self.rms_decay * state.nu + (1.0 - self.rms_decay) * g**2
        t = count.astype(jnp.float32)
        m_hat = momenta / (1.0 - decays**t)
        rms = jnp.sqrt(nu / (1.0 - self.rms_decay**t)) + self.eps
        # The features in the order of feature_names(), combined without materialising an
        # (N, num_features) matrix (several times faster for large N).
        columns = [g, *m_hat.T, theta, g / rms, *(m_hat / rms[:, None]).T]
        combined = sum(c * f for c, f in zip(meta_params["coef"], columns, strict=True))
        step = -jnp.exp(meta_params["log_lr"]) * combined
        return _trees.unravel(step, state.spec), LearnedRuleState(momenta, nu, count, state.spec)
