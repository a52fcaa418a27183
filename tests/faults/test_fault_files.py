"""Damaged optimizer files: every truncation and every flipped bit is refused, naming the file."""

import random
import re

import jax
import pytest

import learned_opt as lo
from learned_opt import io

OPT = lo.LSTMOptimizer(hidden_size=4, num_layers=1)


@pytest.fixture(scope="module")
def saved():
    return io.to_bytes(OPT, OPT.init(jax.random.key(0)))


def _damaged(data: bytes, rng: random.Random, kind: str) -> bytes:
    if kind == "truncation":
        return data[: rng.randrange(len(data))]
    flipped = bytearray(data)
    for _ in range(1 if kind == "bit_flip" else rng.randint(2, 16)):
        bit = rng.randrange(8 * len(data))
        flipped[bit // 8] ^= 1 << (bit % 8)
    return bytes(flipped)


@pytest.mark.fault("refused")
@pytest.mark.parametrize("kind", ["truncation", "bit_flip", "many_bit_flips"])
def test_fuzzed_weights_files_are_all_refused_naming_the_file(saved, kind, tmp_path):
    rng = random.Random(kind)
    path = tmp_path / "opt.msgpack"
    reasons = set()
    for _ in range(300):
        path.write_bytes(_damaged(saved, rng, kind))
        with pytest.raises(ValueError, match=f"^{re.escape(str(path))}: ") as error:
            lo.load(path)
        reasons.add(str(error.value).split(": ")[1].split(" (")[0])
    # Most flips land in the weights' bytes (the bulk of the file): the checksum catches them.
    if kind != "truncation":
        assert "corrupt file" in reasons


@pytest.mark.fault("refused")
def test_a_flipped_bit_inside_the_array_data_is_refused(saved, tmp_path):
    # Issue 10: a single flipped bit inside the array data of a weights file loaded silently.
    meta_params = OPT.init(jax.random.key(0))
    weight = bytes(jax.device_get(meta_params["layers"][0]["w"]).tobytes()[:64])
    at = saved.index(weight) + 20
    path = tmp_path / "opt.msgpack"
    path.write_bytes(saved[:at] + bytes([saved[at] ^ 0x01]) + saved[at + 1 :])
    with pytest.raises(ValueError, match=f"^{re.escape(str(path))}: corrupt file: its contents do"):
        lo.load(path)


@pytest.mark.fault("refused")
@pytest.mark.parametrize("name", ["missing.msgpack", "a_folder"])
def test_a_missing_file_or_a_folder_is_refused(tmp_path, name):
    (tmp_path / "a_folder").mkdir()
    with pytest.raises((FileNotFoundError, IsADirectoryError), match=re.escape(name)):
        lo.load(tmp_path / name)
