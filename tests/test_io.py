"""Saving and loading learned optimizers: round trips, small atomic files, clear errors."""

import functools
import hashlib
import json
import os
import re
import stat

import jax
import jax.numpy as jnp
import msgpack
import numpy as np
import pytest
from flax import serialization

import learned_opt as lo
from learned_opt import io
from learned_opt.optimizers._trees import structure


@functools.partial(jax.jit, static_argnums=0)
def _updates(opt, meta_params, grads, params):
    """Two steps of ``opt.as_optax(meta_params)``; ``opt`` is static, so equal optimizers share
    one compilation."""
    tx = opt.as_optax(meta_params)
    state = tx.init(params)
    first, state = tx.update(grads, state, params, value=1.0)
    second, _ = tx.update(grads, state, params, value=0.5)
    return first, second


@pytest.fixture
def saved(tmp_path):
    """A default ``LSTMOptimizer`` saved in ``tmp_path``: ``(path, optimizer, meta_params)``."""
    opt = lo.LSTMOptimizer()
    meta_params = opt.init(jax.random.key(3))
    path = tmp_path / "opt.msgpack"
    lo.save(path, opt, meta_params)
    return path, opt, meta_params


def test_round_trip(small_opt, tmp_path):
    opt, meta_params = small_opt
    path = tmp_path / "sub" / "opt.msgpack"
    lo.save(path, opt, meta_params)
    loaded, loaded_params = lo.load(path)
    assert type(loaded) is type(opt)
    assert loaded == opt and loaded.config() == opt.config()
    assert structure(loaded_params) == structure(meta_params)
    for got, want in zip(jax.tree.leaves(loaded_params), jax.tree.leaves(meta_params), strict=True):
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
    params = {"w": jnp.linspace(-1.0, 1.0, 6).reshape(2, 3), "b": jnp.zeros(3)}
    grads = {"w": jnp.arange(6.0).reshape(2, 3) - 2.5, "b": jnp.array([0.1, -1e-6, 3.0])}
    jax.tree.map(
        np.testing.assert_array_equal,
        _updates(loaded, loaded_params, grads, params),
        _updates(opt, meta_params, grads, params),
    )


def test_round_trip_of_non_default_config(tmp_path):
    opt = lo.LSTMOptimizer(
        hidden_size=3, num_layers=1, preprocess="none", use_loss=False, output_scale=0.5
    )
    lo.save(tmp_path / "opt.msgpack", opt, opt.init(jax.random.key(0)))
    assert lo.load(tmp_path / "opt.msgpack")[0] == opt


def test_default_lstm_file_is_small_and_saved_atomically(saved):
    path, _, _ = saved
    assert path.stat().st_size < 100_000
    assert os.listdir(path.parent) == [path.name]
    # Overwriting replaces the file and leaves no temporary file either.
    opt = lo.MetaLSTMOptimizer(hidden_size=2)
    lo.save(path, opt, opt.sgd_meta_params(0.1))
    assert lo.load(path)[0] == opt
    assert os.listdir(path.parent) == [path.name]


