"""The learned-opt command line: meta-train (with TOML config and resume) and evaluate."""

import inspect
import json
from pathlib import Path

import jax
import numpy as np

import learned_opt as lo
from learned_opt import cli
from learned_opt.cli import arguments, builders

ROOT = Path(__file__).resolve().parents[1]
RUN = [
    "--family", "quadratic", "--family-option", "dim=4", "--unroll", "5", "--horizon", "10",
    "--tasks", "4", "--no-progress",
]  # fmt: skip
TINY = [*RUN, "--hidden-size", "4", "--layers", "1"]


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
    assert {"meta_loss", "inner_steps_per_s", "masked_tasks", "applied"} <= set(log[0])
    # Validated at the last step (interval 50 > 6 steps); the best is the saved optimizer.
    assert [m["step"] for m in log if "validation" in m] == [6]
    assert summary["best_validation"] == log[-1]["validation"]
    assert (out / "meta_training.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    config = json.loads((out / "config.json").read_text())
    assert config["family"] == {"name": "quadratic", "dim": 4, "init_scale": 1.0}
    assert config["run"] == {
        "seed": 1,
        "meta_optimizer": {"name": "adam", "learning_rate": 0.003},
        "validation": {"every": 50, "tasks": 32},
        "init_from": None,
    }
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


def test_the_example_config_runs_and_reaches_every_constructor(tmp_path, capsys):
    out = tmp_path / "digits"
    cli.main([
        "meta-train", "--config", str(ROOT / "docs" / "examples" / "digits.toml"),
        "--meta-steps", "1", "--tasks", "2", "--unroll", "5", "--horizon", "10",
        "--hidden-size", "4", "--layers", "1", "--validate-every", "0", "--no-progress",
        "--out", str(out),
    ])  # fmt: skip
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["meta_steps"] == 1
    config = json.loads((out / "config.json").read_text())
    assert config["family"]["hidden_sizes"] == [20] and config["family"]["batch_size"] == 128
    optimizer = config["optimizer"]
    assert optimizer["normalized_inputs"] is True and optimizer["output_scale"] == 0.1
    assert (optimizer["hidden_size"], optimizer["num_layers"]) == (4, 1)  # flags override
    assert config["estimator"]["meta_loss"] == "log_mean"


def test_defaults_equal_the_library_or_say_why_they_differ():
    args = cli.parse_args(["meta-train"])
    estimator, pes = lo.TruncatedBackprop(), lo.PES()
    trainer = inspect.signature(lo.MetaTrainer).parameters
    run = inspect.signature(lo.MetaTrainer.run).parameters
    assert (args.unroll, args.horizon) == (estimator.unroll_length, estimator.horizon)
    assert args.tasks == lo.MetaTrainer(lo.LearnedRule(), lo.tasks.Quadratic()).num_tasks
    assert args.clip_norm == trainer["clip_norm"].default
    assert args.max_task_grad_norm == trainer["max_task_grad_norm"].default
    assert args.pes_std == pes.std and args.second_order == estimator.second_order
    assert args.checkpoint_every == run["checkpoint_every"].default
    # Architecture options default to the optimizer's own.
    assert all(getattr(args, name) is None for name in builders.ARCHITECTURE_FLAGS)
    # Each difference says why in --help.
    meta_train = arguments.subparser(cli.build_parser(), "meta-train")
    help_text = " ".join(meta_train.format_help().split())
    assert args.meta_loss == "log_mean" != estimator.meta_loss
    assert "default log_mean (the library's default is L2L's sum)" in help_text
    assert args.meta_lr == 3e-3
    assert "default 3e-3 (the library's default Adam uses 1e-3)" in help_text
    assert args.task_chunk is None and "default 1 on CPU (differs from the library's" in help_text


def test_evaluate_prints_the_comparison_table(tmp_path, capsys):
    opt = lo.LSTMOptimizer(hidden_size=4, num_layers=1)
    path = tmp_path / "opt.msgpack"
    lo.save(path, opt, opt.init(jax.random.key(0)))
    cli.main([
        "evaluate", str(path), "--family", "quadratic", "--family-option", "dim=4",
        "--steps", "20", "--tasks", "8", "--tune-tasks", "4", "--baselines", "adam,sgd",
    ])  # fmt: skip
    out = capsys.readouterr().out
    assert "learned / adam" in out and "best tuned baseline" in out
    results = lo.evaluation.Comparison.from_dict(
        json.loads((tmp_path / "eval_quadratic.json").read_text())
    )
    assert list(results.runs) == ["learned", "learned (tuned lr)", "adam", "sgd", "adam (1e-3)"]
    assert results.num_tasks == 8 and results.num_tune_tasks == 4
    adam = results.runs["adam"]
    assert adam.hyperparams["lr"] in lo.evaluation.DEFAULT_GRID
    assert adam.q05 <= adam.median <= adam.q95 and len(adam.final) == 8
    ratio = results.ratio("learned", "adam")
    assert ratio.low is not None and ratio.high is not None
    assert ratio.low <= ratio.ratio <= ratio.high
    assert (tmp_path / "eval_quadratic.png").exists()


def test_init_from_continues_from_the_file_and_random_scaling_wraps_the_family(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    cli.main(["meta-train", *TINY, "--meta-steps", "2", "--out", str(first)])
    init = str(first / "optimizer_last.msgpack")
    cli.main([
        "meta-train", *RUN, "--meta-steps", "0", "--init-from", init,
        "--random-scaling", "2", "--out", str(second),
    ])  # fmt: skip
    # Zero meta-steps: the saved optimizer is exactly the one it started from.
    jax.tree.map(
        np.testing.assert_array_equal,
        _meta_params(second / "optimizer_last.msgpack"),
        _meta_params(first / "optimizer_last.msgpack"),
    )
    config = json.loads((second / "config.json").read_text())
    family = config["family"]
    assert family["name"] == "random_scaling" and family["max_log_scale"] == 2.0
    assert family["family"]["name"] == "quadratic"
    assert config["run"]["init_from"].startswith("sha256:")


def test_evaluate_accepts_a_pretrained_name_and_tunes_nag_momentum(tmp_path, capsys):
    cli.main([
        "evaluate", "rnnprop_quadratic", "--family", "quadratic", "--steps", "10",
        "--tasks", "4", "--tune-tasks", "2", "--baselines", "nag", "--out", str(tmp_path),
    ])  # fmt: skip
    results = json.loads((tmp_path / "eval_quadratic.json").read_text())
    nag = lo.evaluation.Comparison.from_dict(results).runs["nag"]
    assert nag.hyperparams["momentum"] in lo.evaluation.EXTRA_GRIDS["nag"]["momentum"]
