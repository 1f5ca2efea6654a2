"""Atomic checkpoint writing and verified loading."""

import os

import numpy as np
import pytest

from rnnlm_cli import fileio
from rnnlm_cli.train import checkpoint
from rnnlm_cli.errors import CheckpointError


def sample_arrays():
    rng = np.random.default_rng(0)
    params = {"embedding": rng.normal(size=(5, 3)).astype(np.float32), "cell.W_h": np.eye(3, dtype=np.float32)}
    optim = {"m/embedding": np.zeros((5, 3), np.float32)}
    state = (rng.normal(size=(2, 3)).astype(np.float32),)
    return checkpoint.pack(params, optim, state, rng, {"step": 7, "config": {"model": {"cell": "tanh"}}})


def test_round_trip_restores_everything(tmp_path):
    path = str(tmp_path / "ck.npz")
    arrays = sample_arrays()
    checkpoint.save(path, arrays)
    params, optim, state, rng_state, meta = checkpoint.read(path)
    np.testing.assert_array_equal(params["embedding"], arrays["param/embedding"])
    np.testing.assert_array_equal(optim["m/embedding"], arrays["optim/m/embedding"])
    np.testing.assert_array_equal(state[0], arrays["state/0"])
    assert meta["step"] == 7 and meta["format_version"] == checkpoint.FORMAT_VERSION
    rng = np.random.default_rng()
    rng.bit_generator.state = rng_state
    assert rng_state["bit_generator"] == "PCG64"
    # plain numpy can read it without pickle
    with np.load(path, allow_pickle=False) as npz:
        assert "param/cell.W_h" in npz.files
    assert [f for f in os.listdir(tmp_path)] == ["ck.npz"]


def test_failure_before_rename_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = str(tmp_path / "ck.npz")
    checkpoint.save(path, sample_arrays())
    before = open(path, "rb").read()

    def disk_full(point, before=None):   # the data is written; the rename fails
        if point.startswith("before-rename:"):
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(fileio, "crash_point", disk_full)
    arrays = sample_arrays()
    arrays["meta"] = np.array('{"format_version": 1, "step": 99}')
    with pytest.raises(CheckpointError, match="No space left on device; the previous checkpoint is unchanged"):
        checkpoint.save(path, arrays)
    assert open(path, "rb").read() == before
    assert os.listdir(tmp_path) == ["ck.npz"]  # no temporary file left behind


def test_missing_empty_and_not_npz(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        checkpoint.load(str(tmp_path / "none.npz"))
    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"is empty \(0 bytes\)"):
        checkpoint.load(str(empty))
    text = tmp_path / "text.npz"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match="is not a checkpoint"):
        checkpoint.load(str(text))


def test_truncated_file_is_named(tmp_path):
    path = tmp_path / "ck.npz"
    checkpoint.save(str(path), sample_arrays())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a checkpoint|corrupted"):
        checkpoint.load(str(path))


def test_flipped_byte_fails_the_checksum(tmp_path):
    path = tmp_path / "ck.npz"
    arrays = sample_arrays()
    checkpoint.save(str(path), arrays)
    # rewrite one member with a changed value but keep the stored checksum
    with np.load(path, allow_pickle=False) as npz:
        members = {k: npz[k] for k in npz.files}
    members["param/embedding"] = members["param/embedding"] + 1
    np.savez(path, **members)
    with pytest.raises(CheckpointError, match="corrupted: checksum mismatch"):
        checkpoint.load(str(path))


def test_pickled_object_is_refused(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, meta=np.array("{}"), checksum=np.array("x"), obj=np.array([{"a": 1}], dtype=object))
    with pytest.raises(CheckpointError, match="holds pickled objects; refusing to load it"):
        checkpoint.load(str(path))


def test_missing_entries_and_other_version(tmp_path):
    path = tmp_path / "plain.npz"
    np.savez(path, a=np.zeros(3))
    with pytest.raises(CheckpointError, match="is not an rnnlm checkpoint"):
        checkpoint.load(str(path))
    arrays = sample_arrays()
    arrays["meta"] = np.array('{"format_version": 999}')
    checkpoint.save(str(tmp_path / "v.npz"), arrays)
    with pytest.raises(CheckpointError, match="format version 999 is not supported"):
        checkpoint.read(str(tmp_path / "v.npz"))
