"""The learned-opt command line: meta-train (with TOML config and resume) and evaluate."""

import json

import jax
import numpy as np
import pytest

import learned_opt as lo
from learned_opt import cli

TINY = [
    "--family", "quadratic", "--family-option", "dim=4", "--hidden-size", "4", "--layers", "1",
    "--unroll", "5", "--horizon", "10", "--tasks", "4", "--no-progress",
]  # fmt: skip


def _meta_params(path):
    return lo.load(path)[1]


def test_meta_train_writes_the_optimizer_log_and_plot(tmp_path, capsys):
    config = tmp_path / "run.toml"
    config.write_text('family = "quadratic"\nmeta_steps = 3\nseed = 1\n[family_options]\ndim = 4\n')
    out = tmp_path / "run"
    cli.main(["meta-train", "--config", str(config), *TINY, "--meta-steps", "6", "--out", str(out)])
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["meta_steps"] == 6  # the command line overrides the file
    log = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in log] == [1, 2, 3, 4, 5, 6]
    assert {"meta_loss", "inner_steps_per_s", "nonfinite_tasks"} <= set(log[0])
    # Validated at the last step (interval 50 > 6 steps); the best is the saved optimizer.
    assert [m["step"] for m in log if "validation" in m] == [6]
    assert summary["best_validation"] == log[-1]["validation"]
    assert (out / "meta_training.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((out / "config.json").read_text())["family"] == {
        "name": "quadratic", "dim": 4, "init_scale": 1.0
    }  # fmt: skip
    opt, _ = lo.load(out / "optimizer.msgpack")
    assert opt == lo.LSTMOptimizer(hidden_size=4, num_layers=1)


def test_resume_continues_to_the_uninterrupted_result(tmp_path):
    whole, part = tmp_path / "whole", tmp_path / "part"
    cli.main(["meta-train", *TINY, "--meta-steps", "8", "--out", str(whole)])
    cli.main(["meta-train", *TINY, "--meta-steps", "4", "--out", str(part)])
    cli.main(["meta-train", *TINY, "--meta-steps", "8", "--out", str(part), "--resume"])
    jax.tree.map(
        np.testing.assert_array_equal,
        _meta_params(part / "optimizer_last.msgpack"),
        _meta_params(whole / "optimizer_last.msgpack"),
    )
    steps = [json.loads(x)["step"] for x in (part / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 9))


def test_evaluate_prints_the_comparison_table(tmp_path, capsys):
    opt = lo.LSTMOptimizer(hidden_size=4, num_layers=1)
    path = tmp_path / "opt.msgpack"
    lo.save(path, opt, opt.init(jax.random.key(0)))
    cli.main([
        "evaluate", str(path), "--family", "quadratic", "--family-option", "dim=4",
        "--steps", "20", "--tasks", "8", "--tune-tasks", "4", "--baselines", "adam,sgd",
    ])  # fmt: skip
    out = capsys.readouterr().out
    assert "learned (LSTMOptimizer)" in out and "adam" in out and "sgd" in out
    results = json.loads((tmp_path / "eval_quadratic.json").read_text())
    assert set(results) == {"learned (LSTMOptimizer)", "adam", "sgd"}
    assert results["adam"]["lr"] in lo.evaluation.DEFAULT_GRID
    assert results["adam"]["q05"] <= results["adam"]["median"] <= results["adam"]["q95"]
    assert (tmp_path / "eval_quadratic.png").exists()


def test_bad_options_are_named(tmp_path):
    with pytest.raises(ValueError, match="bogus"):
        cli.main(["meta-train", *TINY, "--family-option", "bogus=1", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="--family-option"):
        cli.main(["meta-train", *TINY, "--family-option", "dim", "--out", str(tmp_path)])
    config = tmp_path / "bad.toml"
    config.write_text("unroll_steps = 3\n")
    with pytest.raises(SystemExit, match="unroll_steps"):
        cli.main(["meta-train", "--config", str(config)])


def test_init_from_continues_from_the_file_and_random_scaling_wraps_the_family(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    cli.main(["meta-train", *TINY, "--meta-steps", "2", "--out", str(first)])
    cli.main([
        "meta-train", *TINY, "--meta-steps", "0", "--init-from",
        str(first / "optimizer_last.msgpack"), "--random-scaling", "2", "--out", str(second),
    ])  # fmt: skip
    # Zero meta-steps: the saved optimizer is exactly the one it started from.
    jax.tree.map(
        np.testing.assert_array_equal,
        _meta_params(second / "optimizer_last.msgpack"),
        _meta_params(first / "optimizer_last.msgpack"),
    )
    family = json.loads((second / "config.json").read_text())["family"]
    assert family["name"] == "random_scaling" and family["max_log_scale"] == 2.0
    assert family["family"]["name"] == "quadratic"


def test_evaluate_accepts_a_pretrained_name_and_tunes_nag_momentum(tmp_path, capsys):
    cli.main([
        "evaluate", "rnnprop_quadratic", "--family", "quadratic", "--steps", "10",
        "--tasks", "4", "--tune-tasks", "2", "--baselines", "nag", "--out", str(tmp_path),
    ])  # fmt: skip
    results = json.loads((tmp_path / "eval_quadratic.json").read_text())
    assert results["nag"]["momentum"] in lo.evaluation.EXTRA_GRIDS["nag"]["momentum"]
