"""Checkpoints: atomic writes, exact resume after a killed process, clear errors."""

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
from learned_opt.meta import checkpoint

_RUN = textwrap.dedent(
    """
    import sys, time
    import jax, numpy as np
    import learned_opt as lo
    from learned_opt.meta import checkpoint
    out, steps, resume, slow = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", float(sys.argv[4])
    trainer = lo.MetaTrainer(
        lo.LSTMOptimizer(hidden_size=4, num_layers=1), lo.tasks.Quadratic(dim=4),
        lo.TruncatedBackprop(unroll_length=5, horizon=10), num_tasks=4)
    if resume:
        state = trainer.restore_checkpoint(out + "/ckpt")
    else:
        state = trainer.init(jax.random.key(7))
    state = trainer.run(state, steps, checkpoint_dir=out + "/ckpt", checkpoint_every=3,
                        progress=False, callback=lambda step, m, state: time.sleep(slow))
    lo.save(out + "/opt.msgpack", trainer.optimizer, jax.device_get(state.meta_params))
    """
)


def _run(out, steps, resume=False, slow=0.0):
    args = [sys.executable, "-c", _RUN, str(out), str(steps), str(int(resume)), str(slow)]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _finish(out, steps, resume=False):
    args = [sys.executable, "-c", _RUN, str(out), str(steps), str(int(resume)), "0"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


def test_killed_run_resumes_to_the_same_meta_parameters(tmp_path):
    steps = 30
    killed = tmp_path / "killed"
    proc = _run(killed, steps, slow=0.2)
    try:
        _finish(tmp_path / "whole", steps)
        deadline = time.time() + 240
        while len(checkpoint.steps(killed / "ckpt")) < 2 and time.time() < deadline:
            assert proc.poll() is None, "the run to be killed ended early"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done = checkpoint.steps(killed / "ckpt")[-1]
    assert 0 < done < steps and not (killed / "opt.msgpack").exists()
    _finish(killed, steps, resume=True)
    _, whole = lo.load(tmp_path / "whole" / "opt.msgpack")
    _, resumed = lo.load(killed / "opt.msgpack")
    jax.tree.map(np.testing.assert_array_equal, resumed, whole)


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
