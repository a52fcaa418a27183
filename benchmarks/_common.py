"""Helpers every benchmark script shares: the machine's description and RESULTS.md sections."""

from __future__ import annotations

import fcntl
import json
import math
import os
import time
from pathlib import Path
from typing import Any

TITLE = "# learned_opt benchmark results"


def cpu_model() -> str | None:
    """The CPU's model name from /proc/cpuinfo (``None`` where unavailable)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


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


def fmt(value: float | None, spec: str) -> str:
    """``value`` formatted with ``spec``, or a dash when missing or not finite."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return format(value, spec)


def emit_json(result: Any, path: Path | None, indent: int | None = 2) -> None:
    """Prints ``result`` as one JSON document to stdout, and writes it to ``path`` if given."""
    document = json.dumps(result, indent=indent)
    print(document)
    if path:
        path.write_text(document + "\n")


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
        path.write_text(text)
    finally:
        os.close(fd)
