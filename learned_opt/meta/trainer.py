"""The meta-training loop: one jitted meta-step over a (sharded) batch of tasks of one or more
families."""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from learned_opt import _checks
from learned_opt._files import atomic_write_bytes
from learned_opt.meta import checkpoint as checkpoint_lib
from learned_opt.meta import unroll as unroll_lib
from learned_opt.meta.estimators import GradientEstimator, TruncatedBackprop
from learned_opt.meta.state import MetaTrainState
from learned_opt.optimizers.base import LearnedOptimizer, architecture_name
from learned_opt.tasks.mixture import Mixture

if TYPE_CHECKING:
    from learned_opt.tasks.base import TaskFamily

PyTree = Any
TASK_AXIS = "tasks"


class MetaTrainer:
    """Meta-trains a learned optimizer on a task family or a mixture of families.

    One meta-step advances ``num_tasks`` inner training runs (a ``vmap`` over the task axis,
    sharded over every device of ``mesh``) by one truncated segment, estimates the
    meta-gradient, and applies the meta-optimizer, all under one ``jit``. With a
    :class:`~learned_opt.tasks.Mixture`, each family gets its own ``vmap`` (its task axis
    sharded over the mesh) and the meta-gradient is the mean over all tasks of the mixture, so
    each family weighs in proportion to its number of tasks.

    Bad tasks never reach the meta-parameters. A task whose meta-loss or meta-gradient is not
    finite, or whose meta-gradient's norm exceeds ``max_task_grad_norm``, is *masked*: left out
    of the average before clipping (so the other tasks' gradient is kept whole), and, if not
    finite, reset. The meta-update is applied only if some task was kept and the new
    meta-parameters and meta-optimizer state are all finite; otherwise both stay as they were
    and the step's losses read NaN. ``metrics`` counts ``masked_tasks`` (of which
    ``nonfinite_tasks``) and says whether the update was ``applied``; :meth:`run` warns at
    every step not applied and stops after ``max_skipped_steps`` in a row.

    Args:
        optimizer: the learned optimizer to train.
        family: the task family to train on, or a :class:`~learned_opt.tasks.Mixture`.
        estimator: any :class:`~learned_opt.GradientEstimator`: ``TruncatedBackprop()``
            (the default) or ``PES(...)``, or your own.
        meta_optimizer: any optax transformation (default ``optax.adam(1e-3)``).
        num_tasks: inner runs per meta-step, a multiple of the number of devices (default 8);
            for a mixture, its own total (``None`` or equal to it).
        clip_norm: clip the meta-gradient to this global norm (``None`` disables).
        max_task_grad_norm: mask a task whose meta-gradient's global norm exceeds this (default
            ``1e6``: far above the norms of healthy tasks of the built-in families, far below
            those that overflow a meta-optimizer's second moments, ``sqrt(3e38)``); ``None``
            masks only non-finite tasks.
        mesh: a one-axis ``jax.sharding.Mesh`` named ``"tasks"``; defaults to all devices.
        run_config: anything else that defines the run, as plain JSON values (the command
            line stores the seed, the meta-optimizer's settings and the validation protocol
            here); part of :meth:`config`, so a checkpoint of a run with other values is
            refused on restore.

    Example:
        >>> import jax, optax
        >>> import learned_opt as lo
        >>> trainer = lo.MetaTrainer(
        ...     lo.LSTMOptimizer(hidden_size=4), lo.tasks.Quadratic(dim=3),
        ...     lo.TruncatedBackprop(unroll_length=5, horizon=10), num_tasks=2)
        >>> state = trainer.init(jax.random.key(0))
        >>> state, metrics = trainer.step(state)
        >>> int(state.step), bool(metrics["applied"]), int(metrics["masked_tasks"])
        (1, True, 0)
        >>> sorted(metrics)  # doctest: +NORMALIZE_WHITESPACE
        ['applied', 'grad_norm', 'inner_loss', 'masked_tasks', 'meta_loss', 'nonfinite_tasks',
         'resets']

    References:
        Andrychowicz et al., "Learning to learn by gradient descent by gradient descent", 2016.
    """

    def __init__(
        self,
        optimizer: LearnedOptimizer,
        family: TaskFamily | Mixture,
        estimator: GradientEstimator | None = None,
        meta_optimizer: optax.GradientTransformation | None = None,
        *,
        num_tasks: int | None = None,
        clip_norm: float | None = 1.0,
        max_task_grad_norm: float | None = 1e6,
        mesh: jax.sharding.Mesh | None = None,
        run_config: Mapping[str, Any] | None = None,
    ):
        self.optimizer = optimizer
        self.family = family
        self.estimator = estimator if estimator is not None else TruncatedBackprop()
        if clip_norm is not None:
            clip_norm = _checks.real("clip_norm", clip_norm, minimum=0.0, inclusive=False)
        meta_optimizer = meta_optimizer if meta_optimizer is not None else optax.adam(1e-3)
        if clip_norm is not None:
            meta_optimizer = optax.chain(optax.clip_by_global_norm(clip_norm), meta_optimizer)
        self.meta_optimizer = meta_optimizer
        self.clip_norm = clip_norm
        if max_task_grad_norm is not None:
            max_task_grad_norm = _checks.real(
                "max_task_grad_norm", max_task_grad_norm, minimum=0.0, inclusive=False
            )
        self.max_task_grad_norm = max_task_grad_norm
        self.run_config = dict(run_config or {})
        if mesh is None:
            mesh = jax.make_mesh(
                (jax.device_count(),), (TASK_AXIS,), axis_types=(jax.sharding.AxisType.Auto,)
            )
        self.mesh = mesh
        self.mixture = family if isinstance(family, Mixture) else None
        self._components: tuple[tuple[TaskFamily, int], ...]
        if isinstance(family, Mixture):
            _checks.check(
                num_tasks in (None, family.num_tasks),
                f"num_tasks: a mixture sets its own ({family.num_tasks}); got {num_tasks}",
            )
            self._components = family.components
        else:
            num_tasks = (
                8 if num_tasks is None else _checks.integer("num_tasks", num_tasks, minimum=1)
            )
            self._components = ((family, num_tasks),)
        devices = self.mesh.shape[TASK_AXIS]
        for _, count in self._components:
            _checks.check(
                count >= 1 and count % devices == 0,
                f"num_tasks: expected a positive multiple of the {devices} devices in the mesh "
                f"for each family, got {count}",
            )
        self.num_tasks = sum(count for _, count in self._components)
        self._tasks = NamedSharding(self.mesh, P(TASK_AXIS))
        self._replicated = NamedSharding(self.mesh, P())
        self._jitted: dict[bool, Any] = {}

    def config(self) -> dict[str, Any]:
        """What defines this run (checked when resuming from a checkpoint)."""
        optimizer = {"name": architecture_name(type(self.optimizer)), **self.optimizer.config()}
        return {
            "optimizer": optimizer,
            "family": self.family.config(),
            "estimator": self.estimator.config(),
            "num_tasks": self.num_tasks,
            "clip_norm": self.clip_norm,
            "max_task_grad_norm": self.max_task_grad_norm,
            "run": self.run_config,
        }

    def shard(self, state: MetaTrainState) -> MetaTrainState:
        """Places the task axis across the mesh's devices and replicates the rest.

        Under multi-host every process passes the same ``state`` and keeps only its own
        devices' part of it.
        """
        shardings = jax.tree.broadcast(self._state_shardings(state), state)
        return jax.tree.map(_put, state, shardings)

    def _state_shardings(self, state: MetaTrainState) -> PyTree:
        """A tree like ``state`` of shardings: the estimator state's task axis across the
        mesh's devices (see :meth:`_task_shardings`), every other leaf replicated."""
        replicated = jax.tree.map(lambda _: self._replicated, state)
        return replicated._replace(estimator_state=self._task_shardings(state.estimator_state))

    def _jit_step(self, state: MetaTrainState, donate: bool = False):
        """The jitted meta-step; its output state keeps the shardings of :meth:`shard`.

        Fixing the output shardings makes every meta-step after the first reuse the first
        one's program (XLA would otherwise return some task-axis leaves replicated).
        """
        if donate not in self._jitted:
            out = (self._state_shardings(state), self._replicated)
            self._jitted[donate] = jax.jit(
                self._step, out_shardings=out, donate_argnums=(0,) if donate else ()
            )
        return self._jitted[donate](state)

    def _task_shardings(self, estimator_state: PyTree) -> PyTree:
        """The task axis across devices; zero-size leaves (tree specs) replicated.

        XLA returns zero-size arrays replicated whatever their input sharding, so giving them
        the task sharding would make the second meta-step see new input shardings and compile
        again.
        """
        return jax.tree.map(
            lambda x: self._replicated if x.size == 0 else self._tasks, estimator_state
        )

    def _family_keys(self, key: jax.Array) -> tuple[jax.Array, ...]:
        """One key per family: ``key`` itself for a single family."""
        if self.mixture is None:
            return (key,)
        return tuple(jax.random.split(key, len(self._components)))

    def _per_family(self, estimator_state: Any) -> tuple[Any, ...]:
        return (estimator_state,) if self.mixture is None else tuple(estimator_state)

    def _joined(self, states: tuple[Any, ...]) -> Any:
        return states[0] if self.mixture is None else tuple(states)

    def initial_state(self, key: jax.Array, meta_params: PyTree | None = None) -> MetaTrainState:
        """The unsharded initial state, a pure function of ``key`` (see :meth:`init`)."""
        k_meta, k_runs, k_next = jax.random.split(key, 3)
        if meta_params is None:
            meta_params = self.optimizer.init(k_meta)
        runs = tuple(
            self.estimator.init(self.optimizer, family, meta_params, k, count)
            for (family, count), k in zip(self._components, self._family_keys(k_runs), strict=True)
        )
        return MetaTrainState(
            meta_params=meta_params,
            meta_opt_state=self.meta_optimizer.init(meta_params),
            estimator_state=self._joined(runs),
            key=k_next,
            step=jnp.zeros((), jnp.int32),
        )

    def init(self, key: jax.Array, meta_params: PyTree | None = None) -> MetaTrainState:
        """Starts meta-training (from ``optimizer.init`` unless ``meta_params`` is given)."""
        return self.shard(jax.jit(self.initial_state)(key, meta_params))

    def _step(self, state: MetaTrainState) -> tuple[MetaTrainState, dict[str, jax.Array]]:
        key, k_est = jax.random.split(state.key)
        estimates, states = [], []
        for (family, _), run_state, k in zip(
            self._components,
            self._per_family(state.estimator_state),
            self._family_keys(k_est),
            strict=True,
        ):
            est, run_state = self.estimator.estimate(
                self.optimizer, family, state.meta_params, run_state, k
            )
            estimates.append(est)
            states.append(
                jax.lax.with_sharding_constraint(run_state, self._task_shardings(run_state))
            )
        kept = [est.finite & self._within_bound(est.grads) for est in estimates]
        count = sum(jnp.sum(ok) for ok in kept)

        def kept_mean(per_family, kept=kept, count=count):
            """The mean over the kept tasks (all families); NaN when none is kept."""
            total = sum(_kept_sum(v, ok) for v, ok in zip(per_family, kept, strict=True))
            return jnp.where(count > 0, total / jnp.maximum(count, 1), jnp.nan)

        grads = jax.tree.map(lambda *g: kept_mean(g), *(est.grads for est in estimates))
        safe_grads = jax.tree.map(lambda g: jnp.where(count > 0, g, 0.0), grads)
        updates, meta_opt_state = self.meta_optimizer.update(
            safe_grads, state.meta_opt_state, state.meta_params
        )
        meta_params = optax.apply_updates(state.meta_params, updates)
        apply = (count > 0) & unroll_lib.is_finite((meta_params, meta_opt_state))

        def keep_if_skipped(new, old):
            return jax.tree.map(lambda a, b: jnp.where(apply, a, b), new, old)

        meta_params = keep_if_skipped(meta_params, state.meta_params)
        meta_opt_state = keep_if_skipped(meta_opt_state, state.meta_opt_state)
        inner = [jnp.mean(est.losses, axis=1) for est in estimates]
        metrics = {
            "meta_loss": kept_mean([est.meta_loss for est in estimates]),
            "inner_loss": kept_mean(inner),
            "grad_norm": optax.tree.norm(grads),
            "masked_tasks": self.num_tasks - count,
            "nonfinite_tasks": sum(jnp.sum(~est.finite) for est in estimates),
            "applied": apply,
            "resets": sum(jnp.sum(est.resets) for est in estimates),
        }
        if self.mixture is not None:
            for label, est, ok, losses in zip(
                self.mixture.labels, estimates, kept, inner, strict=True
            ):
                n = jnp.sum(ok)
                metrics[f"meta_loss/{label}"] = kept_mean([est.meta_loss], [ok], n)
                metrics[f"inner_loss/{label}"] = kept_mean([losses], [ok], n)
                metrics[f"masked_tasks/{label}"] = ok.shape[0] - n
        new_state = MetaTrainState(
            meta_params, meta_opt_state, self._joined(tuple(states)), key, state.step + 1
        )
        return new_state, metrics

    def _within_bound(self, grads: PyTree) -> jax.Array:
        """Per task: whether its meta-gradient's norm is at most ``max_task_grad_norm``."""
        if self.max_task_grad_norm is None:
            return jnp.ones(jax.tree.leaves(grads)[0].shape[0], bool)
        return jax.vmap(optax.tree.norm)(grads) <= self.max_task_grad_norm

    def step(self, state: MetaTrainState) -> tuple[MetaTrainState, dict[str, jax.Array]]:
        """One jitted meta-step."""
        return self._jit_step(state)

    def inner_steps_per_meta_step(self) -> int:
        """Inner optimizer steps one meta-step takes, over all tasks and particles."""
        return self.num_tasks * self.estimator.inner_steps_per_task()

    def save_checkpoint(self, directory: str | Path, state: MetaTrainState, keep: int = 2) -> Path:
        """Writes ``state`` with this run's :meth:`config` to ``directory`` (keeps ``keep``).

        Returns:
            The checkpoint's step directory.
        """
        with checkpoint_lib.Checkpoints(directory, keep=keep) as checkpoints:
            return checkpoints.save(state, self.config())

    def restore_checkpoint(self, directory: str | Path, step: int | None = None) -> MetaTrainState:
        """Restores a state saved for this run, each leaf straight onto its devices.

        Without ``step``, the newest intact checkpoint of ``directory`` is used; every newer
        damaged or incomplete one is skipped with a
        :class:`~learned_opt.meta.checkpoint.CheckpointWarning`.

        Raises:
            FileNotFoundError: no checkpoint in ``directory``.
            CheckpointError: written by a run with another configuration (the message lists
                every difference), or no checkpoint is intact; the message names it.
        """
        if not Path(directory).is_dir():
            raise FileNotFoundError(f"{directory}: no checkpoint directory at this path")
        like = jax.eval_shape(self.initial_state, jax.random.key(0))
        with checkpoint_lib.Checkpoints(directory) as checkpoints:
            shardings = jax.tree.broadcast(self._state_shardings(like), like)
            return checkpoints.restore(self.config(), like, shardings, step=step)

    def run(
        self,
        state: MetaTrainState,
        num_steps: int,
        *,
        checkpoint_dir: str | Path | None = None,
        checkpoint_every: int = 50,
        log_path: str | Path | None = None,
        progress: bool = True,
        callback: Callable[[int, dict[str, float], MetaTrainState], dict | None] | None = None,
        max_skipped_steps: int = 10,
        keep_checkpoints: int = 2,
    ) -> MetaTrainState:
        """Runs meta-steps until ``state.step == num_steps``, logging and checkpointing.

        A meta-step whose update is not applied (every task masked, or a non-finite update)
        leaves the meta-parameters unchanged and issues a :class:`MetaTrainingWarning`; after
        ``max_skipped_steps`` such steps in a row the run stops with a
        :class:`MetaTrainingError` (the checkpoints written so far stay intact).

        Args:
            state: from :meth:`init` or :meth:`restore_checkpoint`.
            num_steps: the total number of meta-steps (a resumed run continues to it).
            checkpoint_dir: where to write checkpoints (atomically, every ``checkpoint_every``
                steps and at the end; the newest ``keep_checkpoints`` are kept); ``None``
                disables them. Checkpoints newer than ``state.step`` (left by a continuation
                that was killed, or damaged ones skipped on restore) are renamed
                ``*.superseded`` first.
            checkpoint_every: meta-steps between checkpoints.
            log_path: a JSONL file; one line of metrics per meta-step is appended, after
                dropping any line past ``state.step`` (written after the checkpoint a resumed
                run continues from) and any partly written line. Under multi-host only
                process 0 writes it (each process writes its own shards of a checkpoint).
            progress: show a progress bar with the meta-loss and inner steps per second (on
                process 0).
            callback: called as ``callback(step, metrics, state)`` after each meta-step; a
                dict it returns is added to the step's logged metrics (e.g. a validation loss).
            max_skipped_steps: consecutive meta-steps without an update after which the run
                stops.
            keep_checkpoints: how many of the newest checkpoints to keep.

        Raises:
            MetaTrainingError: ``max_skipped_steps`` meta-steps in a row were not applied.

        Returns:
            The final state. The input ``state``'s buffers are donated to the loop (reused in
            place), so use the returned state only.
        """
        from tqdm.auto import tqdm

        _checks.integer("num_steps", num_steps, minimum=0)
        _checks.integer("checkpoint_every", checkpoint_every, minimum=1)
        _checks.integer("max_skipped_steps", max_skipped_steps, minimum=1)
        start = int(state.step)
        skipped = 0
        checkpoints = None
        if checkpoint_dir is not None:
            checkpoints = checkpoint_lib.Checkpoints(checkpoint_dir, keep=keep_checkpoints)
            for path in checkpoints.supersede_after(start):
                warnings.warn(
                    f"{path}: newer than the state this run continues from (meta-step {start}); "
                    f"renamed {path.name}.superseded",
                    checkpoint_lib.CheckpointWarning,
                    stacklevel=2,
                )
        primary = jax.process_index() == 0  # under multi-host, process 0 logs
        if log_path is not None and primary:
            _truncate_log(Path(log_path), start)
        log = open(log_path, "a") if log_path is not None and primary else None  # noqa: SIM115
        show = progress and primary
        bar = tqdm(total=num_steps, initial=start, disable=not show, unit="meta-step")
        inner = self.inner_steps_per_meta_step()
        try:
            for step in range(start, num_steps):
                t0 = time.perf_counter()
                state, metrics = self._jit_step(state, donate=True)
                metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
                elapsed = time.perf_counter() - t0
                metrics |= {
                    "step": step + 1,
                    "seconds": elapsed,
                    "inner_steps_per_s": inner / elapsed,
                }
                if callback is not None:
                    metrics |= callback(step + 1, metrics, state) or {}
                if log is not None:
                    log.write(json.dumps(metrics) + "\n")
                    log.flush()
                bar.set_postfix(
                    meta_loss=f"{metrics['meta_loss']:.4g}",
                    inner_steps_s=f"{metrics['inner_steps_per_s']:.0f}",
                )
                bar.update(1)
                skipped = 0 if metrics["applied"] else skipped + 1
                if skipped:
                    self._report_skipped(step + 1, metrics, skipped, max_skipped_steps)
                last = step + 1 == num_steps
                if checkpoints is not None and ((step + 1) % checkpoint_every == 0 or last):
                    checkpoints.save(state, self.config())
        finally:
            bar.close()
            if log is not None:
                log.close()
            if checkpoints is not None:
                checkpoints.close()
        return state

    def _report_skipped(self, step: int, metrics: dict, skipped: int, limit: int) -> None:
        masked = int(metrics["masked_tasks"])
        why = (
            f"all {masked} tasks were masked (non-finite or meta-gradient norm above "
            f"max_task_grad_norm={self.max_task_grad_norm})"
            if masked == self.num_tasks
            else "the update made the meta-parameters or meta-optimizer state non-finite"
        )
        message = f"meta-step {step}: not applied, {why}; the meta-parameters are unchanged"
        if skipped >= limit:
            raise MetaTrainingError(
                f"{message}. Stopping after {skipped} meta-steps in a row without an update "
                f"(max_skipped_steps={limit}); the last checkpoint is intact."
            )
        warnings.warn(f"{message} ({skipped} in a row)", MetaTrainingWarning, stacklevel=3)


