"""Smoke tests of the benchmark scripts: the one command that regenerates RESULTS.md works."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_run_all_quick_writes_sections_figures_and_json(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "run_all.py"),
            "--quick",
            "--only",
            "l2l_quadratic",
            "meta_lstm_gates",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert set(summary) == {"l2l_quadratic", "meta_lstm_gates"}
    assert all(s["returncode"] == 0 for s in summary.values())
    text = (tmp_path / "RESULTS.md").read_text()
    for marker in ("l2l_study", "l2l_study/rnnprop_quadratic", "meta_lstm_gates"):
        assert f"<!-- {marker}:begin -->" in text and f"<!-- {marker}:end -->" in text
    assert "| 10-d quadratic, 100 steps |" in text
    assert "forget gate f" in text
    assert (tmp_path / "figures" / "l2l_rnnprop_quadratic.png").stat().st_size > 10_000
    assert (tmp_path / "figures" / "meta_lstm_gates.png").stat().st_size > 10_000


def test_run_all_refuses_a_quick_run_over_the_published_results():
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run_all.py"), "--quick"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert "--quick needs --out" in done.stderr


@pytest.fixture
def study():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import l2l_study

        yield l2l_study
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))


def test_study_columns_follow_the_l2l_protocol(study):
    columns = study.mlp_columns("mnist")
    labels = [c.label for c in columns]
    assert labels[:3] == ["100 steps (training setting)", "200 steps", "1000 steps"]
    assert [c.steps for c in columns[:3]] == [100, 200, 1000]
    by_label = {c.label: c for c in columns}
    assert by_label["40 hidden units"].options["hidden_sizes"] == (40,)
    assert by_label["2 hidden layers"].options["hidden_sizes"] == (20, 20)
    assert by_label["ReLU"].options["activation"] == "relu"
    assert by_label["fashion_mnist (dataset shift)"].options == {"dataset": "fashion_mnist"}
    family = study.make_family(by_label["ReLU"])
    assert (family.dataset, family.hidden_sizes, family.batch_size) == ("mnist", (20,), 128)
