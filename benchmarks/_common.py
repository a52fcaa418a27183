"""What every benchmark script shares: the machine, its load, timing, XLA memory, JSON documents.

Every result document a script writes carries ``"command"`` (:func:`command_line`) and
``"machine"`` (:func:`machine`); :func:`emit_json` prints it and writes it atomically.
"""

from __future__ import annotations

import fcntl
import importlib.metadata
import json
import math
import os
import platform
import resource
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from learned_opt.compilation_cache import enable_compilation_cache
from learned_opt.evaluation.timing import Timing as Timing
from learned_opt.evaluation.timing import time_calls as time_calls
from learned_opt.io import atomic_write_bytes

# Every benchmark process reuses the programs compiled before ($LEARNED_OPT_CACHE_DIR, or
# ~/.cache/learned_opt/jax); LEARNED_OPT_CACHE_DIR=off for compile times from scratch.
enable_compilation_cache()

TITLE = "# learned_opt benchmark results"
HERE = Path(__file__).resolve().parent
#: Where the committed result documents live: ``results/<section>.json``.
RESULTS_DIR = HERE / "results"


def cpu_model() -> str | None:
    """The CPU's model name from /proc/cpuinfo (``None`` where unavailable)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _memory_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024**2
    except (OSError, ValueError, IndexError):
        pass
    return None


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine(device_info: dict[str, Any] | None = None) -> dict[str, Any]:
    """Where a benchmark ran: CPU, memory, load, versions, backend and devices.

    ``device_info`` (``backend``, ``jax_devices``, ``device_kinds``) replaces what this
    process's JAX sees, for a parent that measures in child processes.
    """
    import jax

    if device_info is None:
        devices = jax.devices()
        device_info = {
            "backend": jax.default_backend(),
            "jax_devices": [str(d) for d in devices],
            "device_kinds": sorted({d.device_kind for d in devices}),
        }
    return {
        "cpu_model": cpu_model(),
        "platform_processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gb": _memory_gb(),
        "load_average": list(os.getloadavg()),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "jax_version": _version("jax"),
        "jaxlib_version": _version("jaxlib"),
        "optax_version": _version("optax"),
        "backend": device_info.get("backend"),
        "jax_devices": device_info.get("jax_devices"),
        "device_kinds": device_info.get("device_kinds"),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        # With a warm persistent compilation cache, a "compile time" is the time to load.
        "jax_compilation_cache_dir": jax.config.values["jax_compilation_cache_dir"],
    }


def machine_line(m: dict[str, Any]) -> str:
    """One Markdown sentence describing :func:`machine` (fields that are missing are left out)."""
    parts = [m.get("cpu_model") or m.get("platform_processor") or "unknown CPU"]
    if m.get("cpu_count"):
        parts.append(f"{m['cpu_count']} cores")
    if m.get("backend"):
        devices = ", ".join(m.get("jax_devices") or [])
        parts.append(f"backend {m['backend']}" + (f" ({devices})" if devices else ""))
    versions = [f"{k} {m[f'{k}_version']}" for k in ("jax", "optax") if m.get(f"{k}_version")]
    if m.get("python"):
        versions.append(f"Python {m['python']}")
    return "Machine: " + ", ".join(parts + versions) + "."


def cpu_busy_fraction(seconds: float = 1.0) -> float | None:
    """Fraction of all CPUs busy over ``seconds`` (from /proc/stat), before a run starts."""
    try:

        def read() -> tuple[int, int]:
            fields = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
            return sum(fields), fields[3] + fields[4]

        total0, idle0 = read()
        time.sleep(seconds)
        total1, idle1 = read()
        return 1.0 - (idle1 - idle0) / max(1, total1 - total0)
    except (OSError, ValueError, IndexError):
        return None


def peak_rss_mib() -> float:
    """The process's peak resident memory so far, MiB (``ru_maxrss`` is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def xla_memory(compiled: Any) -> dict[str, Any]:
    """Buffer sizes from XLA's ``memory_analysis()`` of a compiled program.

    ``peak_bytes`` = temporaries + arguments + outputs - aliased (outputs written over
    donated arguments are not counted twice). On a backend without the analysis the result
    is ``{"error": ...}``.
    """
    try:
        stats = compiled.memory_analysis()
    except Exception as err:  # not every backend implements it
        return {"error": f"{type(err).__name__}: {err}"[:300]}
    if stats is None:
        return {"error": "memory_analysis() returned None"}
    fields = ("temp", "argument", "output", "alias", "generated_code")
    out = {f"{f}_bytes": int(getattr(stats, f"{f}_size_in_bytes", 0) or 0) for f in fields}
    out["peak_bytes"] = (
        out["temp_bytes"] + out["argument_bytes"] + out["output_bytes"] - out["alias_bytes"]
    )
    return out


def fmt(value: float | None, spec: str) -> str:
    """``value`` formatted with ``spec``, or a dash when missing or not finite."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return format(value, spec)


def command_line(script: str, argv: list[str] | None) -> str:
    """The command that runs ``script`` (a path) with ``argv`` (default: this process's)."""
    argv = sys.argv[1:] if argv is None else argv
    return "python " + shlex.join([script, *argv])


def write_atomic(path: Path, text: str) -> None:
    """Writes ``text`` (UTF-8) to ``path`` atomically and durably, as the library saves files."""
    atomic_write_bytes(path, text.encode())


def emit_json(result: Any, path: Path | None, indent: int | None = 2) -> None:
    """Prints ``result`` as one JSON document to stdout, and writes it to ``path`` if given."""
    document = json.dumps(result, indent=indent)
    print(document)
    if path:
        write_atomic(path, document + "\n")


def write_section(path: Path, section: str, begin: str, end: str) -> None:
    """Replaces the text from ``begin`` to ``end`` in ``path`` (or appends the section).

    ``section`` includes both markers; everything else in the file is kept. Benchmarks that run
    in parallel may write the same file: the read-modify-write holds an exclusive lock on the
    file's directory.
    """
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        text = path.read_text() if path.exists() else f"{TITLE}\n"
        start, stop = text.find(begin), text.find(end)
        if start != -1 and stop > start:
            text = text[:start] + section.rstrip("\n") + text[stop + len(end) :]
        else:
            text = text.rstrip("\n") + "\n\n" + section.rstrip("\n") + "\n"
        write_atomic(path, text)
    finally:
        os.close(fd)
