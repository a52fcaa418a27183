"""Durable file writes: one atomic writer for every file the package saves."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def fsync_directory(path: str | os.PathLike) -> None:
    """Flushes a directory's entries (new, renamed or removed files) to disk."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(path: str | os.PathLike) -> None:
    """Flushes every file and directory under ``path`` (and ``path``'s own entry) to disk."""
    for root, _, names in os.walk(os.fspath(path)):
        for name in names:
            fd = os.open(Path(root) / name, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_directory(root)
    fsync_directory(Path(path).parent)


def make_folders(folder: str | os.PathLike) -> None:
    """Creates ``folder`` and its missing parents, flushing each new folder's entry to disk."""
    folder = Path(folder)
    missing = []
    while not folder.is_dir() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    for new in reversed(missing):
        new.mkdir(exist_ok=True)
        fsync_directory(new.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Writes ``data`` to ``path`` atomically and durably: a reader sees the old file or the new.

    The bytes go to a new temporary file in the same folder (created if needed, its entry
    flushed to disk), are flushed to disk, renamed over ``path``, and the folder's entry is
    flushed too, so the new file survives a crash once this returns. The file gets the usual
    permissions of a new file (``0o666`` less the process umask, which is never changed); an
    existing file keeps nothing of its own.

    Args:
        path: the file to write.
        data: its new content.

    Raises:
        OSError: if the folder or the file cannot be written; ``path`` is then unchanged and
            no temporary file is left behind.

    Example:
        >>> import pathlib, tempfile
        >>> from learned_opt.io import atomic_write_bytes
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "sub" / "data.bin"
        >>> atomic_write_bytes(path, b"abc")
        >>> path.read_bytes(), [p.name for p in path.parent.iterdir()]
        (b'abc', ['data.bin'])
    """
    path = Path(path)
    make_folders(path.parent)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the kernel applies the umask
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)
