"""Atomic meta-training checkpoints: write, find the latest, restore.

A checkpoint is one msgpack file ``ckpt_<step>.msgpack`` holding the run's configuration and
its whole :class:`~learned_opt.meta.state.MetaTrainState` (meta-parameters, meta-optimizer
state, inner runs, PRNG key, step). Files are written atomically and the newest ``keep`` are
kept, so a crash mid-write never destroys the previous good checkpoint.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization

from learned_opt.io import atomic_write_bytes

if TYPE_CHECKING:
    from learned_opt.meta.state import MetaTrainState

FORMAT = "learned_opt.checkpoint"
FORMAT_VERSION = 1
_NAME = re.compile(r"ckpt_(\d+)\.msgpack$")


class CheckpointError(ValueError):
    """A checkpoint file cannot be used; the message names the file and the reason.

    Raised by :func:`restore` (and so by ``learned-opt meta-train --resume``) for a corrupt or
    truncated file, another format version, or a file written by a run with another
    configuration.

    Example:
        >>> import jax, tempfile
        >>> import learned_opt as lo
        >>> from learned_opt.meta import checkpoint
        >>> family, opt = lo.tasks.Quadratic(dim=2), lo.LearnedRule()
        >>> trainer = lo.MetaTrainer(opt, family, num_tasks=jax.device_count())
        >>> directory = tempfile.mkdtemp()
        >>> path = trainer.save_checkpoint(directory, trainer.initial_state(jax.random.key(0)))
        >>> other = lo.MetaTrainer(opt, family, num_tasks=jax.device_count(), clip_norm=None)
        >>> try:
        ...     other.restore_checkpoint(directory)
        ... except lo.CheckpointError as e:
        ...     print(str(e).split(": ", 1)[1])
        written by a run with a different configuration (differs in: ['clip_norm'])
    """


def _is_key(x: Any) -> bool:
    return jnp.issubdtype(getattr(x, "dtype", np.float32), jax.dtypes.prng_key)


def _plain(config: Any) -> Any:
    return json.loads(json.dumps(config))


def save(
    directory: str | Path, state: MetaTrainState, config: dict[str, Any], keep: int = 2
) -> Path:
    """Writes ``state`` to ``directory/ckpt_<step>.msgpack`` atomically; keeps the newest ``keep``.

    Returns:
        The path written.
    """
    directory = Path(directory)
    host = jax.device_get(
        jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, state)
    )
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": json.dumps(config, sort_keys=True),
        "step": int(state.step),
        "state": serialization.to_state_dict(host),
    }
    path = directory / f"ckpt_{int(state.step):08d}.msgpack"
    atomic_write_bytes(path, serialization.msgpack_serialize(payload))
    for old in checkpoints(directory)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def checkpoints(directory: str | Path) -> list[Path]:
    """The checkpoint files in ``directory``, oldest first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def restore(path: str | Path, config: dict[str, Any], like: MetaTrainState) -> MetaTrainState:
    """Restores a state written by :func:`save` for the same run configuration.

    ``path`` is a checkpoint file, or a directory (its newest checkpoint is used); ``like`` is
    the state's structure (e.g. ``jax.eval_shape`` of the initial state).

    Raises:
        FileNotFoundError: no checkpoint at ``path``.
        CheckpointError: the file is corrupt or truncated, of another format version, or was
            written by a run with another configuration. The message names the file and, when
            ``path`` is a directory, the previous checkpoint that is still intact.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no checkpoint file or directory at this path")
    if path.is_dir():
        found = checkpoints(path)
        if not found:
            raise FileNotFoundError(
                f"{path}: no checkpoint (ckpt_<step>.msgpack) in this directory"
            )
        try:
            return _restore_file(found[-1], config, like)
        except CheckpointError as e:
            if len(found) > 1:
                raise CheckpointError(
                    f"{e}. The previous checkpoint {found[-2]} is intact: resume from it by "
                    f"passing that file, or delete {found[-1].name}."
                ) from e
            raise
    return _restore_file(path, config, like)


def _restore_file(path: Path, config: dict[str, Any], like: MetaTrainState) -> MetaTrainState:
    def fail(what: str) -> CheckpointError:
        return CheckpointError(f"{path}: {what}")

    try:
        payload = serialization.msgpack_restore(path.read_bytes())
    except FileNotFoundError:
        raise
    except Exception as e:  # truncated or corrupt msgpack raise several exception types
        raise fail(f"corrupt or truncated checkpoint ({type(e).__name__}: {e})") from e
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise fail("not a learned_opt meta-training checkpoint")
    if payload.get("format_version") != FORMAT_VERSION:
        raise fail(
            f"checkpoint format version {payload.get('format_version')} is not supported "
            f"(this learned_opt reads version {FORMAT_VERSION})"
        )
    stored, current = json.loads(payload["config"]), _plain(config)
    if stored != current:
        diff = sorted(k for k in set(stored) | set(current) if stored.get(k) != current.get(k))
        raise fail(f"written by a run with a different configuration (differs in: {diff})")
    template = like
    try:
        restored = serialization.from_state_dict(template, payload["state"])
    except (KeyError, TypeError, ValueError) as e:
        raise fail(f"state does not match this run: {e}") from e
    if jax.tree.structure(restored) != jax.tree.structure(template):
        raise fail("state does not match this run's state structure")

    def leaf(ref, value):
        value = np.asarray(value)
        if _is_key(ref):
            return jax.random.wrap_key_data(value)
        if value.shape != ref.shape or value.dtype != ref.dtype:
            raise fail(
                f"array of shape {value.shape} {value.dtype}, expected {ref.shape} {ref.dtype}"
            )
        return value

    return jax.tree.map(leaf, template, restored)
