"""Meta-gradient estimators over truncated unrolls: the protocol, truncated backprop and PES.

An estimator owns the inner runs of a meta-batch (its state) and, each meta-step, advances them
by one segment and returns a per-task meta-loss and meta-gradient (an :class:`Estimate`). The
trainer combines them; :class:`GradientEstimator` is the protocol it relies on, and
:class:`TruncatedEstimator` the helper base of the two built-in estimators.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, Protocol, runtime_checkable

import jax
import jax.numpy as jnp

from learned_opt import _checks
from learned_opt.meta import unroll as unroll_lib
from learned_opt.meta.unroll import Horizon, MetaLoss

if TYPE_CHECKING:
    from learned_opt.optimizers.base import LearnedOptimizer
    from learned_opt.tasks.base import TaskFamily

PyTree = Any


class Estimate(NamedTuple):
    """What an estimator returns for one meta-step; every array has a leading task axis.

    Attributes:
        meta_loss: per-task meta-loss of the segment.
        grads: per-task meta-gradient (a tree shaped like the meta-parameters).
        finite: per-task flag; false tasks are left out of the average (their runs reset).
        resets: per-task flag, true where the run was restarted before this segment.
        losses: per-task inner training losses of the segment, ``(num_tasks, unroll_length)``.
    """

    meta_loss: jax.Array
    grads: PyTree
    finite: jax.Array
    resets: jax.Array
    losses: jax.Array


@runtime_checkable
class GradientEstimator(Protocol):
    """What :class:`~learned_opt.MetaTrainer` needs from a meta-gradient estimator.

    An estimator owns the inner training runs of ``num_tasks`` tasks of one family (its state,
    a pytree whose every leaf has the task axis first, so the trainer can shard it) and, per
    meta-step, advances them and estimates each task's meta-gradient. Averaging over tasks,
    masking bad tasks, clipping and the meta-update are the trainer's job. The trainer calls
    ``init`` and ``estimate`` once per family of a :class:`~learned_opt.tasks.Mixture`, inside
    its jitted meta-step, so both must be traceable.

    Example:
        An estimator that keeps only the sign of truncated backprop's meta-gradient:

        >>> import dataclasses, jax, jax.numpy as jnp
        >>> import learned_opt as lo
        >>> @dataclasses.dataclass(frozen=True)
        ... class SignOf:
        ...     base: lo.TruncatedBackprop
        ...     def init(self, optimizer, family, meta_params, key, num_tasks):
        ...         return self.base.init(optimizer, family, meta_params, key, num_tasks)
        ...     def estimate(self, optimizer, family, meta_params, state, key):
        ...         estimate, state = self.base.estimate(optimizer, family, meta_params, state, key)
        ...         return estimate._replace(grads=jax.tree.map(jnp.sign, estimate.grads)), state
        ...     def inner_steps_per_task(self):
        ...         return self.base.inner_steps_per_task()
        ...     def config(self):
        ...         return {"name": "SignOf", "base": self.base.config()}
        >>> estimator = SignOf(lo.TruncatedBackprop(unroll_length=5, horizon=10))
        >>> isinstance(estimator, lo.GradientEstimator)
        True
        >>> trainer = lo.MetaTrainer(lo.LearnedRule(), lo.tasks.Quadratic(dim=3), estimator,
        ...                          num_tasks=2)
        >>> state, metrics = trainer.step(trainer.init(jax.random.key(0)))
        >>> trainer.inner_steps_per_meta_step(), int(state.step)
        (10, 1)
    """

    def init(
        self,
        optimizer: LearnedOptimizer,
        family: TaskFamily,
        meta_params: PyTree,
        key: jax.Array,
        num_tasks: int,
    ) -> PyTree:
        """Starts ``num_tasks`` inner runs; every leaf of the result has a leading task axis.

        Raises ``ValueError`` (at trace time) for a ``num_tasks`` the estimator cannot use.
        """
        ...

    def estimate(
        self,
        optimizer: LearnedOptimizer,
        family: TaskFamily,
        meta_params: PyTree,
        state: PyTree,
        key: jax.Array,
    ) -> tuple[Estimate, PyTree]:
        """Advances every run by one segment; returns the per-task estimate and the new state."""
        ...

    def inner_steps_per_task(self) -> int:
        """Inner optimizer steps one ``estimate`` takes per task (all particles together)."""
        ...

    def config(self) -> dict[str, Any]:
        """The estimator's name and settings as plain values (stored in checkpoints)."""
        ...


