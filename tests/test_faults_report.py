"""The fault table of RESULTS.md: its committed JSON covers exactly the fault suite, all passing."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _faults_script():
    spec = importlib.util.spec_from_file_location("faults", ROOT / "benchmarks" / "faults.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_fault_table_covers_the_suite_and_renders():
    faults = _faults_script()
    doc = json.loads(faults.RESULT.read_text())
    collected = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
         "tests/faults"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.splitlines()  # fmt: skip
    ids = sorted(line for line in collected if "::" in line)
    assert [f["id"] for f in doc["faults"]] == ids, "re-run python benchmarks/faults.py"
    assert doc["pytest_exit_code"] == 0 and doc["totals"]["failing"] == 0
    expected = {f["expected"] for f in doc["faults"]}
    assert expected == {"survived", "refused"}
    for key in ("tried", "survived", "refused", "failing"):
        assert doc["totals"][key] == sum(area[key] for area in doc["areas"].values())
    assert (
        doc["totals"]["tried"] == len(ids) == doc["totals"]["survived"] + doc["totals"]["refused"]
    )
    table = faults.render(doc).splitlines()
    assert table[-1] == (
        f"| **all** | **{len(ids)}** | **{doc['totals']['survived']}** | "
        f"**{doc['totals']['refused']}** | **0** |"
    )
    # heading, blank, paragraph, blank, header, rule, one row per area, the total
    assert table[0].startswith("## Faults and bad inputs")
    assert len(table) == 7 + len(doc["areas"])
