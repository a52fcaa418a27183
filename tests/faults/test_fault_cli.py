"""Command-line faults: one line on stderr naming the argument, exit 2 (usage) or 1 (run time),
no traceback, and nothing written."""

import json
import re
import shutil

import pytest

from learned_opt import cli
from learned_opt.meta import checkpoint

TINY = [
    "--family", "quadratic", "--family-option", "dim=3", "--hidden-size", "4", "--layers", "1",
    "--unroll", "2", "--horizon", "4", "--tasks", "2", "--no-progress", "--validate-every", "0",
    "--checkpoint-every", "1",
]  # fmt: skip
PREFIX = "learned-opt meta-train: error: "


def _fails(capsys, argv, code=2):
    """Runs the CLI expecting exit ``code``; returns its only stderr line (after any warnings)."""
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if not line.startswith("learned-opt: warning")]
    assert len(lines) == 1, err
    return lines[0]


def _snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished 2-meta-step run (checkpoints of steps 1 and 2)."""
    out = tmp_path_factory.mktemp("run") / "run"
    cli.main(["meta-train", *TINY, "--meta-steps", "2", "--out", str(out)])
    return out


@pytest.fixture
def run(finished_run, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    capsys.readouterr()
    return out


USAGE = {
    "unknown_family": (
        ["--family", "cnn"],
        r"--family: unknown 'cnn'; known: \['autoencoder', 'char_transformer', 'conv', ",
    ),
    "unknown_family_option": (
        ["--family", "quadratic", "--family-option", "bogus=1"],
        r"--family-option: task family 'quadratic': unknown option\(s\) \['bogus'\]; accepted: "
        r"\['dim', 'init_scale'\]$",
    ),
    "mistyped_family_option": (
        ["--family", "quadratic", "--family-option", "dim=four"],
        "--family-option: dim: expected an integer >= 1, got 'four'$",
    ),
    "family_option_without_value": (
        ["--family-option", "dim"],
        "--family-option: expected NAME=VALUE, got 'dim'$",
    ),
    "unroll_above_horizon": (
        ["--family", "quadratic", "--unroll", "20", "--horizon", "10"],
        r"--horizon: expected at least unroll_length \(20\), got 10$",
    ),
    "horizon_not_a_multiple": (
        ["--family", "quadratic", "--unroll", "20", "--horizon", "30"],
        r"--horizon: expected a multiple of unroll_length \(20\), got 30$",
    ),
    "bad_horizon_range": (["--horizon", "10:x"], "--horizon: expected an integer >= 1, got 'x'$"),
    "missing_init_from": (
        ["--family", "quadratic", "--init-from", "nope.msgpack"],
        r"--init-from: no such file or pretrained optimizer 'nope.msgpack'; pretrained: \[",
    ),
    "init_from_with_architecture": (
        ["--family", "quadratic", "--init-from", "lstm_digits", "--hidden-size", "4"],
        r"--hidden-size: not allowed with --init-from \(the file sets it\)$",
    ),
    "negative_meta_steps": (
        ["--meta-steps", "-5"],
        "--meta-steps: expected an integer >= 0, got -5$",
    ),
    "zero_checkpoint_every": (
        ["--checkpoint-every", "0"],
        "--checkpoint-every: expected an integer >= 1, got 0$",
    ),
    "task_chunk_not_dividing": (
        ["--family", "quadratic", "--tasks", "4", "--task-chunk", "3"],
        r"--task-chunk: expected a divisor of the number of tasks \(4\), got 3$",
    ),
    "not_a_number": (
        ["--meta-lr", "fast"],
        r"--meta-lr: expected a finite number > 0.0, got 'fast'$",
    ),
    "nan_clip_norm": (
        ["--clip-norm", "nan"],
        r"--clip-norm: expected a finite number > 0.0, got nan$",
    ),
    "architecture_flag_of_another_optimizer": (
        ["--family", "quadratic", "--optimizer", "rule", "--hidden-size", "4"],
        "--hidden-size: not an option of --optimizer rule$",
    ),
    "unknown_optimizer_option": (
        ["--family", "quadratic", "--optimizer", "rule", "--optimizer-option", "bogus=1"],
        "--optimizer-option: LearnedRule: .*unexpected keyword argument 'bogus'",
    ),
    "unknown_optimizer": (["--optimizer", "adam"], r"--optimizer: invalid choice: 'adam'"),
    "resume_and_overwrite": (
        ["--resume", "--overwrite"],
        "--overwrite: not allowed with argument --resume$",
    ),
}


@pytest.mark.fault("refused")
@pytest.mark.parametrize("case", sorted(USAGE))
def test_bad_usage_is_one_line_exit_2_and_writes_nothing(case, capsys, tmp_path):
    argv, message = USAGE[case]
    out = tmp_path / "out"
    line = _fails(capsys, ["meta-train", *argv, "--no-progress", "--out", str(out)])
    assert re.match(PREFIX + message, line), line
    assert not out.exists()


CONFIGS = {
    "malformed_toml": ("meta_steps = = 3\n", r"is not valid TOML \(Invalid value \(at line 1"),
    "unknown_key": ("unroll_steps = 3\n", "unknown option 'unroll_steps'; known: "),
    "wrong_type": ('meta_steps = "five"\n', "meta_steps: expected an integer >= 0, got 'five'$"),
    "flag_not_a_bool": ("second_order = 1\n", "second_order: expected true or false, got 1$"),
    "table_not_a_table": ("family_options = 3\n", r"\[family_options\] must be a table$"),
    "bad_family_option": ("[family_options]\nhidden_sizes = [20, 0]\n", "--family-option: "
                          r"hidden_sizes: expected positive integers, got \(20, 0\)$"),
}  # fmt: skip


@pytest.mark.fault("refused")
@pytest.mark.parametrize("case", sorted(CONFIGS))
def test_a_bad_config_file_is_one_line_exit_2(case, capsys, tmp_path):
    text, message = CONFIGS[case]
    config = tmp_path / "run.toml"
    config.write_text(text)
    out = tmp_path / "out"
    line = _fails(capsys, ["meta-train", "--config", str(config), "--out", str(out)])
    assert re.match(PREFIX + r"(--config: \S*run\.toml:? )?" + message, line), line
    assert not out.exists()


@pytest.mark.fault("refused")
def test_a_missing_config_file_is_refused(capsys, tmp_path):
    line = _fails(capsys, ["meta-train", "--config", str(tmp_path / "none.toml")])
    assert line == f"{PREFIX}--config: no such file {tmp_path / 'none.toml'}"


@pytest.mark.fault("refused")
def test_out_pointing_at_a_file_is_refused(capsys, tmp_path):
    path = tmp_path / "file"
    path.write_text("mine")
    line = _fails(capsys, ["meta-train", *TINY, "--out", str(path)])
    assert line == f"{PREFIX}--out: {path} is a file, expected a folder"
    assert path.read_text() == "mine"


@pytest.mark.fault("refused")
def test_a_fresh_run_refuses_an_out_holding_another_run_and_touches_nothing(run, capsys):
    before = _snapshot(run)
    line = _fails(capsys, ["meta-train", *TINY, "--meta-steps", "4", "--out", str(run)])
    assert line == (
        f"{PREFIX}--out: {run} holds another run (config.json, metrics.jsonl, checkpoints, "
        "optimizer.msgpack, optimizer_last.msgpack, meta_training.png); pass --resume to "
        "continue it or --overwrite to replace it"
    )
    # A bad argument beside it: refused before anything is touched (metrics.jsonl included).
    _fails(capsys, ["meta-train", *TINY, "--overwrite", "--meta-steps", "-1", "--out", str(run)])
    assert _snapshot(run) == before


@pytest.mark.fault("refused")
def test_resume_says_exactly_which_settings_differ(run, capsys):
    before = _snapshot(run)
    argv = ["meta-train", *TINY, "--seed", "3", "--meta-lr", "0.01", "--clip-norm", "2"]
    line = _fails(capsys, [*argv, "--meta-steps", "4", "--out", str(run), "--resume"])
    assert line == (
        f"{PREFIX}--resume: {run} holds a run with other settings: clip_norm: the run has 1.0, "
        "this command 2.0; run.meta_optimizer.learning_rate: the run has 0.003, this command "
        "0.01; run.seed: the run has 0, this command 3"
    )
    line = _fails(capsys, ["meta-train", *TINY, "--meta-steps", "1", "--out", str(run), "--resume"])
    assert line == (
        f"{PREFIX}--meta-steps: expected at least the 2 meta-steps the run in {run} has taken, "
        "got 1"
    )
    assert _snapshot(run) == before


@pytest.mark.fault("survived")
def test_overwrite_replaces_the_run_and_keeps_other_files(run, capsys):
    (run / "notes.txt").write_text("mine")
    cli.main(["meta-train", *TINY, "--meta-steps", "1", "--out", str(run), "--overwrite"])
    steps = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1] and (run / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["ckpt_00000001"]


def _damage_newest_checkpoint(run, step):
    step_dir = run / "checkpoints" / f"ckpt_{step:08d}"
    arrays = (p for p in step_dir.rglob("*") if p.is_file() and p.name != checkpoint.MANIFEST)
    victim = max(arrays, key=lambda p: p.stat().st_size)  # the array data, not the manifest
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))


@pytest.mark.fault("survived")
def test_resume_skips_a_corrupt_newest_checkpoint_with_a_warning(run, capsys):
    _damage_newest_checkpoint(run, 2)
    cli.main(["meta-train", *TINY, "--meta-steps", "3", "--out", str(run), "--resume"])
    err = capsys.readouterr().err
    assert re.search(
        r"learned-opt: warning: .*ckpt_00000002: file .* is damaged \(its SHA-256 differs\); "
        r"resuming from the intact .*ckpt_00000001", err
    )  # fmt: skip
    steps = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]


@pytest.mark.fault("refused")
def test_resume_with_no_intact_checkpoint_fails_cleanly_with_exit_1(run, capsys):
    _damage_newest_checkpoint(run, 1)
    _damage_newest_checkpoint(run, 2)
    before = _snapshot(run)
    line = _fails(capsys, ["meta-train", *TINY, "--meta-steps", "4", "--out", str(run),
                           "--resume"], code=1)  # fmt: skip
    assert line.startswith(f"{PREFIX}{run / 'checkpoints'}: no intact checkpoint: ")
    assert _snapshot(run) == before


@pytest.mark.fault("refused")
def test_meta_training_that_cannot_go_on_stops_with_exit_1(capsys, tmp_path):
    # Every task masked at every step: warned each step, stopped after 10 in a row.
    out = tmp_path / "out"
    argv = ["meta-train", *TINY, "--max-task-grad-norm", "1e-30", "--meta-steps", "20"]
    line = _fails(capsys, [*argv, "--out", str(out)], code=1)
    assert line.startswith(f"{PREFIX}meta-step 10: not applied, all 2 tasks were masked")
    assert line.endswith("Stopping after 10 meta-steps in a row without an update "
                         "(max_skipped_steps=10); the last checkpoint is intact.")  # fmt: skip
    log = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(log) == 10 and all(m["applied"] == 0.0 for m in log)


EVALUATE = {
    "missing_file": (["nope.msgpack"], r"optimizer_file: no such file or pretrained optimizer"),
    "unknown_baseline": (["lstm_digits", "--baselines", "adam,lion"], r"--baselines: unknown "
                         r"\['lion'\]; known: \["),
    "zero_steps": (["lstm_digits", "--steps", "0"], "--steps: expected an integer >= 1, got 0$"),
    "unknown_family": (["lstm_digits", "--family", "cnn"], "--family: unknown 'cnn'"),
}  # fmt: skip


@pytest.mark.fault("refused")
@pytest.mark.parametrize("case", sorted(EVALUATE))
def test_bad_evaluate_usage_is_one_line_exit_2(case, capsys, tmp_path):
    argv, message = EVALUATE[case]
    line = _fails(capsys, ["evaluate", *argv, "--out", str(tmp_path / "out")])
    assert re.match("learned-opt evaluate: error: " + message, line), line
    assert not (tmp_path / "out").exists()


@pytest.mark.fault("refused")
def test_evaluate_refuses_a_corrupt_file_and_an_out_that_is_a_file(capsys, tmp_path):
    bad = tmp_path / "opt.msgpack"
    bad.write_bytes(b"\x85garbage")
    line = _fails(capsys, ["evaluate", str(bad)])
    assert line.startswith(f"learned-opt evaluate: error: optimizer_file: {bad}: not a")
    line = _fails(capsys, ["evaluate", "lstm_digits", "--out", str(bad)])
    assert line == f"learned-opt evaluate: error: --out: {bad} is a file, expected a folder"


@pytest.mark.fault("refused")
def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(cli.UsageError, match="--meta-steps: expected an integer >= 0, got -5"):
        cli.main(["meta-train", "--debug", "--meta-steps", "-5", "--out", str(tmp_path / "o")])
