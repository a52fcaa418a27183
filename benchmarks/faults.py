"""The fault suite, counted: faults and bad inputs tried, survived, and refused cleanly.

Runs ``tests/faults`` (every test there carries ``@pytest.mark.fault("survived")`` or
``@pytest.mark.fault("refused")``; a parametrized test counts once per case) and writes
``benchmarks/results/faults.json``: per fault its test id, area (the ``test_fault_<area>.py``
file), expected outcome and whether the test passed, and the totals per area. :func:`render`
is the Markdown of the RESULTS.md section ``faults``.

Usage::

    python benchmarks/faults.py                   # run the suite, write the JSON, print the table
    python benchmarks/faults.py --render-json benchmarks/results/faults.json   # table only
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import _common as common  # noqa: E402

RESULT = HERE / "results" / "faults.json"
SUITE = ROOT / "tests" / "faults"
AREAS = {
    "meta": "meta-training (bad tasks, bad updates, bad trainer arguments)",
    "checkpoints": "checkpoints (damaged, incomplete, foreign, resumed from an older step)",
    "files": "optimizer files (fuzzed truncations and bit flips, missing files)",
    "tasks": "task-family options (types and ranges)",
    "cli": "command line (usage, config files, runs in --out, resume, run-time failures)",
}


class _Collector:
    """A pytest plugin recording each fault test's outcome (``user_properties`` cross xdist)."""

    def __init__(self) -> None:
        self.faults: dict[str, dict[str, Any]] = {}

    def pytest_runtest_logreport(self, report) -> None:
        kind = dict(report.user_properties).get("fault")
        if kind is None or (report.when != "call" and report.passed):
            return
        entry = self.faults.setdefault(
            report.nodeid,
            {"id": report.nodeid, "area": _area(report.nodeid), "expected": kind, "passed": True},
        )
        entry["passed"] = entry["passed"] and report.passed


def _area(nodeid: str) -> str:
    return Path(nodeid.split("::")[0]).stem.removeprefix("test_fault_")


def run(workers: int) -> dict[str, Any]:
    """Runs the fault suite and returns the result document."""
    collector = _Collector()
    args = [str(SUITE), "-q", "-p", "no:cacheprovider", "-n", str(workers)]
    code = pytest.main(args, plugins=[collector])
    faults = sorted(collector.faults.values(), key=lambda f: f["id"])
    areas: dict[str, Counter] = {}
    for fault in faults:
        counts = areas.setdefault(fault["area"], Counter())
        counts["tried"] += 1
        counts[fault["expected"] if fault["passed"] else "failing"] += 1
    totals = sum(areas.values(), Counter())
    keys = ("tried", "survived", "refused", "failing")
    return {
        "command": " ".join(["python", "benchmarks/faults.py", *sys.argv[1:]]),
        "machine": common.machine(),
        "pytest_exit_code": int(code),
        "areas": {area: {k: counts[k] for k in keys} for area, counts in sorted(areas.items())},
        "totals": {k: totals[k] for k in keys},
        "faults": faults,
    }


def render(doc: dict[str, Any]) -> str:
    """The RESULTS.md section: faults and bad inputs tried, survived, refused cleanly, by area.

    Example:
        >>> doc = {"areas": {"cli": {"tried": 3, "survived": 1, "refused": 2, "failing": 0}},
        ...        "totals": {"tried": 3, "survived": 1, "refused": 2, "failing": 0},
        ...        "command": "python benchmarks/faults.py"}
        >>> print(render(doc).splitlines()[-1])
        | **all** | **3** | **1** | **2** | **0** |
    """
    lines = [
        "## Faults and bad inputs (benchmarks/faults.py)",
        "",
        "Every fault and bad input of the fault suite (`tests/faults`), each a test that asserts "
        "the exact outcome: *survived* (the run goes on, the fault contained) or *refused "
        "cleanly* (one clear error naming the argument or file; from the command line one line "
        "and a non-zero exit). A parametrized test counts once per case. Made by "
        f"`{doc['command']}`.",
        "",
        "| area | tried | survived | refused cleanly | failing |",
        "|---|---:|---:|---:|---:|",
    ]
    for area, c in doc["areas"].items():
        label = AREAS.get(area, area)
        lines.append(
            f"| {label} | {c['tried']} | {c['survived']} | {c['refused']} | {c['failing']} |"
        )
    t = doc["totals"]
    lines.append(
        f"| **all** | **{t['tried']}** | **{t['survived']}** | **{t['refused']}** | "
        f"**{t['failing']}** |"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULT, help="the JSON document to write")
    parser.add_argument("--workers", type=int, default=2, help="pytest-xdist workers")
    parser.add_argument("--render-json", type=Path, help="print the table of this document")
    args = parser.parse_args()
    if args.render_json is not None:
        print(render(json.loads(args.render_json.read_text())))
        return
    doc = run(args.workers)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(render(doc))
    if doc["totals"]["failing"] or doc["pytest_exit_code"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
