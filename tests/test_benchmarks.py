"""The benchmarks: RESULTS.md and the README's table re-render from the committed JSON alone,
and the one command that regenerates the results works."""

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"


@pytest.fixture
def bench():
    """The benchmark scripts as modules: ``bench.render``, ``bench.l2l_study``."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import l2l_study
        import render

        yield type("Bench", (), {"render": render, "l2l_study": l2l_study})
    finally:
        sys.path.remove(str(BENCHMARKS))


def test_committed_markdown_equals_what_the_committed_json_renders(bench, capsys):
    assert bench.render.main(["--check"]) == 0, capsys.readouterr().err
    # --check refuses a published section without JSON; a registered benchmark that has not
    # been run yet publishes nothing.
    for section in bench.render.SECTIONS:
        path = BENCHMARKS / "results" / f"{section.name}.json"
        if path.exists():
            doc = json.loads(path.read_text())
            assert doc["command"].startswith("python benchmarks/") and doc["machine"]["cpu_model"]


def test_render_rewrites_stale_sections_and_keeps_everything_else(bench, tmp_path, capsys):
    results = tmp_path / "RESULTS.md"
    published = (BENCHMARKS / "RESULTS.md").read_text()
    begin, end = bench.render.markers("l2l_mnist")
    inside = published[published.index(begin) : published.index(end)]
    stale = published.replace(inside, inside.replace("0.369", "0.37")).replace(
        "<!-- fewshot_speed:end -->", "<!-- fewshot_speed:end -->\n\nA note of our own."
    )
    results.write_text(stale)
    args = ["--results-md", str(results), "--results-only"]
    assert bench.render.main([*args, "--check"]) == 1
    assert "differ from the committed JSON" in capsys.readouterr().err
    assert results.read_text() == stale  # --check writes nothing
    assert bench.render.main(args) == 0
    assert results.read_text() == published.replace(
        "<!-- fewshot_speed:end -->", "<!-- fewshot_speed:end -->\n\nA note of our own."
    )


def test_render_refuses_a_published_section_without_its_json(bench, tmp_path, capsys):
    shutil.copytree(BENCHMARKS / "results", tmp_path / "results")
    (tmp_path / "results" / "l2l_ablation.json").unlink()
    args = ["--results-dir", str(tmp_path / "results"), "--results-only", "--check"]
    assert bench.render.main(args) == 1
    assert "l2l_ablation: published, but l2l_ablation.json is missing" in capsys.readouterr().err


def _load_run_all():
    spec = importlib.util.spec_from_file_location("run_all", BENCHMARKS / "run_all.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: ``benchmarks/run_all.py`` (standard library only, so importing it at collection is cheap).
RUN_ALL = _load_run_all()


def _check_l2l_quadratic(out: Path, doc: dict, text: str) -> None:
    assert doc["command"].startswith("python benchmarks/l2l_study.py --quick")
    run = doc["columns"][0]["comparison"]["runs"]["rnnprop_quadratic"]
    assert len(run["final"]) == doc["settings"]["tasks"] == 4
    assert "| 10-d quadratic, 100 steps | 5 | in |" in text
    assert "rnnprop_quadratic / tuned Adam" in text
    assert "(no interval)" not in text  # per-task losses give every ratio its interval
    assert (out / "figures" / "l2l_rnnprop_quadratic.png").stat().st_size > 10_000


def _check_meta_lstm_gates(out: Path, doc: dict, text: str) -> None:
    assert "forget gate f" in text
    assert (out / "figures" / "meta_lstm_gates.png").stat().st_size > 10_000


def _check_fewshot_sinusoid(out: Path, doc: dict, text: str) -> None:
    assert set(doc["methods"]) == {"pretrain", "maml", "first_order_maml", "reptile", "meta_lstm"}
    assert doc["protocol"]["task_visits"] == 6 * 4  # --quick: 6 meta-iterations of 4 tasks
    assert "| chosen | alpha " in text
    assert (out / "figures" / "fewshot_sinusoid.png").stat().st_size > 10_000


#: What some benchmarks' quick runs must show beyond a document and a rendered section.
QUICK_CHECKS = {
    "l2l_quadratic": _check_l2l_quadratic,
    "meta_lstm_gates": _check_meta_lstm_gates,
    "fewshot_sinusoid": _check_fewshot_sinusoid,
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(RUN_ALL.BENCHMARKS))
def test_every_registered_benchmark_runs_at_its_quick_settings(name, tmp_path):
    """``run_all.py --quick --only NAME`` writes NAME's document and renders its section.

    All of them take about 15 CPU-minutes (the sinusoid, generalist and glyph ones 2-4 each).
    """
    run_all = [sys.executable, str(BENCHMARKS / "run_all.py")]
    done = subprocess.run(
        [*run_all, "--quick", "--only", name, "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert set(summary) == {name, "render"}
    assert all(s["returncode"] == 0 for s in summary.values())
    doc = json.loads(RUN_ALL.document(name, tmp_path).read_text())
    assert doc["command"].startswith("python ") and doc["machine"]["backend"]
    text = (tmp_path / "RESULTS.md").read_text()
    assert f"<!-- {name}:begin -->" in text and f"<!-- {name}:end -->" in text
    if name in QUICK_CHECKS:
        QUICK_CHECKS[name](tmp_path, doc, text)


def test_run_all_refuses_a_quick_run_over_the_published_results():
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "run_all.py"), "--quick"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert "--quick needs --out" in done.stderr


def test_study_columns_follow_the_l2l_protocol_and_say_what_was_trained_on(bench):
    study = bench.l2l_study
    columns = study.SUITES["lstm_mnist"]()
    assert [c.steps for c in columns[:3]] == [100, 200, 1000]
    by_label = {c.label: c for c in columns}
    assert by_label["40 hidden units"].options["hidden_sizes"] == (40,)
    assert by_label["2 hidden layers"].options["hidden_sizes"] == (20, 20)
    assert by_label["ReLU"].options["activation"] == "relu"
    assert by_label["fashion_mnist (dataset shift)"].options == {"dataset": "fashion_mnist"}
    family = study.make_family(by_label["ReLU"])
    assert (family.dataset, family.hidden_sizes, family.batch_size) == ("mnist", (20,), 128)
    # lstm_mnist was meta-trained on the one-layer network only; lstm_digits on one and two
    # layers (docs/pretrained.md).
    trained = {s: [c.label for c in study.SUITES[s]() if c.in_distribution] for s in study.SUITES}
    assert trained["lstm_mnist"] == ["1 hidden layer of 20, sigmoid, 100 steps"]
    assert trained["lstm_digits"] == ["1 hidden layer of 20, sigmoid, 100 steps", "2 hidden layers"]
    assert trained["rnnprop_quadratic"] == ["10-d quadratic, 100 steps"]
    assert trained["meta_lstm_digits"] == ["ReLU MLP on digits, 100 steps"]