class MetaTrainingWarning(RuntimeWarning):
    """A meta-step was not applied (every task masked, or a non-finite update).

    Example:
        >>> import learned_opt as lo
        >>> issubclass(lo.MetaTrainingWarning, RuntimeWarning)
        True
    """


class MetaTrainingError(RuntimeError):
    """Meta-training cannot go on: too many meta-steps in a row were not applied.

    Example:
        >>> import learned_opt as lo
        >>> issubclass(lo.MetaTrainingError, RuntimeError)
        True
    """


def _truncate_log(path: Path, step: int) -> None:
    """Keeps the complete JSON lines of ``path`` up to meta-step ``step`` (atomically)."""
    if not path.exists():
        return
    text = path.read_text()
    kept = []
    for line in text.splitlines(keepends=True):
        try:
            entry = json.loads(line)
        except ValueError:  # a line cut short by a kill
            break
        if not line.endswith("\n") or not isinstance(entry, dict) or entry.get("step", 0) > step:
            break
        kept.append(line)
    if len(kept) != len(text.splitlines()):
        atomic_write_bytes(path, "".join(kept).encode())


def _put(x: Any, sharding: jax.sharding.Sharding) -> jax.Array:
    """``jax.device_put``, also onto devices of other processes (multi-host), where every
    process holds the same ``x`` and places only the shards of its own devices."""
    if sharding.is_fully_addressable:
        return jax.device_put(x, sharding)
    if jnp.issubdtype(getattr(x, "dtype", np.float32), jax.dtypes.prng_key):
        return jax.random.wrap_key_data(_put(jax.random.key_data(x), sharding))
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def _kept_sum(values: jax.Array, ok: jax.Array) -> jax.Array:
    """The sum over the task axis (first) of ``values`` where ``ok``; the rest never enters."""
    mask = ok.reshape((-1,) + (1,) * (values.ndim - 1))
    return jnp.sum(jnp.where(mask, values, 0.0), axis=0)
