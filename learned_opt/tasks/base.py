"""The interface every task family implements: a distribution over training problems."""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, ClassVar

import jax

from learned_opt._checks import boolean as boolean
from learned_opt._checks import check as check
from learned_opt._checks import choice as choice
from learned_opt._checks import float_range as float_range
from learned_opt._checks import integer as integer
from learned_opt._checks import positive_ints as positive_ints
from learned_opt._checks import real as real

PyTree = Any

#: Seed of the key that the default ``TaskFamily.eval_loss`` draws its batch with.
EVAL_SEED = 0


def plain(value: Any) -> Any:
    """Converts tuples (recursively) to lists and numpy scalars to Python values."""
    if isinstance(value, tuple | list):
        return [plain(v) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:
        return value.item()
    return value


class TaskFamily(abc.ABC):
    """A distribution over training problems.

    Task variation lives in arrays (``task_params``), so a batch of tasks is one vmapped program::

        task_params = jax.vmap(family.sample)(keys)
        params = jax.vmap(family.init)(task_params, init_keys)

    Every method is a pure function of its arguments, jittable and vmappable over
    ``(task_params, key)``. Built-in families are frozen dataclasses whose fields are plain
    configuration values, so a family is hashable and can be a static argument of ``jax.jit``;
    ``config()`` returns those values, and for the built-in families
    ``get_family(**family.config())`` rebuilds the family.

    Subclasses implement ``sample``, ``init``, ``batch`` and ``loss`` and set the class attribute
    ``name`` (it defaults to the lower-cased class name).

    Example:
        A linear-regression family in a few lines:

        >>> import dataclasses, jax, jax.numpy as jnp
        >>> from learned_opt.tasks import TaskFamily
        >>> @dataclasses.dataclass(frozen=True)
        ... class LinearRegression(TaskFamily):
        ...     dim: int = 3
        ...     def sample(self, key):
        ...         return {"w_true": jax.random.normal(key, (self.dim,))}
        ...     def init(self, task_params, key):
        ...         return {"w": jnp.zeros(self.dim)}
        ...     def batch(self, task_params, key):
        ...         x = jax.random.normal(key, (16, self.dim))
        ...         return x, x @ task_params["w_true"]
        ...     def loss(self, task_params, params, batch):
        ...         x, y = batch
        ...         return jnp.mean((x @ params["w"] - y) ** 2)
        >>> family = LinearRegression()
        >>> family.name, family.config()
        ('linearregression', {'name': 'linearregression', 'dim': 3})
        >>> keys = jax.random.split(jax.random.key(0), 4)
        >>> task_params = jax.vmap(family.sample)(keys)
        >>> params = jax.vmap(family.init)(task_params, keys)
        >>> jax.vmap(family.eval_loss)(task_params, params).shape
        (4,)
    """

    #: Short identifier of the family (the key of ``get_family``).
    name: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__:
            cls.name = cls.__name__.lower()

    @abc.abstractmethod
    def sample(self, key: jax.Array) -> PyTree:
        """Draws one task: a pytree of arrays with at least one array leaf."""

    @abc.abstractmethod
    def init(self, task_params: PyTree, key: jax.Array) -> PyTree:
        """Returns the initial model parameters (a float32 pytree) of the task."""

    @abc.abstractmethod
    def batch(self, task_params: PyTree, key: jax.Array) -> PyTree:
        """Draws one minibatch (a pytree of arrays; ``()`` for deterministic losses)."""

    @abc.abstractmethod
    def loss(self, task_params: PyTree, params: PyTree, batch: PyTree) -> jax.Array:
        """Returns the scalar float32 training loss of ``params`` on ``batch``."""

    def eval_loss(self, task_params: PyTree, params: PyTree) -> jax.Array:
        """Returns a low-noise loss for comparing final parameters.

        The default is the loss on the batch drawn with the fixed key ``jax.random.key(0)``;
        families with data override it with the loss on a fixed evaluation set.
        """
        return self.loss(task_params, params, self.batch(task_params, jax.random.key(EVAL_SEED)))

    def task(self, key: jax.Array) -> Task:
        """Samples one concrete problem of the family."""
        return Task(self, self.sample(key))

    def config(self) -> dict[str, Any]:
        """The family's name and configuration as plain values (tuples become lists)."""
        out: dict[str, Any] = {"name": self.name}
        if dataclasses.is_dataclass(self):
            for field in dataclasses.fields(self):
                if field.init and field.compare:
                    out[field.name] = plain(getattr(self, field.name))
        return out


@dataclasses.dataclass(frozen=True, eq=False)
class Task:
    """One concrete problem: a family together with one draw of its ``task_params``.

    ``Task`` is a pytree whose only leaves are the ``task_params`` (the family is static), so
    tasks pass through ``jax.jit`` and ``jax.vmap``.

    Attributes:
        family: the family the task was drawn from.
        task_params: the task's arrays, from ``family.sample``.

    Example:
        >>> import jax
        >>> from learned_opt.tasks import Quadratic
        >>> task = Quadratic(dim=3).task(jax.random.key(0))
        >>> params = task.init(jax.random.key(1))
        >>> loss = task.loss(params, task.batch(jax.random.key(2)))
        >>> bool(loss == task.eval_loss(params)), params.shape
        (True, (3,))
    """

    family: TaskFamily
    task_params: PyTree

    def init(self, key: jax.Array) -> PyTree:
        """Initial model parameters (see ``TaskFamily.init``)."""
        return self.family.init(self.task_params, key)

    def batch(self, key: jax.Array) -> PyTree:
        """One minibatch (see ``TaskFamily.batch``)."""
        return self.family.batch(self.task_params, key)

    def loss(self, params: PyTree, batch: PyTree) -> jax.Array:
        """Training loss on ``batch`` (see ``TaskFamily.loss``)."""
        return self.family.loss(self.task_params, params, batch)

    def eval_loss(self, params: PyTree) -> jax.Array:
        """Low-noise evaluation loss (see ``TaskFamily.eval_loss``)."""
        return self.family.eval_loss(self.task_params, params)


jax.tree_util.register_dataclass(Task, data_fields=["task_params"], meta_fields=["family"])
