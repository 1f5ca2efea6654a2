"""train.tensorboard: the metrics also as TensorBoard event files (tensorboardX), the same
figures as metrics.jsonl; without the extra, one line and exit 2 before anything is written;
the folder rule applies to the event folder."""

from __future__ import annotations

import builtins
import json
import struct
from pathlib import Path

import pytest
from click.testing import CliRunner

from rnnlm_cli.cli import cli

ROOT = Path(__file__).resolve().parents[1]
AGREEMENT = ROOT / "corpora" / "agreement"


def args(tmp: Path, *extra) -> list[str]:
    sets = [f"data.train={AGREEMENT / 'train.txt'}", f"data.valid={AGREEMENT / 'valid.txt'}",
            f"data.prepared={tmp / 'data'}", "model.hidden_size=8", "model.embedding_size=8", "train.batch_size=16",
            "train.k1=10", "train.max_steps=20", "train.eval_every=10", "train.log_every=5", *extra]
    return ["train", *[a for s in sets for a in ("--set", s)], "--out", str(tmp / "run"), "-q"]


def read_events(folder: Path) -> dict:
    """{tag: [(step, value)]} from the TFRecord event files (parsed here: length, crc, data, crc)."""
    from tensorboardX.proto import event_pb2

    found: dict = {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        data = path.read_bytes()
        i = 0
        while i < len(data):
            (length,) = struct.unpack("<Q", data[i:i + 8])
            event = event_pb2.Event.FromString(data[i + 12:i + 12 + length])
            i += 12 + length + 4
            for v in event.summary.value:
                found.setdefault(v.tag, []).append((event.step, v.simple_value))
    return found


def test_tensorboard_events_hold_the_metrics(tmp_path):
    pytest.importorskip("tensorboardX", reason="the tensorboard extra is not installed")
    result = CliRunner().invoke(cli, args(tmp_path, f"train.tensorboard={tmp_path / 'tb'}"))
    assert result.exit_code == 0, result.output
    events = read_events(tmp_path / "tb")
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = [m for m in metrics if "split" not in m]
    assert [s for s, _ in events["train/loss"]] == [m["step"] for m in steps] == [5, 10, 15, 20]
    assert [v for _, v in events["train/loss"]] == pytest.approx([m["loss"] for m in steps], rel=1e-6)  # float32
    valid = [m for m in metrics if m.get("split") == "valid" and not m.get("final")]
    assert events["valid/ppl"] == [(m["step"], pytest.approx(m["ppl"], rel=1e-6)) for m in valid]
    final = next(m for m in metrics if m.get("final"))
    assert events["final/valid_loss"] == [(20, pytest.approx(final["loss"], rel=1e-6))]


def test_without_tensorboardx_one_line_and_nothing_written(tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_tensorboardx(name, *a, **kw):
        if name.split(".")[0] == "tensorboardX":
            raise ImportError("No module named 'tensorboardX'")
        return real_import(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_tensorboardx)
    result = CliRunner().invoke(cli, args(tmp_path, f"train.tensorboard={tmp_path / 'tb'}"))
    assert (result.exit_code, result.stderr) == (2, "Error: train.tensorboard needs tensorboardX, an optional extra: "
                                                    "pip install 'rnnlm[tensorboard]'\n")
    assert list(tmp_path.iterdir()) == []


def test_the_event_folder_may_not_hold_the_run_or_an_input(tmp_path):
    for where, words in [(tmp_path, "is inside the train.tensorboard folder"), (AGREEMENT, "contains the training file")]:
        result = CliRunner().invoke(cli, args(tmp_path, f"train.tensorboard={where}"))
        assert result.exit_code == 2 and words in result.stderr and result.stderr.count("\n") == 1, result.output
    assert list(tmp_path.iterdir()) == []
