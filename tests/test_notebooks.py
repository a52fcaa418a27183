"""The teaching notebooks in notebooks/: each runs end to end, and each .ipynb matches its .py.

The ``.py`` files (jupytext "percent" format) are the source; every one is paired with an
``.ipynb`` that holds the same cells and no outputs. The notebooks run in a subprocess on their
quick settings (``LEARNED_OPT_NOTEBOOK_QUICK=1``), so this file's conftest settings do not reach
them; ``-W error`` keeps them warning-free all the same.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import jupytext
import pytest

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
SOURCES = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.py"))
TIMEOUT_S = 600


def test_every_notebook_is_listed_and_paired():
    assert [p.stem for p in SOURCES] == [
        "01_quickstart",
        "02_meta_train_your_own",
        "03_inside_the_lstm",
        "04_fewshot_sinusoids",
        "05_scaling_across_devices",
    ]
    readme = (NOTEBOOKS / "README.md").read_text()
    for source in SOURCES:
        assert source.with_suffix(".ipynb").is_file(), f"{source.name} has no .ipynb"
        assert f"{source.stem}.ipynb" in readme, f"notebooks/README.md does not list {source.stem}"


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_notebook_runs(source, tmp_path):
    env = {**os.environ, "LEARNED_OPT_NOTEBOOK_QUICK": "1", "MPLBACKEND": "Agg"}
    result = subprocess.run(
        [sys.executable, "-W", "error", str(source)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert result.returncode == 0, f"{source.name} failed:\n{result.stdout}\n{result.stderr}"


def _cells(notebook):
    return [(cell.cell_type, cell.source) for cell in notebook.cells]


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_ipynb_matches_py_and_has_no_outputs(source):
    paired = source.with_suffix(".ipynb")
    from_py, from_ipynb = jupytext.read(source), jupytext.read(paired)
    assert _cells(from_ipynb) == _cells(from_py), (
        f"{paired.name} is out of sync with {source.name}: run `jupytext --sync {source}`"
    )
    assert from_py.metadata["jupytext"]["formats"] == "ipynb,py:percent"
    raw = json.loads(paired.read_text())
    for index, cell in enumerate(raw["cells"]):
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [], f"{paired.name}: cell {index} has outputs"
            assert cell["execution_count"] is None, f"{paired.name}: cell {index} was executed"
