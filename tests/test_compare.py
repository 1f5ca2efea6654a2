"""rnnlm compare: runs side by side, a crashed (killed) run and an interrupted one marked as
such, only the differing keys shown, sorting, JSON/CSV, the curves plot."""

from __future__ import annotations

import csv
import io
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from rnnlm_cli.cli import cli

ROOT = Path(__file__).resolve().parents[1]
AGREEMENT = ROOT / "corpora" / "agreement"


def train_args(folder: Path, out: Path, *sets) -> list[str]:
    base = [f"data.train={AGREEMENT / 'train.txt'}", f"data.valid={AGREEMENT / 'valid.txt'}",
            f"data.test={AGREEMENT / 'test.txt'}", f"data.prepared={folder / 'data'}", "model.hidden_size=8",
            "model.embedding_size=8", "train.batch_size=16", "train.k1=10", "train.eval_every=10",
            "train.log_every=5", "train.optimizer=adam", "train.lr=0.01", *sets]
    return ["train", *[a for s in base for a in ("--set", s)], "--out", str(out), "-q"]


def start(folder: Path, out: Path, *sets) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "rnnlm_cli", *train_args(folder, out, *sets)], cwd=folder,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def stop_after_first_checkpoint(proc: subprocess.Popen, out: Path, sig: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (out / "checkpoint.npz").exists():
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be stopped"
    proc.send_signal(sig)
    proc.wait(timeout=60)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("compare")
    sweep = folder / "sweep"
    for lr in ("0.003", "0.03"):
        ok = CliRunner().invoke(cli, train_args(folder, sweep / f"lr{lr}", "train.max_steps=30", f"train.lr={lr}"))
        assert ok.exit_code == 0, ok.output
    crashed = start(folder, sweep / "killed", "train.epochs=50")
    stop_after_first_checkpoint(crashed, sweep / "killed", signal.SIGKILL)
    stopped = start(folder, sweep / "stopped", "train.epochs=50", "model.cell=gru")
    stop_after_first_checkpoint(stopped, sweep / "stopped", signal.SIGTERM)
    assert stopped.returncode == 143
    return sweep


def test_compare_marks_crashed_and_unfinished_runs(runs):
    result = CliRunner().invoke(cli, ["compare", str(runs), "--format", "json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    by = {r["name"]: r for r in doc["runs"]}
    assert {n: r["status"] for n, r in by.items()} == {"lr0.003": "finished", "lr0.03": "finished",
                                                       "killed": "crashed", "stopped": "unfinished"}
    # only the keys that differ: the rate, the cell, the length of training
    assert doc["differing_keys"] == ["model.cell", "train.epochs", "train.lr", "train.max_steps"]
    assert by["stopped"]["config"] == {"model.cell": "gru", "train.epochs": 50, "train.lr": 0.01,
                                       "train.max_steps": 0}
    # a finished run's figures are its summary's
    summary = json.loads((runs / "lr0.03" / "summary.json").read_text())
    for key in ("valid_ppl", "test_ppl", "steps", "epochs", "wall_time_s", "tokens_per_sec", "clip_rate"):
        assert by["lr0.03"][key] == summary[key]
    assert by["lr0.03"]["best_valid_ppl"] == summary["best_valid_ppl"]
    # an unfinished run's: its log so far (the best validation perplexity of its evaluations)
    metrics = [json.loads(line) for line in (runs / "stopped" / "metrics.jsonl").read_text().splitlines()]
    valid = [m["ppl"] for m in metrics if m.get("split") == "valid"]
    assert by["stopped"]["best_valid_ppl"] == min(valid) and by["stopped"]["test_ppl"] is None
    # sorted by best validation perplexity, lowest first, by default
    ppls = [r["best_valid_ppl"] for r in doc["runs"]]
    assert ppls == sorted(ppls)


def test_compare_text_csv_sort_and_plot(runs, tmp_path):
    text = CliRunner().invoke(cli, ["compare", str(runs / "lr*"), str(runs / "killed"), "--sort", "train.lr"])
    assert text.exit_code == 0, text.output
    lines = text.stdout.splitlines()
    assert lines[0].split()[:4] == ["run", "status", "train.epochs", "train.lr"]
    assert [line.split()[0] for line in lines[1:]] == ["lr0.003", "killed", "lr0.03"]    # lr 0.003, 0.01, 0.03
    assert lines[2].split()[1] == "crashed"
    rows = list(csv.DictReader(io.StringIO(CliRunner().invoke(cli, ["compare", str(runs), "--format", "csv",
                                                                    "--sort", "run"]).stdout)))
    assert [r["run"] for r in rows] == ["killed", "lr0.003", "lr0.03", "stopped"]
    assert rows[0]["status"] == "crashed" and rows[3]["model.cell"] == "gru"
    png = tmp_path / "curves.png"
    plotted = CliRunner().invoke(cli, ["compare", str(runs), "--plot", str(png), "--x", "time"])
    assert plotted.exit_code == 0 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_bad_input(runs, tmp_path):
    for args, words, code in [([str(tmp_path / "none")], "does not exist", 1),
                              ([str(tmp_path)], "no training runs in", 1),
                              ([str(runs), "--sort", "speed"], "--sort 'speed': not a column", 2),
                              ([str(runs), "--plot", str(runs / "lr0.03" / "c.png")], "is inside the run folder", 2)]:
        result = CliRunner().invoke(cli, ["compare", *args])
        assert result.exit_code == code and words in result.stderr and result.stderr.count("\n") == 1, result.output
