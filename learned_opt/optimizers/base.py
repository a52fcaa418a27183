"""The interface every learned optimizer implements, and its export as an optax transformation."""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import optax

from learned_opt.optimizers import _trees

PyTree = Any
MetaParams = PyTree

_REGISTRY: dict[str, type[LearnedOptimizer]] = {}


def architecture(name: str) -> type[LearnedOptimizer]:
    """Returns the learned-optimizer class registered under ``name`` (its class name)."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"architecture: unknown learned optimizer {name!r}; known: {sorted(_REGISTRY)}"
        ) from None


@dataclasses.dataclass(frozen=True)
class LearnedOptimizer(abc.ABC):
    """A learned optimizer: a frozen configuration plus pure functions of its meta-parameters.

    Subclasses are frozen dataclasses whose fields are the architecture's configuration. All
    computation goes through three pure functions, so meta-training can differentiate through
    them under ``jit``, ``vmap`` and ``grad``:

    * ``init(key) -> meta_params``: the optimizer's own weights, a plain pytree;
    * ``init_state(meta_params, params) -> state``: per-coordinate state for a parameter tree;
    * ``step(meta_params, state, grads, params, loss) -> (updates, state)``.

    ``as_optax(meta_params)`` wraps them as an ``optax.GradientTransformationExtraArgs``.

    A new architecture subclasses this class as a frozen dataclass and implements ``init``,
    ``init_state`` and ``_step`` (the update on inputs that ``step`` has already checked). Its
    state must have a ``spec`` field: a pytree shaped like the parameters whose leaves are
    zero-size arrays ``(0, *leaf.shape)`` in the leaf's dtype, which ``step`` checks every
    incoming tree against. Subclasses are registered by class name, so ``learned_opt.save`` and
    ``learned_opt.load`` work for them once they are imported. Set ``needs_params = True`` if
    ``_step`` reads the parameters and give the class a ``use_loss`` field if it reads the loss.

    Example:
        A learned sign-SGD with one meta-parameter, its log learning rate:

        >>> import dataclasses, typing, jax, jax.numpy as jnp
        >>> import learned_opt as lo
        >>> class SignState(typing.NamedTuple):
        ...     spec: typing.Any
        >>> @dataclasses.dataclass(frozen=True)
        ... class LearnedSignSGD(lo.LearnedOptimizer):
        ...     def init(self, key):
        ...         return {"log_lr": jnp.log(jnp.float32(0.1))}
        ...     def init_state(self, meta_params, params):
        ...         spec = jax.tree.map(lambda p: jnp.zeros((0, *p.shape), p.dtype), params)
        ...         return SignState(spec)
        ...     def _step(self, meta_params, state, grads, params, loss):
        ...         lr = jnp.exp(meta_params["log_lr"])
        ...         return jax.tree.map(lambda g: -lr * jnp.sign(g), grads), state
        >>> opt = LearnedSignSGD()
        >>> tx = opt.as_optax(opt.init(jax.random.key(0)))
        >>> params = {"w": jnp.zeros(2)}
        >>> updates, _ = tx.update({"w": jnp.array([2.0, -3.0])}, tx.init(params), params)
        >>> [round(float(u), 3) for u in updates["w"]]
        [-0.1, 0.1]
    """

    #: Whether ``step`` reads the current parameters.
    needs_params: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        _REGISTRY[cls.__name__] = cls

    @property
    def uses_loss(self) -> bool:
        """Whether ``step`` reads the loss (then ``tx.update`` needs ``value=``)."""
        return getattr(self, "use_loss", False)

    @abc.abstractmethod
    def init(self, key: jax.Array) -> MetaParams:
        """Samples the optimizer's meta-parameters."""

    @abc.abstractmethod
    def init_state(self, meta_params: MetaParams, params: PyTree) -> Any:
        """Returns the optimizer state (float32, one row per coordinate) for ``params``."""

    @abc.abstractmethod
    def _step(self, meta_params, state, grads, params, loss) -> tuple[PyTree, Any]:
        """The update rule on checked inputs."""

    def step(
        self,
        meta_params: MetaParams,
        state: Any,
        grads: PyTree,
        params: PyTree | None = None,
        loss: jax.Array | float | None = None,
    ) -> tuple[PyTree, Any]:
        """Computes updates (to be added to ``params``) and the next state.

        Args:
            meta_params: the optimizer's weights.
            state: from ``init_state`` or a previous ``step``.
            grads: gradients, a tree matching the parameters the state was made for.
            params: current parameters; needed when ``needs_params`` is true.
            loss: current scalar loss; needed when ``uses_loss`` is true.

        Returns:
            ``(updates, new_state)``; each update leaf has its parameter's dtype.
        """
        _trees.check_tree(grads, state.spec, "updates")
        if self.needs_params:
            if params is None:
                raise ValueError(
                    f"params: {type(self).__name__} reads the current parameters; call "
                    "tx.update(grads, state, params, value=loss)."
                )
            _trees.check_tree(params, state.spec, "params")
        if self.uses_loss:
            if loss is None:
                raise ValueError(
                    f"value: {type(self).__name__}(use_loss=True) reads the loss; pass it as "
                    "tx.update(grads, state, params, value=loss), or build the optimizer with "
                    "use_loss=False for loss-free use (e.g. flax's TrainState.apply_gradients)."
                )
            if jnp.ndim(loss) != 0:
                raise ValueError(f"value: expected a scalar loss, got shape {jnp.shape(loss)}.")
        return self._step(meta_params, state, grads, params, loss)

    def config(self) -> dict[str, Any]:
        """The architecture's configuration, as plain values (see ``learned_opt.save``)."""
        return dataclasses.asdict(self)

    def as_optax(self, meta_params: MetaParams) -> optax.GradientTransformationExtraArgs:
        """Exports the optimizer with fixed meta-parameters as an optax transformation.

        The returned transformation follows optax's conventions: the loss is passed as
        ``value=`` (keyword-only), unknown extra arguments are ignored, and it composes with
        ``optax.chain``, ``optax.MultiSteps``, ``optax.apply_if_finite`` and
        ``flax.nnx.Optimizer``.

        Args:
            meta_params: the optimizer's weights, e.g. from ``init`` or ``learned_opt.load``.

        Returns:
            An ``optax.GradientTransformationExtraArgs``.

        Example:
            >>> import jax, jax.numpy as jnp, optax
            >>> import learned_opt as lo
            >>> opt = lo.LSTMOptimizer()
            >>> tx = opt.as_optax(opt.init(jax.random.key(0)))
            >>> params = {"w": jnp.ones(3)}
            >>> state = tx.init(params)
            >>> updates, state = tx.update({"w": jnp.ones(3)}, state, params, value=1.0)
            >>> optax.apply_updates(params, updates)["w"].shape
            (3,)
        """

        def init_fn(params):
            return self.init_state(meta_params, params)

        def update_fn(updates, state, params=None, *, value=None, **extra_args):
            del extra_args
            return self.step(meta_params, state, updates, params, value)

        return optax.GradientTransformationExtraArgs(init_fn, update_fn)
