"""Saving and loading trained optimizers as small msgpack files (never pickle).

A file holds a format marker and version, the architecture's class name, its configuration and
its weights; :func:`load` rebuilds the optimizer from them and checks every weight's shape and
dtype against the architecture.

Example:
    >>> import jax, os, tempfile
    >>> import learned_opt as lo
    >>> opt = lo.LSTMOptimizer(hidden_size=4)
    >>> path = os.path.join(tempfile.mkdtemp(), "opt.msgpack")
    >>> lo.save(path, opt, opt.init(jax.random.key(0)))
    >>> loaded, meta_params = lo.load(path)
    >>> loaded == opt, meta_params["out"]["w"].shape
    (True, (4, 1))
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization

from learned_opt.optimizers.base import LearnedOptimizer, MetaParams, architecture

FORMAT = "learned_opt"
FORMAT_VERSION = 1


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Writes ``data`` to ``path`` atomically: a reader sees the old file or the new, never half.

    The bytes go to a temporary file in the same folder (created if needed), are flushed to disk
    and then renamed over ``path``. The file gets the usual permissions of a new file (``0o666``
    less the umask), not the private ones of a temporary file.

    Example:
        >>> import pathlib, tempfile
        >>> from learned_opt.io import atomic_write_bytes
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "sub" / "data.bin"
        >>> atomic_write_bytes(path, b"abc")
        >>> path.read_bytes(), [p.name for p in path.parent.iterdir()]
        (b'abc', ['data.bin'])
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def to_bytes(optimizer: LearnedOptimizer, meta_params: MetaParams) -> bytes:
    """Serialises an optimizer's configuration and weights (the body of :func:`save`).

    Example:
        >>> import jax
        >>> import learned_opt as lo
        >>> from learned_opt.io import from_bytes, to_bytes
        >>> rule = lo.LearnedRule()
        >>> data = to_bytes(rule, rule.init(jax.random.key(0)))
        >>> from_bytes(data)[0] == rule
        True
    """
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "architecture": type(optimizer).__name__,
        "config": json.loads(json.dumps(optimizer.config())),  # tuples -> lists
        "meta_params": serialization.to_state_dict(jax.tree.map(np.asarray, meta_params)),
    }
    return serialization.msgpack_serialize(payload)


def save(path: str | os.PathLike, optimizer: LearnedOptimizer, meta_params: MetaParams) -> None:
    """Saves a learned optimizer (architecture, configuration, weights) to a msgpack file.

    The file is written atomically and holds a format version; :func:`load` restores it.

    Args:
        path: destination file, conventionally ``*.msgpack``.
        optimizer: the architecture, e.g. ``LSTMOptimizer()``.
        meta_params: its weights.

    Example:
        >>> import jax, tempfile, os
        >>> import learned_opt as lo
        >>> opt = lo.LearnedRule()
        >>> path = os.path.join(tempfile.mkdtemp(), "rule.msgpack")
        >>> lo.save(path, opt, opt.init(jax.random.key(0)))
        >>> lo.load(path)[0] == opt
        True
    """
    atomic_write_bytes(path, to_bytes(optimizer, meta_params))


def from_bytes(data: bytes, source: str = "<bytes>") -> tuple[LearnedOptimizer, MetaParams]:
    """Inverse of :func:`to_bytes`: ``(optimizer, meta_params)``; errors name ``source``.

    Raises:
        ValueError: if ``data`` is truncated, corrupt, not a learned_opt file, of another format
            version, or its weights do not fit its architecture.

    Example:
        >>> import jax
        >>> import learned_opt as lo
        >>> from learned_opt.io import from_bytes, to_bytes
        >>> rule = lo.LearnedRule()
        >>> opt, meta_params = from_bytes(to_bytes(rule, rule.init(jax.random.key(0))))
        >>> sorted(meta_params)
        ['coef', 'log_lr']
        >>> from_bytes(b"", source="empty.msgpack")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: empty.msgpack: not a readable learned_opt file ...
    """

    def fail(what: str) -> ValueError:
        return ValueError(f"{source}: {what}")

    try:
        payload = serialization.msgpack_restore(data)
    except Exception as e:  # msgpack raises several types for truncated or corrupt bytes
        raise fail(f"not a readable learned_opt file (corrupt or truncated msgpack: {e})") from e
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise fail("not a learned_opt optimizer file (missing the 'format' marker)")
    version = payload.get("format_version")
    if version != FORMAT_VERSION:
        raise fail(
            f"format version {version} is not supported by this learned_opt (reads version "
            f"{FORMAT_VERSION}); re-save it with a matching learned_opt release"
        )
    if not isinstance(payload.get("config"), dict) or not isinstance(
        payload.get("meta_params"), dict
    ):
        raise fail("malformed file: 'config' and 'meta_params' must be maps")
    try:
        cls = architecture(str(payload["architecture"]))
        config = {k: tuple(v) if isinstance(v, list) else v for k, v in payload["config"].items()}
        optimizer = cls(**config)
    except (KeyError, TypeError, ValueError) as e:
        raise fail(f"incompatible optimizer configuration: {e}") from e
    template = jax.eval_shape(optimizer.init, jax.random.key(0))
    try:
        restored = serialization.from_state_dict(template, payload["meta_params"])
    except (KeyError, TypeError, ValueError) as e:
        raise fail(f"weights do not match {optimizer}: {e}") from e
    _check_weights(restored, template, fail)
    return optimizer, jax.tree.map(jnp.asarray, restored)


def _check_weights(restored: Any, template: Any, fail) -> None:
    if jax.tree.structure(restored) != jax.tree.structure(template):
        raise fail("weights do not match the architecture's parameter tree")
    paths = jax.tree_util.tree_flatten_with_path(template)[0]
    for (path, ref), leaf in zip(paths, jax.tree.leaves(restored), strict=True):
        if not isinstance(leaf, np.ndarray) or leaf.shape != ref.shape or leaf.dtype != ref.dtype:
            got = getattr(leaf, "shape", type(leaf).__name__), getattr(leaf, "dtype", "")
            raise fail(
                f"weight {jax.tree_util.keystr(path)} is {got}, expected {ref.shape} {ref.dtype}"
            )


def load(path: str | os.PathLike) -> tuple[LearnedOptimizer, MetaParams]:
    """Loads ``(optimizer, meta_params)`` saved by :func:`save`.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: naming the file, if it is truncated, corrupt, not a learned_opt file, of
            another format version, or its weights do not fit its architecture.

    Example:
        >>> import jax, tempfile, os
        >>> import learned_opt as lo
        >>> path = os.path.join(tempfile.mkdtemp(), "opt.msgpack")
        >>> lo.save(path, lo.LSTMOptimizer(), lo.LSTMOptimizer().init(jax.random.key(0)))
        >>> opt, meta_params = lo.load(path)
        >>> opt.hidden_size
        20
    """
    path = Path(path)
    return from_bytes(path.read_bytes(), source=str(path))
