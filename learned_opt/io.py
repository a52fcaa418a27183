"""Saving and loading trained optimizers as small single-file msgpack files (never pickle).

A file (format version 2) is a msgpack map of four entries: the format marker ``"learned_opt"``,
``format_version``, ``sha256`` and ``payload``. The payload is the msgpack encoding of the
architecture's registry name, its configuration and its weights; ``sha256`` is the SHA-256 of
the payload's bytes. :func:`load` refuses a file whose payload does not match its checksum
(one flipped bit anywhere is enough), then rebuilds the optimizer and checks every weight's
shape and dtype against the architecture; every error names the file.

Version-1 files (the previous format: the same entries in one map, without a checksum) are
still read; damage inside their array data cannot be detected. Re-save them with
:func:`save` to add the checksum.

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

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import msgpack
import numpy as np
from flax import serialization

from learned_opt._files import atomic_write_bytes as atomic_write_bytes
from learned_opt.optimizers import _trees
from learned_opt.optimizers.base import (
    LearnedOptimizer,
    MetaParams,
    architecture,
    architecture_name,
)

FORMAT = "learned_opt"
FORMAT_VERSION = 2
#: Errors msgpack raises for bytes that are not a complete msgpack document (truncated,
#: corrupt, trailing data, invalid UTF-8, non-string map keys...).
_DECODE_ERRORS = (msgpack.UnpackException, ValueError)
_ENTRIES = {"format", "format_version", "sha256", "payload"}


def _check_weights(restored: Any, template: Any, fail: Callable[[str], ValueError]) -> None:
    if _trees.structure(restored) != _trees.structure(template):
        raise fail("weights do not match the architecture's parameter tree")
    paths = jax.tree_util.tree_flatten_with_path(template)[0]
    for (path, ref), leaf in zip(paths, jax.tree.leaves(restored), strict=True):
        shape, dtype = getattr(leaf, "shape", None), getattr(leaf, "dtype", None)
        if shape != ref.shape or dtype != ref.dtype:
            got = (shape, dtype) if shape is not None else type(leaf).__name__
            raise fail(
                f"weight {jax.tree_util.keystr(path)} is {got}, expected {ref.shape} {ref.dtype}"
            )


def to_bytes(optimizer: LearnedOptimizer, meta_params: MetaParams) -> bytes:
    """Serialises an optimizer's configuration and weights (the body of :func:`save`).

    Raises:
        ValueError: if ``meta_params`` do not fit ``optimizer`` (tree, shapes or dtypes).

    Example:
        >>> import jax
        >>> import learned_opt as lo
        >>> from learned_opt.io import from_bytes, to_bytes
        >>> rule = lo.LearnedRule()
        >>> data = to_bytes(rule, rule.init(jax.random.key(0)))
        >>> from_bytes(data)[0] == rule
        True
    """
    template = jax.eval_shape(optimizer.init, jax.random.key(0))
    _check_weights(meta_params, template, lambda what: ValueError(f"meta_params: {what}"))
    payload = serialization.msgpack_serialize(
        {
            "architecture": architecture_name(type(optimizer)),
            "config": json.loads(json.dumps(optimizer.config())),  # tuples -> lists
            "meta_params": serialization.to_state_dict(jax.tree.map(np.asarray, meta_params)),
        }
    )
    return msgpack.packb(
        {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "sha256": hashlib.sha256(payload).hexdigest(),
            "payload": payload,
        }
    )


def save(path: str | os.PathLike, optimizer: LearnedOptimizer, meta_params: MetaParams) -> None:
    """Saves a learned optimizer (architecture, configuration, weights) to one msgpack file.

    The file is written atomically and durably and carries a checksum; :func:`load` restores
    it.

    Args:
        path: destination file, conventionally ``*.msgpack``.
        optimizer: the architecture, e.g. ``LSTMOptimizer()``.
        meta_params: its weights (checked against the architecture).

    Raises:
        ValueError: if ``meta_params`` do not fit ``optimizer``.

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
        ValueError: if ``data`` is truncated, corrupt (fails its checksum), not a learned_opt
            file, of another format version, or its weights do not fit its architecture.

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
        outer = msgpack.unpackb(data)
    except _DECODE_ERRORS as e:
        raise fail(f"not a readable learned_opt file (corrupt or truncated msgpack: {e})") from e
    if not isinstance(outer, dict) or outer.get("format") != FORMAT:
        raise fail("not a learned_opt optimizer file (missing the 'format' marker)")
    version = outer.get("format_version")
    if version == 1:
        body = _version_1(data, fail)
    elif version == FORMAT_VERSION:
        body = _verified_payload(outer, fail)
    else:
        raise fail(
            f"format version {version!r} is not supported by this learned_opt (reads versions "
            f"1 and {FORMAT_VERSION}); re-save it with a matching learned_opt release"
        )
    if not isinstance(body.get("config"), dict) or not isinstance(body.get("meta_params"), dict):
        raise fail("malformed file: 'config' and 'meta_params' must be maps")
    try:
        cls = architecture(str(body["architecture"]))
        config = {k: tuple(v) if isinstance(v, list) else v for k, v in body["config"].items()}
        optimizer = cls(**config)
    except (KeyError, TypeError, ValueError) as e:
        raise fail(f"incompatible optimizer configuration: {e}") from e
    template = jax.eval_shape(optimizer.init, jax.random.key(0))
    try:
        restored = serialization.from_state_dict(template, body["meta_params"])
    except (KeyError, TypeError, ValueError) as e:
        raise fail(f"weights do not match {optimizer}: {e}") from e
    _check_weights(restored, template, fail)
    return optimizer, jax.tree.map(jnp.asarray, restored)


def _verified_payload(outer: dict, fail: Callable[[str], ValueError]) -> dict:
    if set(outer) != _ENTRIES:
        raise fail(f"malformed file: expected the entries {sorted(_ENTRIES)}, got {sorted(outer)}")
    payload, digest = outer["payload"], outer["sha256"]
    if not isinstance(payload, bytes) or not isinstance(digest, str):
        raise fail("malformed file: 'payload' must be bytes and 'sha256' a string")
    if hashlib.sha256(payload).hexdigest() != digest:
        raise fail("corrupt file: its contents do not match their SHA-256 checksum")
    try:
        body = serialization.msgpack_restore(payload)
    except _DECODE_ERRORS as e:  # a checksum-valid payload that is not msgpack: written so
        raise fail(f"malformed payload ({e})") from e
    if not isinstance(body, dict):
        raise fail("malformed payload: expected a map")
    return body


def _version_1(data: bytes, fail: Callable[[str], ValueError]) -> dict:
    """A version-1 file: one map, no checksum."""
    try:
        body = serialization.msgpack_restore(data)
    except _DECODE_ERRORS as e:
        raise fail(f"not a readable learned_opt file (corrupt or truncated msgpack: {e})") from e
    return body


def load(path: str | os.PathLike) -> tuple[LearnedOptimizer, MetaParams]:
    """Loads ``(optimizer, meta_params)`` saved by :func:`save`.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: naming the file, if it is truncated, corrupt (fails its checksum), not a
            learned_opt file, of another format version, or its weights do not fit its
            architecture.

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
