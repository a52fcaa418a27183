"""Meta-gradient estimators over truncated unrolls: truncated backprop and PES.

An estimator owns the inner runs of a meta-batch (its state) and, each meta-step, advances them
by one segment and returns a per-task meta-loss and meta-gradient. The trainer averages them,
dropping tasks whose values are not finite.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from learned_opt.meta import unroll as unroll_lib

PyTree = Any


class Estimate(NamedTuple):
    """What an estimator returns for one meta-step; every array has a leading task axis.

    Attributes:
        meta_loss: per-task meta-loss of the segment.
        grads: per-task meta-gradient (a tree shaped like the meta-parameters).
        finite: per-task flag; false tasks are left out of the average and reset.
        resets: per-task flag, true where the run was restarted before this segment.
        losses: per-task inner training losses of the segment, ``(num_tasks, unroll_length)``.
    """

    meta_loss: jax.Array
    grads: PyTree
    finite: jax.Array
    resets: jax.Array
    losses: jax.Array


@dataclasses.dataclass(frozen=True)
class _Truncated(abc.ABC):
    unroll_length: int = 20
    horizon: int = 100
    meta_loss: str = "sum"
    task_chunk: int | None = dataclasses.field(default=None, kw_only=True)

    def __post_init__(self):
        if self.unroll_length < 1 or self.horizon < 1:
            raise ValueError(
                f"unroll_length, horizon: expected positive integers, got "
                f"{self.unroll_length}, {self.horizon}"
            )
        if self.horizon % self.unroll_length:
            raise ValueError(
                f"horizon: expected a multiple of unroll_length ({self.unroll_length}), "
                f"got {self.horizon}"
            )
        if self.task_chunk is not None and self.task_chunk < 1:
            raise ValueError(f"task_chunk: expected None or >= 1, got {self.task_chunk}")
        if self.meta_loss not in unroll_lib.META_LOSSES:
            raise ValueError(
                f"meta_loss: expected one of {unroll_lib.META_LOSSES}, got {self.meta_loss!r}"
            )

    def config(self) -> dict[str, Any]:
        """The estimator's name and settings (part of the run configuration a checkpoint stores)."""
        return {"name": type(self).__name__, **dataclasses.asdict(self)}

    def _runs(self, optimizer, family, meta_params, key, num_tasks) -> unroll_lib.InnerState:
        return unroll_lib.init_runs(
            optimizer, family, meta_params, key, num_tasks, self.horizon, self.unroll_length
        )

    def _unroll(self, optimizer, family, meta_params, run, second_order=False):
        return unroll_lib.unroll(
            optimizer,
            family,
            meta_params,
            run,
            self.unroll_length,
            second_order=second_order,
            meta_loss=self.meta_loss,
        )

    def _map_tasks(self, fn, *args):
        """``vmap`` over the task axis, or ``lax.map`` in chunks of ``task_chunk`` tasks.

        On CPU, tasks with larger models run faster (and in less memory) a few at a time than
        all at once; on accelerators, vectorising every task is usually best.
        """
        if self.task_chunk is None:
            return jax.vmap(fn)(*args)
        num_tasks = jax.tree.leaves(args)[0].shape[0]
        chunk = self.task_chunk
        if num_tasks % chunk:
            raise ValueError(f"task_chunk: {chunk} does not divide the {num_tasks} tasks")

        def split(x):  # explicit shapes: some state leaves are zero-size
            return x.reshape((num_tasks // chunk, chunk, *x.shape[1:]))

        out = jax.lax.map(lambda a: jax.vmap(fn)(*a), jax.tree.map(split, args))
        return jax.tree.map(lambda x: x.reshape((num_tasks, *x.shape[2:])), out)

    def _mark_failed(self, run: unroll_lib.InnerState, ok: jax.Array) -> unroll_lib.InnerState:
        """Sends a run whose meta-loss was not finite to reset at the next segment."""
        return run._replace(step=jnp.where(ok, run.step, self.horizon))

    @abc.abstractmethod
    def init(self, optimizer, family, meta_params, key, num_tasks: int) -> Any:
        """Starts the inner runs; the result has a leading task axis on every leaf."""

    @abc.abstractmethod
    def estimate(self, optimizer, family, meta_params, state, key) -> tuple[Estimate, Any]:
        """Advances every run by one segment; returns the estimate and the next state."""


@dataclasses.dataclass(frozen=True)
class TruncatedBackprop(_Truncated):
    """Truncated backpropagation through time over segments of ``unroll_length`` steps.

    Each segment is differentiated exactly; the inner state entering it is a constant. Biased
    toward short horizons but low-variance: the L2L estimator.

    Args:
        unroll_length: steps per segment (20 in L2L).
        horizon: steps of one inner training run before its task is reset (100 in L2L).
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

    def init(self, optimizer, family, meta_params, key, num_tasks):
        return self._runs(optimizer, family, meta_params, key, num_tasks)

    def estimate(self, optimizer, family, meta_params, state, key):
        del key
        done = jax.vmap(lambda r: unroll_lib.finished(r, self.horizon))(state)
        runs = jax.vmap(lambda r, d: unroll_lib.reset(optimizer, family, meta_params, r, d))(
            state, done
        )

        def task(mp, run):
            value, run, losses = self._unroll(optimizer, family, mp, run, self.second_order)
            return value, (run, losses)

        grad_fn = jax.value_and_grad(task, has_aux=True)
        (values, (runs, losses)), grads = self._map_tasks(lambda r: grad_fn(meta_params, r), runs)
        ok = jnp.isfinite(values) & jax.vmap(unroll_lib.is_finite)(grads)
        return Estimate(values, grads, ok, done, losses), self._mark_failed(runs, ok)


class PESState(NamedTuple):
    """Inner runs of the positive and negative particles and the accumulated perturbations."""

    positive: unroll_lib.InnerState
    negative: unroll_lib.InnerState
    accumulated: PyTree


@dataclasses.dataclass(frozen=True)
class PES(_Truncated):
    """Persistent evolution strategies: unbiased meta-gradients over the whole horizon.

    Each task is an antithetic pair of inner runs, advanced with ``meta_params ± eps``
    (``eps ~ N(0, std^2)`` drawn per segment). The perturbations are accumulated over the
    segments of a run, which removes the truncation bias of truncated backprop; no derivative of
    the inner loop is taken, so long horizons cost no memory and cannot explode.

    Args:
        unroll_length: steps per segment.
        horizon: steps of one inner run before its task is reset.
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

    std: float = 0.01

    def init(self, optimizer, family, meta_params, key, num_tasks):
        runs = self._runs(optimizer, family, meta_params, key, num_tasks)
        zeros = jax.tree.map(lambda p: jnp.zeros((num_tasks, *p.shape), p.dtype), meta_params)
        return PESState(runs, runs, zeros)

    def estimate(self, optimizer, family, meta_params, state, key):
        fin = jax.vmap(lambda r: unroll_lib.finished(r, self.horizon))
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
            run_pos = unroll_lib.reset(optimizer, family, meta_params, run_pos, d)
            run_neg = unroll_lib.reset(optimizer, family, meta_params, run_neg, d)
            acc = jax.tree.map(lambda a, x: jnp.where(d, 0.0, a) + x, acc, e)
            plus = jax.tree.map(jnp.add, meta_params, e)
            minus = jax.tree.map(jnp.subtract, meta_params, e)
            value_pos, run_pos, losses = self._unroll(optimizer, family, plus, run_pos)
            value_neg, run_neg, _ = self._unroll(optimizer, family, minus, run_neg)
            scale = (value_pos - value_neg) / (2.0 * self.std**2)
            grad = jax.tree.map(lambda a: a * scale, acc)
            return 0.5 * (value_pos + value_neg), grad, run_pos, run_neg, acc, losses

        values, grads, pos, neg, acc, losses = self._map_tasks(
            task, state.positive, state.negative, done, eps, state.accumulated
        )
        ok = jnp.isfinite(values) & jax.vmap(unroll_lib.is_finite)(grads)
        new_state = PESState(self._mark_failed(pos, ok), self._mark_failed(neg, ok), acc)
        return Estimate(values, grads, ok, done, losses), new_state
