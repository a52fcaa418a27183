"""Checkpoints: round trips, retention, mixtures, and exact resume after a run killed mid-write."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import jax
import numpy as np
import pytest

import learned_opt as lo
from learned_opt import cli
from learned_opt.meta import checkpoint

# A meta-train that, given HANG > 0, stops dead while orbax renames the finished temporary
# directory of checkpoint HANG into place (after the data is written, before the commit),
# telling the test so through MARKER. The patch reaches into orbax's internals on purpose.
_HANGING = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    hang, marker, argv = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
    from orbax.checkpoint._src.path import async_path
    rename = async_path.rename
    async def hanging_rename(src, dst):
        if Path(dst).name == f"ckpt_{hang:08d}":
            Path(marker).write_text("writing")
            time.sleep(600)
        return await rename(src, dst)
    async_path.rename = hanging_rename
    from learned_opt import cli
    cli.main(argv)
    """
)
RUN = [
    "meta-train", "--family", "quadratic", "--family-option", "dim=3", "--hidden-size", "4",
    "--layers", "1", "--unroll", "2", "--horizon", "4", "--tasks", "2", "--meta-steps", "6",
    "--checkpoint-every", "2", "--validate-every", "3", "--validate-tasks", "2", "--no-progress",
]  # fmt: skip


def _log_steps(out):
    return [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]


def _validations(out):
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line).get("validation") for line in lines]


def test_a_run_killed_while_writing_a_checkpoint_resumes_to_the_same_result(tmp_path):
    killed, marker = tmp_path / "killed", tmp_path / "writing"
    args = [sys.executable, "-c", _HANGING, "4", str(marker), *RUN, "--out", str(killed)]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    try:
        deadline = time.time() + 240
        while not marker.exists() and time.time() < deadline:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            time.sleep(0.05)
    finally:  # killed at once: left alone, the run's next save would clean up after it
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
    cli.main([*RUN, "--out", str(tmp_path / "whole")])  # the uninterrupted run
    assert proc.returncode == -signal.SIGKILL and marker.exists()
    # Killed while writing checkpoint 4: checkpoint 2 is the newest committed one and the log
    # ran ahead of the checkpoint.
    assert checkpoint.steps(killed / "checkpoints") == [2]
    assert _log_steps(killed) == [1, 2, 3, 4]
    cli.main([*RUN, "--out", str(killed), "--resume"])
    for name in ("optimizer_last.msgpack", "optimizer.msgpack"):
        _, resumed = lo.load(killed / name)
        _, whole = lo.load(tmp_path / "whole" / name)
        jax.tree.map(np.testing.assert_array_equal, resumed, whole)
    assert _log_steps(killed) == [1, 2, 3, 4, 5, 6]
    assert _validations(killed) == _validations(tmp_path / "whole")
    assert sorted(p.name for p in (killed / "checkpoints").iterdir()) == [
        "ckpt_00000004",
        "ckpt_00000006",
    ]


@pytest.fixture(scope="module")
def trainer():
    return lo.MetaTrainer(
        lo.LSTMOptimizer(hidden_size=4, num_layers=1),
        lo.tasks.Quadratic(dim=3),
        lo.TruncatedBackprop(unroll_length=2, horizon=4),
        num_tasks=2,
    )


def test_round_trip_and_retention(tmp_path, trainer):
    state = trainer.init(jax.random.key(0))
    for _ in range(3):
        state, _ = trainer.step(state)
        trainer.save_checkpoint(tmp_path, state, keep=2)
    names = ["ckpt_00000002", "ckpt_00000003"]
    assert checkpoint.steps(tmp_path) == [2, 3] and sorted(os.listdir(tmp_path)) == names
    manifest = json.loads((tmp_path / names[-1] / checkpoint.MANIFEST).read_text())
    assert manifest["config"] == json.loads(json.dumps(trainer.config()))
    assert manifest["step"] == 3 and len(manifest["array_checksum"]) == 16
    assert manifest["files"] and all(len(d) == 64 for d in manifest["files"].values())
    restored = trainer.restore_checkpoint(tmp_path)
    plain = lambda s: jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, s)
    jax.tree.map(np.testing.assert_array_equal, plain(restored), plain(state))
    # Every leaf comes back with the sharding the trainer gives it.
    assert jax.tree.map(lambda x: x.sharding, restored) == jax.tree.map(
        lambda x: x.sharding, trainer.shard(state)
    )
    a, _ = trainer.step(state)
    b, _ = trainer.step(restored)
    jax.tree.map(np.testing.assert_array_equal, a.meta_params, b.meta_params)
    assert int(trainer.restore_checkpoint(tmp_path, step=2).step) == 2


def _is_key(x):
    return jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def test_a_mixture_run_round_trips_and_resumes(tmp_path):
    mixture = lo.tasks.Mixture(((lo.tasks.Quadratic(dim=2), 2), (lo.tasks.Quadratic(dim=3), 2)))
    trainer = lo.MetaTrainer(lo.LearnedRule(), mixture, lo.TruncatedBackprop(2, (2, 8)))
    state, _ = trainer.step(trainer.init(jax.random.key(0)))
    trainer.save_checkpoint(tmp_path, state)
    restored = trainer.restore_checkpoint(tmp_path)
    assert [s.params.shape for s in restored.estimator_state] == [(2, 2), (2, 3)]
    a, _ = trainer.step(state)
    b, _ = trainer.step(restored)
    jax.tree.map(np.testing.assert_array_equal, a.meta_params, b.meta_params)
    other = lo.MetaTrainer(lo.LearnedRule(), lo.tasks.Quadratic(dim=2), num_tasks=4)
    with pytest.raises(lo.CheckpointError, match=r"another configuration: estimator.horizon: "):
        other.restore_checkpoint(tmp_path)
