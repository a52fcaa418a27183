"""Compiled programs kept on disk: JAX's persistent compilation cache, in a user cache folder."""

from __future__ import annotations

import os
from pathlib import Path

from learned_opt import _checks

#: The environment variable naming the cache folder; empty or ``off`` turns the cache off.
ENV_VAR = "LEARNED_OPT_CACHE_DIR"
_OFF = ("", "off")


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/learned_opt/jax``, or ``~/.cache/learned_opt/jax`` without it."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "learned_opt" / "jax"


def enable_compilation_cache(path: str | os.PathLike[str] | None = None) -> Path | None:
    """Keeps the programs XLA compiles on disk, so that later processes load them instead.

    Switches on JAX's persistent compilation cache for every program, however quickly it
    compiled and however small (JAX's own defaults keep only programs that took a second or
    more to compile, which leaves out most programs on a CPU). The command line, the benchmarks
    and the test suite call it at start; a script calls it once, before its first ``jit``.

    The folder is ``path`` if given, else ``$LEARNED_OPT_CACHE_DIR`` if set, else
    :func:`default_cache_dir`. ``"off"`` or an empty string (as ``path`` or in the variable)
    turns the cache off. Every call replaces the previous setting for the programs compiled
    after it. Only you should be able to write to the folder: JAX trusts what it loads from it.

    Args:
        path: the cache folder (created if missing), ``"off"``, or ``None`` for the
            environment variable or the default.

    Returns:
        The cache folder, or ``None`` when the cache is off.

    Raises:
        ValueError: ``path`` (or ``$LEARNED_OPT_CACHE_DIR``) is not a folder path or names a
            file; the message names the argument (an ``ArgumentTypeError``, also a
            ``TypeError``, for a value that is not a path at all).

    Example:
        >>> import os, tempfile
        >>> import jax
        >>> import learned_opt as lo
        >>> folder = lo.enable_compilation_cache(tempfile.mkdtemp())
        >>> jax.config.jax_compilation_cache_dir == str(folder)
        True
        >>> lo.enable_compilation_cache("off") is None
        True
        >>> lo.enable_compilation_cache(3)
        Traceback (most recent call last):
        ...
        learned_opt._checks.ArgumentTypeError: path: expected a folder path, 'off' or None, got 3
        >>> _ = lo.enable_compilation_cache()  # back to $LEARNED_OPT_CACHE_DIR or the default
    """
    import jax
    from jax.experimental.compilation_cache import compilation_cache

    name = "path"
    if path is None:
        name, path = ENV_VAR, os.environ.get(ENV_VAR)
        if path is None:  # the default folder: a home that cannot hold it turns the cache off
            try:
                path = default_cache_dir()
                path.mkdir(parents=True, exist_ok=True)
            except (OSError, RuntimeError):
                path = "off"
    text = os.fspath(path) if isinstance(path, str | os.PathLike) else None
    if not isinstance(text, str):
        expected = "expected a folder path, 'off' or None"
        raise _checks.ArgumentTypeError(f"{name}: {expected}, got {path!r}")
    folder: Path | None = None
    if text.strip().lower() not in _OFF:
        folder = Path(text).expanduser().absolute()
        _checks.check(not folder.is_file(), f"{name}: {folder} is a file, not a folder")
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ValueError(f"{name}: cannot create the folder {folder} ({e.strerror})") from e
    jax.config.update("jax_compilation_cache_dir", None if folder is None else str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    compilation_cache.reset_cache()  # the next compilation opens the cache in the new folder
    return folder
