"""Damaged, incomplete and foreign checkpoints: resume uses the newest intact one or refuses."""

import json
import random
import shutil

import jax
import numpy as np
import pytest

import learned_opt as lo
from learned_opt.meta import checkpoint


@pytest.fixture(scope="module")
def trainer():
    return lo.MetaTrainer(
        lo.LSTMOptimizer(hidden_size=4, num_layers=1),
        lo.tasks.Quadratic(dim=3),
        lo.TruncatedBackprop(unroll_length=2, horizon=4),
        num_tasks=2,
    )


@pytest.fixture(scope="module")
def two_checkpoints(trainer, tmp_path_factory):
    """A directory with the checkpoints of meta-steps 1 and 2."""
    directory = tmp_path_factory.mktemp("ckpts")
    state = trainer.init(jax.random.key(0))
    for _ in range(2):
        state, _ = trainer.step(state)
        trainer.save_checkpoint(directory, state)
    return directory


@pytest.fixture
def ckpts(two_checkpoints, tmp_path):
    shutil.copytree(two_checkpoints, tmp_path / "ckpt")
    return tmp_path / "ckpt"


def _data_files(step_dir):
    return sorted(p for p in step_dir.rglob("*") if p.is_file() and p.name != checkpoint.MANIFEST)


@pytest.mark.fault("survived")
def test_a_corrupt_newest_checkpoint_falls_back_to_the_intact_previous(trainer, ckpts):
    victim = max(_data_files(ckpts / "ckpt_00000002"), key=lambda p: p.stat().st_size)
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x04
    victim.write_bytes(bytes(data))
    name = victim.relative_to(ckpts / "ckpt_00000002").as_posix()
    message = (
        rf"^{ckpts}/ckpt_00000002: file {name} is damaged \(its SHA-256 differs\); resuming "
        rf"from the intact {ckpts}/ckpt_00000001$"
    )
    with pytest.warns(checkpoint.CheckpointWarning, match=message):
        state = trainer.restore_checkpoint(ckpts)
    assert int(state.step) == 1


@pytest.mark.fault("survived")
def test_a_checkpoint_without_its_manifest_is_skipped(trainer, ckpts):
    # A run killed after orbax committed the step but before the manifest was written.
    (ckpts / "ckpt_00000002" / checkpoint.MANIFEST).unlink()
    with pytest.warns(checkpoint.CheckpointWarning, match=r"ckpt_00000002: incomplete \(no "):
        assert int(trainer.restore_checkpoint(ckpts).step) == 1


@pytest.mark.fault("refused")
def test_no_intact_checkpoint_is_refused_naming_each(trainer, ckpts):
    for step in ("ckpt_00000001", "ckpt_00000002"):
        _data_files(ckpts / step)[0].write_bytes(b"")
    both = rf"^{ckpts}: no intact checkpoint: {ckpts}/ckpt_00000002: .*; {ckpts}/ckpt_00000001: "
    with pytest.raises(lo.CheckpointError, match=both + "file .* is damaged"):
        trainer.restore_checkpoint(ckpts)
    with pytest.raises(lo.CheckpointError, match=r"ckpt_00000002: file .* is damaged"):
        trainer.restore_checkpoint(ckpts, step=2)


@pytest.mark.fault("refused")
def test_fuzzed_checkpoints_are_never_restored_silently(trainer, ckpts, tmp_path):
    rng = random.Random(0)
    for trial in range(8):
        work = tmp_path / f"trial{trial}"
        shutil.copytree(ckpts, work)
        step_dir = work / "ckpt_00000002"
        victim = rng.choice([*_data_files(step_dir), step_dir / checkpoint.MANIFEST])
        data = bytearray(victim.read_bytes())
        if trial % 2:
            data = data[: rng.randrange(len(data))]
        else:
            bit = rng.randrange(8 * len(data))
            data[bit // 8] ^= 1 << (bit % 8)
        victim.write_bytes(bytes(data))
        with pytest.warns(checkpoint.CheckpointWarning, match="ckpt_00000002"):
            assert int(trainer.restore_checkpoint(work).step) == 1


@pytest.mark.fault("refused")
def test_another_runs_checkpoint_is_refused_with_every_difference(ckpts):
    other = lo.MetaTrainer(
        lo.LSTMOptimizer(hidden_size=5, num_layers=1),
        lo.tasks.Quadratic(dim=3),
        lo.TruncatedBackprop(unroll_length=2, horizon=4),
        num_tasks=2,
        clip_norm=None,
    )
    with pytest.raises(
        lo.CheckpointError,
        match=rf"^{ckpts}/ckpt_00000002: written by a run with another configuration: "
        r"clip_norm: the checkpoint has 1.0, this run None; optimizer.hidden_size: the "
        r"checkpoint has 4, this run 5$",
    ):
        other.restore_checkpoint(ckpts)


@pytest.mark.fault("refused")
def test_a_checkpoint_of_another_format_version_is_refused(trainer, ckpts):
    manifest_path = ckpts / "ckpt_00000002" / checkpoint.MANIFEST
    manifest = json.loads(manifest_path.read_text())
    del manifest["sha256"]
    manifest["format_version"] = 9
    manifest["sha256"] = checkpoint._manifest_digest(manifest)
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(lo.CheckpointError, match=r"ckpt_00000002: checkpoint format .* version 9"):
        trainer.restore_checkpoint(ckpts)


@pytest.mark.fault("refused")
def test_a_missing_checkpoint_directory_is_refused(trainer, tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint directory"):
        trainer.restore_checkpoint(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"no checkpoint \(ckpt_<step>\) here"):
        trainer.restore_checkpoint(tmp_path / "empty")


@pytest.mark.fault("survived")
def test_resuming_from_an_older_step_sets_the_newer_checkpoints_aside(trainer, ckpts):
    state = trainer.restore_checkpoint(ckpts, step=1)
    with pytest.warns(checkpoint.CheckpointWarning, match="renamed ckpt_00000002.superseded"):
        state = trainer.run(state, 3, checkpoint_dir=ckpts, progress=False)
    assert checkpoint.steps(ckpts) == [1, 3]
    assert (ckpts / "ckpt_00000002.superseded").is_dir()
    np.testing.assert_array_equal(int(state.step), 3)
