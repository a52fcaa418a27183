"""The interface every learned optimizer implements, and its export as optax transformations."""

from __future__ import annotations

import abc
import dataclasses
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import optax

from learned_opt.optimizers import _trees

PyTree = Any
MetaParams = PyTree

_REGISTRY: dict[str, type[LearnedOptimizer]] = {}


def architecture_name(cls: type) -> str:
    """The name an architecture is registered and saved under: ``module.QualifiedName``.

    Example:
        >>> import learned_opt as lo
        >>> from learned_opt.optimizers.base import architecture_name
        >>> architecture_name(lo.LSTMOptimizer)
        'learned_opt.optimizers.lstm.LSTMOptimizer'
    """
    return f"{cls.__module__}.{cls.__qualname__}"


def architecture(name: str) -> type[LearnedOptimizer]:
    """Returns the learned-optimizer class registered under ``name``.

    ``name`` is a qualified name (:func:`architecture_name`); the bare class name of a built-in
    architecture (as files of learned_opt 0.1 store it) is accepted too.

    Raises:
        ValueError: for an unknown name.

    Example:
        >>> import learned_opt as lo
        >>> from learned_opt.optimizers.base import architecture
        >>> architecture("LSTMOptimizer") is lo.LSTMOptimizer
        True
    """
    if name in _REGISTRY:
        return _REGISTRY[name]
    builtin = [cls for key, cls in _REGISTRY.items() if key == f"learned_opt.optimizers.{name}"]
    builtin += [
        cls
        for cls in _REGISTRY.values()
        if cls.__qualname__ == name and cls.__module__.startswith("learned_opt.optimizers.")
    ]
    if builtin:
        return builtin[0]
    raise ValueError(
        f"architecture: unknown learned optimizer {name!r}; known: {sorted(_REGISTRY)} "
        "(a class is registered when the module that defines it is imported)"
    )


