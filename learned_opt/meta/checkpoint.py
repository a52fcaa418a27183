"""Meta-training checkpoints: orbax-checkpoint's ``CheckpointManager`` plus a verified manifest.

A checkpoint is one step directory ``ckpt_<step>`` written by orbax (atomically: into a
temporary directory renamed when complete; the newest ``keep`` are kept; under multi-host every
process writes its own shards of the task-sharded state and the primary process the metadata,
so no host gathers the state). After orbax commits it, the primary process adds a manifest
(``learned_opt.json``) with the run's configuration, the layout of the state, a checksum of the
arrays' bytes and the SHA-256 of every file of the step (and of the manifest itself). A
checkpoint is *intact* when its manifest is present, every file matches its digest and the
restored arrays match the checksum; :meth:`Checkpoints.restore` uses the newest intact one and
warns about every newer one it skips. A run killed mid-write leaves either a temporary
directory (ignored and cleaned up) or a step without a manifest (skipped).
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from learned_opt import _files
from learned_opt.meta.state import MetaTrainState
from learned_opt.optimizers import _trees

PyTree = Any
FORMAT = "learned_opt.checkpoint"
FORMAT_VERSION = 2
MANIFEST = "learned_opt.json"
_PREFIX = "ckpt"


class CheckpointError(ValueError):
    """A checkpoint cannot be used; the message names the checkpoint and the reason.

    Raised for a checkpoint written by a run with another configuration (the message lists
    every difference), and when no intact checkpoint is left in a directory.

    Example:
        >>> import jax, tempfile
        >>> import learned_opt as lo
        >>> family, opt = lo.tasks.Quadratic(dim=2), lo.LearnedRule()
        >>> trainer = lo.MetaTrainer(opt, family, num_tasks=jax.device_count())
        >>> directory = tempfile.mkdtemp()
        >>> path = trainer.save_checkpoint(directory, trainer.init(jax.random.key(0)))
        >>> other = lo.MetaTrainer(opt, family, num_tasks=jax.device_count(), clip_norm=None)
        >>> try:
        ...     other.restore_checkpoint(directory)
        ... except lo.CheckpointError as e:
        ...     print(str(e).split(": ", 2)[2])
        clip_norm: the checkpoint has 1.0, this run None
    """


class CheckpointWarning(UserWarning):
    """A damaged or incomplete checkpoint was skipped for an older intact one."""


def config_differences(
    stored: Any, current: Any, names: tuple[str, str] = ("the checkpoint", "this run")
) -> list[str]:
    """Every difference between two plain configurations, one ``"key.sub: ..."`` line each.

    ``names`` says what ``stored`` and ``current`` are, for the messages.

    Example:
        >>> from learned_opt.meta.checkpoint import config_differences
        >>> config_differences({"seed": 0, "opt": {"lr": 1e-3}}, {"seed": 1, "opt": {"lr": 1e-3}})
        ['seed: the checkpoint has 0, this run 1']
    """

    def walk(a: Any, b: Any, path: str) -> list[str]:
        if isinstance(a, dict) and isinstance(b, dict):
            out = []
            for key in sorted(set(a) | set(b)):
                where = f"{path}.{key}" if path else str(key)
                if key not in a:
                    out.append(f"{where}: {names[0]} has none, {names[1]} {b[key]!r}")
                elif key not in b:
                    out.append(f"{where}: {names[0]} has {a[key]!r}, {names[1]} none")
                else:
                    out.extend(walk(a[key], b[key], where))
            return out
        if a != b:
            return [f"{path or 'config'}: {names[0]} has {a!r}, {names[1]} {b!r}"]
        return []

    return walk(stored, current, "")


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value))


def _is_key(x: Any) -> bool:
    return jnp.issubdtype(getattr(x, "dtype", np.float32), jax.dtypes.prng_key)


def _stored(x: Any) -> bool:
    """Zero-size leaves (tree specs) are rebuilt from the template, not stored."""
    return int(np.prod(x.shape)) > 0


@jax.jit
def _words_checksum(leaves: list[jax.Array]) -> jax.Array:
    """Two position-weighted 32-bit sums of the leaves' words (uint32[2]).

    Every word is multiplied by an odd weight of its position (and each leaf's sum by an odd
    weight of the leaf), so any single flipped bit changes both sums, and other changes go
    unnoticed with probability 2^-64. XLA computes it on the devices that hold the shards.
    """
    total = jnp.zeros(2, jnp.uint32)
    for k, leaf in enumerate(leaves):
        if leaf.dtype.itemsize >= 4:
            words = jax.lax.bitcast_convert_type(leaf, jnp.uint32)
        else:
            narrow = jnp.dtype(f"uint{8 * leaf.dtype.itemsize}")
            words = jax.lax.bitcast_convert_type(leaf, narrow).astype(jnp.uint32)
        words = words.reshape(-1)
        index = jnp.arange(words.size, dtype=jnp.uint32)
        mixed = (words ^ (words >> 16)) * jnp.uint32(0x45D9F3B)
        sums = jnp.stack(
            [
                jnp.sum(words * (2 * index + 1), dtype=jnp.uint32),
                jnp.sum(mixed * (index * jnp.uint32(0x9E3779B1) | 1), dtype=jnp.uint32),
            ]
        )
        total = total + sums * jnp.uint32(2 * k + 1)
    return total


def array_checksum(arrays: dict[str, jax.Array]) -> str:
    """The checksum of the arrays' bytes stored in a checkpoint's manifest (16 hex digits).

    Example:
        >>> import jax.numpy as jnp
        >>> from learned_opt.meta.checkpoint import array_checksum
        >>> a = {"x": jnp.arange(4.0)}
        >>> array_checksum(a) == array_checksum({"x": jnp.arange(4.0)})
        True
        >>> flipped = jnp.arange(4.0).at[2].set(jnp.nextafter(2.0, 3.0))  # one bit
        >>> array_checksum(a) == array_checksum({"x": flipped})
        False
    """
    sums = np.asarray(jax.device_get(_words_checksum([arrays[k] for k in sorted(arrays)])))
    return "".join(f"{int(s):08x}" for s in sums)


def _leaf_name(i: int) -> str:
    return f"leaf_{i:05d}"


def _flatten(state: MetaTrainState) -> tuple[dict[str, jax.Array], list[dict[str, Any]]]:
    """The arrays orbax stores (keys as key data, zero-size leaves left out) and the layout."""
    arrays, layout = {}, []
    for i, (path, leaf) in enumerate(jax.tree_util.tree_flatten_with_path(state)[0]):
        if _stored(leaf):
            arrays[_leaf_name(i)] = jax.random.key_data(leaf) if _is_key(leaf) else leaf
        layout.append(_layout_entry(path, leaf))
    return arrays, layout


def _layout_entry(path: Any, leaf: Any) -> dict[str, Any]:
    return {"path": jax.tree_util.keystr(path), "shape": list(leaf.shape), "dtype": str(leaf.dtype)}


def _files_digests(step_dir: Path) -> dict[str, str]:
    digests = {}
    for root, _, names in os.walk(step_dir):
        for name in names:
            path = Path(root) / name
            rel = path.relative_to(step_dir).as_posix()
            if rel != MANIFEST:
                digests[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return dict(sorted(digests.items()))


class Checkpoints:
    """The checkpoints of one meta-training run in ``directory`` (an orbax ``CheckpointManager``).

    Use it as a context manager (or call :meth:`close`). ``MetaTrainer.save_checkpoint``,
    ``MetaTrainer.restore_checkpoint`` and ``MetaTrainer.run`` use it.

    Args:
        directory: the checkpoint folder (created when the first checkpoint is written).
        keep: how many of the newest checkpoints to keep.

    Example:
        >>> import jax, tempfile
        >>> import learned_opt as lo
        >>> from learned_opt.meta.checkpoint import Checkpoints
        >>> trainer = lo.MetaTrainer(lo.LearnedRule(), lo.tasks.Quadratic(dim=2), num_tasks=2)
        >>> state = trainer.init(jax.random.key(0))
        >>> with Checkpoints(tempfile.mkdtemp(), keep=2) as ckpts:
        ...     for _ in range(3):
        ...         state, _ = trainer.step(state)
        ...         path = ckpts.save(state, trainer.config())
        ...     print(ckpts.steps(), path.name)
        [2, 3] ckpt_00000003
    """

    def __init__(self, directory: str | os.PathLike, *, keep: int = 2):
        import orbax.checkpoint as ocp

        self.directory = Path(directory).absolute()
        self.keep = keep
        self._ocp = ocp
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep,
            create=False,
            step_prefix=_PREFIX,
            step_format_fixed_length=8,
            cleanup_tmp_directories=True,
            enable_async_checkpointing=False,
        )
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def __enter__(self) -> Checkpoints:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Waits for pending writes and releases the manager."""
        self._manager.close()

    def steps(self) -> list[int]:
        """The committed checkpoints' steps, oldest first (intact or not)."""
        self._manager.reload()
        return sorted(self._manager.all_steps())

    def path(self, step: int) -> Path:
        """The step directory of checkpoint ``step``."""
        return self.directory / f"{_PREFIX}_{step:08d}"

    def save(self, state: MetaTrainState, config: dict[str, Any]) -> Path:
        """Writes ``state`` and its run ``config`` as checkpoint ``state.step``; returns its dir."""
        ocp = self._ocp
        step = int(state.step)
        arrays, layout = _flatten(state)
        checksum = array_checksum(arrays)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._manager.save(step, args=ocp.args.StandardSave(arrays), force=True)
        self._manager.wait_until_finished()
        path = self.path(step)
        if jax.process_index() == 0:
            manifest = {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "step": step,
                "config": _plain(config),
                "layout": layout,
                "array_checksum": checksum,
                "files": _files_digests(path),
            }
            manifest["sha256"] = _manifest_digest(manifest)
            _files.atomic_write_bytes(path / MANIFEST, json.dumps(manifest, indent=1).encode())
            _files.fsync_tree(path)
        _sync("learned_opt checkpoint manifest")
        return path

    def supersede_after(self, step: int) -> list[Path]:
        """Renames the checkpoints newer than ``step`` to ``*.superseded`` (a run continuing from
        ``step`` replaces them; keep-newest would otherwise delete its own instead)."""
        moved = []
        for newer in (s for s in self.steps() if s > step):
            old = self.path(newer)
            if jax.process_index() == 0:
                old.rename(old.with_name(f"{old.name}.superseded"))
            moved.append(old)
        _sync("learned_opt superseded checkpoints")
        if moved:
            self._manager.reload()
        return moved

    def restore(
        self,
        config: dict[str, Any],
        like: MetaTrainState,
        shardings: MetaTrainState,
        *,
        step: int | None = None,
    ) -> MetaTrainState:
        """Restores checkpoint ``step``, or the newest intact one, onto ``shardings``.

        Args:
            config: this run's configuration; a checkpoint with another one is refused.
            like: the state's structure, shapes and dtypes (``jax.eval_shape`` of the initial
                state).
            shardings: a tree like ``like`` of ``jax.sharding.Sharding``, where each leaf goes.
            step: a particular checkpoint (refused if damaged) instead of the newest intact.

        Raises:
            FileNotFoundError: no checkpoint in the directory (or no checkpoint ``step``).
            CheckpointError: written by a run with another configuration; checkpoint ``step``
                is damaged; or no checkpoint is intact.
        """
        steps = self.steps()
        if not steps:
            raise FileNotFoundError(f"{self.directory}: no checkpoint ({_PREFIX}_<step>) here")
        if step is not None:
            if step not in steps:
                raise FileNotFoundError(f"{self.path(step)}: no such checkpoint; have {steps}")
            return self._restore_step(step, config, like, shardings)
        damaged = []
        for candidate in reversed(steps):
            try:
                state = self._restore_step(candidate, config, like, shardings)
            except _DamagedError as e:
                damaged.append(str(e))
                continue
            for message in damaged:
                warnings.warn(
                    f"{message}; resuming from the intact {self.path(candidate)}",
                    CheckpointWarning,
                    stacklevel=2,
                )
            return state
        raise CheckpointError(f"{self.directory}: no intact checkpoint: " + "; ".join(damaged))

    def _restore_step(self, step, config, like, shardings) -> MetaTrainState:
        path = self.path(step)
        manifest = _read_manifest(path)
        if manifest["config"] != _plain(config):
            diff = config_differences(manifest["config"], _plain(config))
            raise CheckpointError(
                f"{path}: written by a run with another configuration: {'; '.join(diff)}"
            )
        like_leaves, treedef = jax.tree.leaves(like), _trees.structure(like)
        layout = [_layout_entry(p, x) for p, x in jax.tree_util.tree_flatten_with_path(like)[0]]
        if manifest["layout"] != layout:
            raise CheckpointError(f"{path}: its state does not have this run's structure")
        digests = _files_digests(path)
        listed = manifest["files"]
        for name in sorted(set(digests) | set(listed)):
            if name not in digests:
                raise _DamagedError(f"{path}: file {name} is missing")
            if name not in listed:
                raise _DamagedError(f"{path}: file {name} is not in the manifest")
            if digests[name] != listed[name]:
                raise _DamagedError(f"{path}: file {name} is damaged (its SHA-256 differs)")
        shard_leaves = treedef.flatten_up_to(shardings)
        abstract = {}
        for i, (ref, sharding) in enumerate(zip(like_leaves, shard_leaves, strict=True)):
            if _stored(ref):
                shape = jax.eval_shape(jax.random.key_data, ref) if _is_key(ref) else ref
                abstract[_leaf_name(i)] = jax.ShapeDtypeStruct(
                    shape.shape, shape.dtype, sharding=sharding
                )
        arrays = self._manager.restore(step, args=self._ocp.args.StandardRestore(abstract))
        if array_checksum(arrays) != manifest["array_checksum"]:
            raise _DamagedError(f"{path}: its arrays do not match their checksum")
        leaves = []
        for i, (ref, sharding) in enumerate(zip(like_leaves, shard_leaves, strict=True)):
            if not _stored(ref):
                leaves.append(jax.device_put(jnp.zeros(ref.shape, ref.dtype), sharding))
            elif _is_key(ref):
                leaves.append(jax.random.wrap_key_data(arrays[_leaf_name(i)]))
            else:
                leaves.append(arrays[_leaf_name(i)])
        return jax.tree.unflatten(treedef, leaves)