def test_failed_save_keeps_old_file_and_leaves_no_temp_file(saved, monkeypatch):
    path, opt, _ = saved
    before = path.read_bytes()

    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr(io.os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        lo.save(path, opt, opt.init(jax.random.key(4)))
    assert path.read_bytes() == before
    assert os.listdir(path.parent) == [path.name]


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        lo.load(tmp_path / "missing.msgpack")


def _edit(change):
    """A corrupter: re-encodes the file after ``change(outer, body)``, with a valid checksum.

    ``outer`` is the file's map and ``body`` its decoded payload; the checksum is recomputed,
    so the file gets past it and the check after it must refuse the file.
    """

    def make(opt, meta_params):
        outer = msgpack.unpackb(io.to_bytes(opt, meta_params))
        body = serialization.msgpack_restore(outer["payload"])
        change(outer, body)
        outer["payload"] = serialization.msgpack_serialize(body)
        outer["sha256"] = hashlib.sha256(outer["payload"]).hexdigest()
        return msgpack.packb(outer)

    return make


def _flip(opt, meta_params):
    """One bit flipped in the middle of the file (inside the weights' bytes)."""
    data = bytearray(io.to_bytes(opt, meta_params))
    data[len(data) // 2] ^= 0x10
    return bytes(data)


#: name -> (bytes from (optimizer, meta_params), what the error message must say).
_BAD_FILES = {
    "truncated": (lambda o, m: io.to_bytes(o, m)[:-100], "corrupt or truncated"),
    "bit_flip_in_weights": (_flip, "corrupt file: its contents do not match their SHA-256"),
    "random_bytes": (
        lambda o, m: np.random.default_rng(0).bytes(4096),
        "(corrupt or truncated|not a learned_opt optimizer file)",
    ),
    "foreign": (
        lambda o, m: serialization.msgpack_serialize({"model": "resnet", "w": np.zeros(3)}),
        "not a learned_opt optimizer file",
    ),
    "version_999": (
        _edit(lambda outer, body: outer.update(format_version=999)),
        "format version 999 is not supported",
    ),
    "extra_entry": (
        _edit(lambda outer, body: outer.update(note="hi")),
        r"malformed file: expected the entries \['format', 'format_version', 'payload', 'sha256'\]",
    ),
    "wrong_shape": (
        _edit(lambda outer, body: body["config"].update(hidden_size=5)),
        r"weight \['layers'\]\[0\]\['b'\] is \(\(80,\).*expected \(20,\)",
    ),
    "unknown_architecture": (
        _edit(lambda outer, body: body.update(architecture="TransformerOptimizer")),
        "unknown learned optimizer 'TransformerOptimizer'",
    ),
    "config_not_a_map": (
        _edit(lambda outer, body: body.update(config=[1, 2])),
        "'config'.*must be maps",
    ),
    "weights_not_a_map": (
        _edit(lambda outer, body: body.update(meta_params=3)),
        "'meta_params'.*must be maps",
    ),
}


@pytest.mark.parametrize(
    "case",
    list(_BAD_FILES),
)
def test_load_error_names_file_and_problem(saved, case):
    path, opt, meta_params = saved
    make_bytes, what = _BAD_FILES[case]
    path.write_bytes(make_bytes(opt, meta_params))
    with pytest.raises(ValueError, match=f"^{re.escape(str(path))}: .*{what}"):
        lo.load(path)


def test_saved_file_is_durable_and_has_the_permissions_of_a_new_file(tmp_path, monkeypatch):
    opt = lo.LearnedRule()
    path = tmp_path / "rule.msgpack"
    old = os.umask(0o027)
    synced = []
    real_fsync = os.fsync

    def umask(mask):
        raise AssertionError("the process umask must not be changed")

    def fsync(fd):
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        real_fsync(fd)

    monkeypatch.setattr(os, "umask", umask)
    monkeypatch.setattr(os, "fsync", fsync)
    try:
        lo.save(path, opt, opt.init(jax.random.key(0)))
    finally:
        monkeypatch.undo()
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert synced == [False, True]  # the file, then its folder


def test_folders_created_for_a_file_are_durable(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync

    def fsync(fd):
        synced.append(os.fstat(fd).st_ino)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    path = tmp_path / "a" / "b" / "data.bin"
    io.atomic_write_bytes(path, b"abc")
    monkeypatch.undo()
    assert path.read_bytes() == b"abc"
    # Each new folder's entry (in its parent, outermost first), the file, the folder it is in.
    expected = [tmp_path, tmp_path / "a", path, path.parent]
    assert synced == [p.stat().st_ino for p in expected]


def test_version_1_files_still_load(tmp_path):
    # The previous format: one map, no checksum (the shipped weights until they are re-saved).
    opt = lo.LSTMOptimizer(hidden_size=3, num_layers=1)
    meta_params = opt.init(jax.random.key(0))
    old = {
        "format": "learned_opt",
        "format_version": 1,
        "architecture": "LSTMOptimizer",
        "config": json.loads(json.dumps(opt.config())),
        "meta_params": serialization.to_state_dict(jax.tree.map(np.asarray, meta_params)),
    }
    path = tmp_path / "old.msgpack"
    path.write_bytes(serialization.msgpack_serialize(old))
    loaded, loaded_params = lo.load(path)
    assert loaded == opt
    jax.tree.map(np.testing.assert_array_equal, loaded_params, meta_params)
    assert msgpack.unpackb(io.to_bytes(opt, meta_params))["format_version"] == 2


def test_save_refuses_weights_that_do_not_fit_the_architecture(tmp_path):
    opt = lo.LSTMOptimizer(hidden_size=3, num_layers=1)
    other = lo.LSTMOptimizer(hidden_size=4, num_layers=1).init(jax.random.key(0))
    with pytest.raises(ValueError, match=r"^meta_params: weight \['layers'\]\[0\]\['b'\] is"):
        lo.save(tmp_path / "opt.msgpack", opt, other)
    assert not (tmp_path / "opt.msgpack").exists()


def test_files_store_the_architecture_by_qualified_name():
    rule = lo.LearnedRule()
    body = serialization.msgpack_restore(
        msgpack.unpackb(io.to_bytes(rule, rule.init(jax.random.key(0))))["payload"]
    )
    assert body["architecture"] == "learned_opt.optimizers.learned_rule.LearnedRule"