@dataclasses.dataclass(frozen=True)
class LearnedOptimizer(abc.ABC):
    """A learned optimizer: a frozen configuration plus pure functions of its meta-parameters.

    Subclasses are frozen dataclasses whose fields are the architecture's configuration. All
    computation goes through pure functions, so meta-training can differentiate through them
    under ``jit``, ``vmap`` and ``grad``:

    * ``init(key) -> meta_params``: the optimizer's own weights, a plain pytree;
    * ``init_state(meta_params, params) -> state``: per-coordinate state for a parameter tree;
    * ``direction(meta_params, state, grads, params, loss) -> (direction, state)``: the
      update's direction (oriented like a gradient), before the step size;
    * ``learning_rate(meta_params)``: the built-in step size;
    * ``step(...) -> (updates, state)``: ``updates = -learning_rate * direction``.

    ``as_optax(meta_params)`` wraps them as one optax transformation, and ``scale_by`` as a
    direction to chain with ``optax.scale_by_learning_rate`` (and, say,
    ``optax.add_decayed_weights``); the two agree at the built-in step size.

    A new architecture subclasses this class as a frozen dataclass and implements ``init``,
    ``init_state`` and ``_direction`` (on inputs that have been checked), and ``learning_rate``
    if its step size is not 1. Its state is a NamedTuple with a ``count`` field (int32, steps
    taken) and a ``spec`` field: a pytree shaped like the parameters whose leaves are zero-size
    arrays ``(0, *leaf.shape)`` in the leaf's dtype, which every step checks the incoming trees
    against. Subclasses are registered under their qualified name, so ``learned_opt.save`` and
    ``learned_opt.load`` work for them once their module is imported; defining a second class
    under a name already taken raises an error. Override ``needs_params`` if ``_direction``
    reads the parameters and give the class a ``use_loss`` field if it reads the loss.

    Example:
        A learned sign-SGD with one meta-parameter, its log learning rate:

        >>> import dataclasses, typing, jax, jax.numpy as jnp
        >>> import learned_opt as lo
        >>> class SignState(typing.NamedTuple):
        ...     count: jax.Array
        ...     spec: typing.Any
        >>> @dataclasses.dataclass(frozen=True)
        ... class LearnedSignSGD(lo.LearnedOptimizer):
        ...     def init(self, key):
        ...         return {"log_lr": jnp.log(jnp.float32(0.1))}
        ...     def init_state(self, meta_params, params):
        ...         spec = jax.tree.map(lambda p: jnp.zeros((0, *p.shape), p.dtype), params)
        ...         return SignState(jnp.zeros((), jnp.int32), spec)
        ...     def learning_rate(self, meta_params):
        ...         return jnp.exp(meta_params["log_lr"])
        ...     def _direction(self, meta_params, state, grads, params, loss):
        ...         return jax.tree.map(jnp.sign, grads), state._replace(count=state.count + 1)
        >>> opt = LearnedSignSGD()
        >>> tx = opt.as_optax(opt.init(jax.random.key(0)))
        >>> params = {"w": jnp.zeros(2)}
        >>> updates, _ = tx.update({"w": jnp.array([2.0, -3.0])}, tx.init(params), params)
        >>> [round(float(u), 3) for u in updates["w"]]
        [-0.1, 0.1]
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        name = architecture_name(cls)
        previous = _REGISTRY.get(name)
        if previous is not None and previous is not cls:
            if cls.__module__ != "__main__":
                raise ValueError(
                    f"architecture: {name!r} is already registered (by {previous!r}); give the "
                    "new class another name or module"
                )
            warnings.warn(
                f"architecture {name!r} redefined in __main__; files saved with it now load as "
                "the new class",
                RuntimeWarning,
                stacklevel=2,
            )
        _REGISTRY[name] = cls

    @property
    def needs_params(self) -> bool:
        """Whether the update reads the current parameters."""
        return False

    @property
    def uses_loss(self) -> bool:
        """Whether the update reads the loss (then ``tx.update`` needs ``value=``)."""
        return getattr(self, "use_loss", False)

    @abc.abstractmethod
    def init(self, key: jax.Array) -> MetaParams:
        """Samples the optimizer's meta-parameters."""

    @abc.abstractmethod
    def init_state(self, meta_params: MetaParams, params: PyTree) -> Any:
        """Returns the optimizer state for ``params``."""

    @abc.abstractmethod
    def _direction(self, meta_params, state, grads, params, loss) -> tuple[PyTree, Any]:
        """The update's direction (before ``-learning_rate``) on checked inputs."""

    def learning_rate(self, meta_params: MetaParams) -> jax.Array | float:
        """The built-in step size: ``step`` returns ``-learning_rate * direction``."""
        del meta_params
        return 1.0

    def direction(
        self,
        meta_params: MetaParams,
        state: Any,
        grads: PyTree,
        params: PyTree | None = None,
        loss: jax.Array | float | None = None,
    ) -> tuple[PyTree, Any]:
        """The update's direction, oriented like a gradient, and the next state.

        Args:
            meta_params: the optimizer's weights.
            state: from ``init_state`` or a previous step.
            grads: gradients, a tree matching the parameters the state was made for.
            params: current parameters; needed when ``needs_params`` is true.
            loss: current scalar loss; needed when ``uses_loss`` is true.

        Returns:
            ``(direction, new_state)``; each direction leaf has its parameter's dtype.
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
                    "tx.update(grads, state, params, value=loss), or use an optimizer built "
                    "with use_loss=False for loss-free use (e.g. flax's "
                    "TrainState.apply_gradients)."
                )
            if jnp.ndim(loss) != 0:
                raise ValueError(f"value: expected a scalar loss, got shape {jnp.shape(loss)}.")
        return self._direction(meta_params, state, grads, params, loss)

    def step(
        self,
        meta_params: MetaParams,
        state: Any,
        grads: PyTree,
        params: PyTree | None = None,
        loss: jax.Array | float | None = None,
        *,
        learning_rate: jax.Array | float | None = None,
    ) -> tuple[PyTree, Any]:
        """Computes updates (to be added to ``params``) and the next state.

        ``updates = -learning_rate * direction``, with the built-in step size unless
        ``learning_rate`` is given. Arguments as for :meth:`direction`.

        Returns:
            ``(updates, new_state)``; each update leaf has its parameter's dtype.
        """
        if learning_rate is None:
            learning_rate = self.learning_rate(meta_params)
        direction, state = self.direction(meta_params, state, grads, params, loss)
        updates = jax.tree.map(lambda d: ((-learning_rate) * d).astype(d.dtype), direction)
        return updates, state

    def config(self) -> dict[str, Any]:
        """The architecture's configuration, as plain values (see ``learned_opt.save``)."""
        return dataclasses.asdict(self)

    def scale_by(self, meta_params: MetaParams) -> optax.GradientTransformationExtraArgs:
        """The learned update's direction as a composable optax transformation.

        The output is oriented like a gradient and carries no step size: follow it with
        ``optax.scale_by_learning_rate(learning_rate)`` (a float or a schedule), optionally after
        ``optax.add_decayed_weights``, as for ``optax.scale_by_adam``. At
        ``learning_rate = opt.learning_rate(meta_params)`` the chain equals ``as_optax``. The
        loss is passed as ``value=`` (keyword-only); unknown extra arguments are ignored.

        Example:
            >>> import jax, jax.numpy as jnp, optax
            >>> import learned_opt as lo
            >>> opt = lo.LSTMOptimizer(hidden_size=4, use_loss=False)
            >>> meta_params = opt.init(jax.random.key(0))
            >>> tx = optax.chain(
            ...     optax.add_decayed_weights(1e-4),
            ...     opt.scale_by(meta_params),
            ...     optax.scale_by_learning_rate(optax.cosine_decay_schedule(0.1, 100)),
            ... )
            >>> params = {"w": jnp.ones(3)}
            >>> updates, state = tx.update({"w": jnp.ones(3)}, tx.init(params), params)
            >>> updates["w"].shape
            (3,)
        """

        def init_fn(params):
            return self.init_state(meta_params, params)

        def update_fn(updates, state, params=None, *, value=None, **extra_args):
            del extra_args
            return self.direction(meta_params, state, updates, params, value)

        return optax.GradientTransformationExtraArgs(init_fn, update_fn)

    def as_optax(
        self,
        meta_params: MetaParams,
        learning_rate: optax.ScalarOrSchedule | None = None,
    ) -> optax.GradientTransformationExtraArgs:
        """Exports the optimizer with fixed meta-parameters as an optax transformation.

        The returned transformation follows optax's conventions: the loss is passed as
        ``value=`` (keyword-only), unknown extra arguments are ignored, and it composes with
        ``optax.chain``, ``optax.MultiSteps``, ``optax.apply_if_finite`` and
        ``flax.nnx.Optimizer``. Its state is the optimizer's own state.

        Args:
            meta_params: the optimizer's weights, e.g. from ``init`` or ``learned_opt.load``.
            learning_rate: the step size, a number or an optax schedule of the step count;
                ``None`` uses the built-in ``learning_rate(meta_params)``. Equal to
                ``optax.chain(self.scale_by(meta_params), optax.scale_by_learning_rate(lr))``.

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
            lr = learning_rate(state.count) if callable(learning_rate) else learning_rate
            return self.step(meta_params, state, updates, params, value, learning_rate=lr)

        return optax.GradientTransformationExtraArgs(init_fn, update_fn)