class _DamagedError(CheckpointError):
    """A damaged or incomplete checkpoint (``restore`` falls back to an older one)."""


def _read_manifest(path: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((path / MANIFEST).read_bytes())
    except FileNotFoundError:
        raise _DamagedError(
            f"{path}: incomplete (no {MANIFEST}: the run stopped while writing it)"
        ) from None
    except (ValueError, OSError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise _DamagedError(f"{path}: unreadable {MANIFEST} ({e})") from e
    expected = {"format", "format_version", "step", "config", "layout", "array_checksum", "files"}
    if not isinstance(manifest, dict) or set(manifest) != expected | {"sha256"}:
        raise _DamagedError(f"{path}: {MANIFEST} is not a learned_opt checkpoint manifest")
    if manifest.pop("sha256") != _manifest_digest(manifest):
        raise _DamagedError(f"{path}: {MANIFEST} is damaged (its SHA-256 differs)")
    if manifest["format"] != FORMAT or manifest["format_version"] != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format {manifest['format']!r} version "
            f"{manifest['format_version']!r} is not supported (this learned_opt reads "
            f"{FORMAT!r} version {FORMAT_VERSION})"
        )
    if not isinstance(manifest["files"], dict) or path.name != f"{_PREFIX}_{manifest['step']:08d}":
        raise _DamagedError(f"{path}: {MANIFEST} is not this checkpoint's manifest")
    return manifest


def _manifest_digest(manifest: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()


def _sync(name: str) -> None:
    """A barrier across processes (nothing on one host)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def steps(directory: str | os.PathLike) -> list[int]:
    """The committed checkpoints' steps in ``directory`` (``[]`` if there is none or no folder).

    Example:
        >>> import tempfile
        >>> from learned_opt.meta import checkpoint
        >>> checkpoint.steps(tempfile.mkdtemp())
        []
    """
    if not Path(directory).is_dir():
        return []
    with Checkpoints(directory) as ckpts:
        return ckpts.steps()