@dataclasses.dataclass(frozen=True)
class TruncatedEstimator(abc.ABC):
    """Helper base of estimators over truncated segments of inner training runs.

    It holds the settings every such estimator shares and the steps they share: starting
    de-synchronised runs (:meth:`init_runs`), restarting finished ones (:meth:`reset`),
    advancing one run by a segment (:meth:`unroll`), mapping a per-task function over the task
    axis (:meth:`map_tasks`) and sending failed runs to reset (:meth:`mark_failed`). A subclass
    implements ``init`` and ``estimate`` of :class:`GradientEstimator` and sets ``particles``,
    the inner runs per task.

    Args:
        unroll_length: steps per segment (truncation).
        horizon: steps of one inner run before its task is reset, a multiple of
            ``unroll_length``; or a range ``(low, high)`` of such multiples, from which each
            run draws its own horizon (log-uniformly) whenever it starts, so truncations see
            every phase of runs of many lengths (see ``unroll.draw_horizon``).
        meta_loss: ``"sum"`` of the losses after each update (L2L) or ``"log_mean"``.
        task_chunk: process tasks ``task_chunk`` at a time with ``lax.map`` instead of all at
            once with ``vmap`` (faster on CPU for larger task models; ``None``: ``vmap``).
    """

    #: Inner runs per task (2 for the antithetic pair of PES).
    particles: ClassVar[int] = 1

    unroll_length: int = 20
    horizon: Horizon = 100
    meta_loss: MetaLoss = "sum"
    task_chunk: int | None = dataclasses.field(default=None, kw_only=True)

    def __post_init__(self):
        unroll = _checks.integer("unroll_length", self.unroll_length, minimum=1)
        if isinstance(self.horizon, list | tuple):
            if len(self.horizon) != 2:
                raise TypeError(
                    f"horizon: expected an integer or a (low, high) pair, got {self.horizon!r}"
                )
            bounds = tuple(_checks.integer("horizon", h, minimum=1) for h in self.horizon)
            _checks.check(bounds[0] <= bounds[1], f"horizon: need low <= high, got {bounds}")
            object.__setattr__(self, "horizon", bounds)
        else:
            bounds = (_checks.integer("horizon", self.horizon, minimum=1),)
        _checks.check(
            bounds[0] >= unroll,
            f"horizon: expected at least unroll_length ({unroll}), got {self.horizon}",
        )
        _checks.check(
            all(h % unroll == 0 for h in bounds),
            f"horizon: expected a multiple of unroll_length ({unroll}), got {self.horizon}",
        )
        if self.task_chunk is not None:
            _checks.integer("task_chunk", self.task_chunk, minimum=1)
        _checks.choice("meta_loss", self.meta_loss, unroll_lib.META_LOSSES)

    def config(self) -> dict[str, Any]:
        """The estimator's name and settings (part of the run configuration a checkpoint stores)."""
        return {"name": type(self).__name__, **dataclasses.asdict(self)}

    def inner_steps_per_task(self) -> int:
        """``particles * unroll_length``: inner steps one :meth:`estimate` takes per task."""
        return self.particles * self.unroll_length

    def init_runs(self, optimizer, family, meta_params, key, num_tasks) -> unroll_lib.InnerState:
        """``num_tasks`` fresh runs, de-synchronised over the horizon (checks ``task_chunk``)."""
        if self.task_chunk is not None and num_tasks % self.task_chunk:
            raise ValueError(
                f"task_chunk: expected a divisor of the number of tasks ({num_tasks}), "
                f"got {self.task_chunk}"
            )
        return unroll_lib.init_runs(
            optimizer, family, meta_params, key, num_tasks, self.horizon, self.unroll_length
        )

    def reset(self, optimizer, family, meta_params, run, done) -> unroll_lib.InnerState:
        """Restarts one (unbatched) run on a fresh task, with a fresh horizon, where ``done``."""
        return unroll_lib.reset(
            optimizer, family, meta_params, run, done, self.horizon, self.unroll_length
        )

    def unroll(self, optimizer, family, meta_params, run, second_order=False):
        """One segment of one run: ``(meta_loss, new_run, losses)`` (see ``unroll.unroll``)."""
        return unroll_lib.unroll(
            optimizer,
            family,
            meta_params,
            run,
            self.unroll_length,
            second_order=second_order,
            meta_loss=self.meta_loss,
        )

    def map_tasks(self, fn, *args):
        """``vmap`` of ``fn`` over the task axis, or ``lax.map`` in chunks of ``task_chunk`` tasks.

        On CPU, tasks with larger models run faster (and in less memory) a few at a time than
        all at once; on accelerators, vectorising every task is usually best.
        """
        if self.task_chunk is None:
            return jax.vmap(fn)(*args)
        num_tasks = jax.tree.leaves(args)[0].shape[0]
        chunk = self.task_chunk
        if num_tasks % chunk:
            raise ValueError(
                f"task_chunk: expected a divisor of the number of tasks ({num_tasks}), got {chunk}"
            )

        def split(x):  # explicit shapes: some state leaves are zero-size
            return x.reshape((num_tasks // chunk, chunk, *x.shape[1:]))

        out = jax.lax.map(lambda a: jax.vmap(fn)(*a), jax.tree.map(split, args))
        return jax.tree.map(lambda x: x.reshape((num_tasks, *x.shape[2:])), out)

    def mark_failed(self, run: unroll_lib.InnerState, ok: jax.Array) -> unroll_lib.InnerState:
        """Sends the runs where ``ok`` is false to reset at the next segment."""
        return run._replace(step=jnp.where(ok, run.step, run.horizon))

    @abc.abstractmethod
    def init(self, optimizer, family, meta_params, key, num_tasks: int) -> Any:
        """Starts the inner runs; the result has a leading task axis on every leaf."""

    @abc.abstractmethod
    def estimate(self, optimizer, family, meta_params, state, key) -> tuple[Estimate, Any]:
        """Advances every run by one segment; returns the estimate and the next state."""


def _finite_tasks(values: jax.Array, grads: PyTree) -> jax.Array:
    return jnp.isfinite(values) & jax.vmap(unroll_lib.is_finite)(grads)


@dataclasses.dataclass(frozen=True)
class TruncatedBackprop(TruncatedEstimator):
    """Truncated backpropagation through time over segments of ``unroll_length`` steps.

    Each segment is differentiated exactly; the inner state entering it is a constant. Biased
    toward short horizons but low-variance: the L2L estimator.

    Args:
        unroll_length: steps per segment (20 in L2L).
        horizon: steps of one inner training run before its task is reset (100 in L2L), or a
            range ``(low, high)`` from which each run draws its own (see
            :class:`TruncatedEstimator`).
        meta_loss: ``"sum"`` of the losses after each update (L2L) or ``"log_mean"``.
        second_order: differentiate through the gradient inputs too (L2L drops this).
        task_chunk: process tasks ``task_chunk`` at a time with ``lax.map`` instead of all at
            once with ``vmap`` (faster on CPU for larger task models; ``None``: ``vmap``).

    Example:
        >>> import learned_opt as lo
        >>> lo.TruncatedBackprop(unroll_length=20, horizon=100).horizon
        100

    References:
        Andrychowicz et al., "Learning to learn by gradient descent by gradient descent", 2016.
    """

    second_order: bool = False

    def __post_init__(self):
        super().__post_init__()
        _checks.boolean("second_order", self.second_order)

    def init(self, optimizer, family, meta_params, key, num_tasks):
        return self.init_runs(optimizer, family, meta_params, key, num_tasks)

    def estimate(self, optimizer, family, meta_params, state, key):
        del key
        done = jax.vmap(unroll_lib.finished)(state)
        runs = jax.vmap(lambda r, d: self.reset(optimizer, family, meta_params, r, d))(state, done)

        def task(mp, run):
            value, run, losses = self.unroll(optimizer, family, mp, run, self.second_order)
            return value, (run, losses)

        grad_fn = jax.value_and_grad(task, has_aux=True)
        (values, (runs, losses)), grads = self.map_tasks(lambda r: grad_fn(meta_params, r), runs)
        ok = _finite_tasks(values, grads)
        return Estimate(values, grads, ok, done, losses), self.mark_failed(runs, ok)


class PESState(NamedTuple):
    """Inner runs of the positive and negative particles and the accumulated perturbations."""

    positive: unroll_lib.InnerState
    negative: unroll_lib.InnerState
    accumulated: PyTree


@dataclasses.dataclass(frozen=True)
class PES(TruncatedEstimator):
    """Persistent evolution strategies: unbiased meta-gradients over the whole horizon.

    Each task is an antithetic pair of inner runs, advanced with ``meta_params ± eps``
    (``eps ~ N(0, std^2)`` drawn per segment). The perturbations are accumulated over the
    segments of a run, which removes the truncation bias of truncated backprop; no derivative of
    the inner loop is taken, so long horizons cost no memory and cannot explode.

    Args:
        unroll_length: steps per segment.
        horizon: steps of one inner run before its task is reset, or a range ``(low, high)``
            from which each run draws its own (see :class:`TruncatedEstimator`).
        meta_loss: ``"sum"`` or ``"log_mean"``.
        std: standard deviation of the perturbations.
        task_chunk: as for :class:`TruncatedBackprop`.

    Example:
        >>> import learned_opt as lo
        >>> lo.PES(unroll_length=10, horizon=1000, std=0.01).std
        0.01

    References:
        Vicol, Metz & Sohl-Dickstein, "Unbiased gradient estimation in unrolled computation
        graphs with persistent evolution strategies", ICML 2021.
    """

    particles: ClassVar[int] = 2

    std: float = 0.01

    def __post_init__(self):
        super().__post_init__()
        _checks.real("std", self.std, minimum=0.0, inclusive=False)

    def init(self, optimizer, family, meta_params, key, num_tasks):
        runs = self.init_runs(optimizer, family, meta_params, key, num_tasks)
        zeros = jax.tree.map(lambda p: jnp.zeros((num_tasks, *p.shape), p.dtype), meta_params)
        return PESState(runs, runs, zeros)

    def estimate(self, optimizer, family, meta_params, state, key):
        fin = jax.vmap(unroll_lib.finished)
        done = fin(state.positive) | fin(state.negative)
        num_tasks = done.shape[0]
        leaves, treedef = jax.tree.flatten(meta_params)
        keys = jax.random.split(key, len(leaves))
        eps = jax.tree.unflatten(
            treedef,
            [
                self.std * jax.random.normal(k, (num_tasks, *p.shape), p.dtype)
                for k, p in zip(keys, leaves, strict=True)
            ],
        )

        def task(run_pos, run_neg, d, e, acc):
            run_pos = self.reset(optimizer, family, meta_params, run_pos, d)
            run_neg = self.reset(optimizer, family, meta_params, run_neg, d)
            acc = jax.tree.map(lambda a, x: jnp.where(d, 0.0, a) + x, acc, e)
            plus = jax.tree.map(jnp.add, meta_params, e)
            minus = jax.tree.map(jnp.subtract, meta_params, e)
            value_pos, run_pos, losses = self.unroll(optimizer, family, plus, run_pos)
            value_neg, run_neg, _ = self.unroll(optimizer, family, minus, run_neg)
            scale = (value_pos - value_neg) / (2.0 * self.std**2)
            grad = jax.tree.map(lambda a: a * scale, acc)
            return 0.5 * (value_pos + value_neg), grad, run_pos, run_neg, acc, losses

        values, grads, pos, neg, acc, losses = self.map_tasks(
            task, state.positive, state.negative, done, eps, state.accumulated
        )
        ok = _finite_tasks(values, grads)
        new_state = PESState(self.mark_failed(pos, ok), self.mark_failed(neg, ok), acc)
        return Estimate(values, grads, ok, done, losses), new_state
