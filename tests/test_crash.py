"""Crash safety, proven: SIGKILL `rnnlm train` at random moments, resume, and end bit-identical.

One uninterrupted reference run; then several trials, each killing the training process with
SIGKILL after seeded random delays (a few times per trial) and restarting it with --resume
(with --force when it died before its first checkpoint). After every kill each checkpoint on
disk must load (checksum verified); at the end the parameters, optimizer state, best model,
metrics.jsonl (without timing fields) and summary.json (without timings) must equal the
reference run's exactly, and no lock or temporary file may be left behind.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from rnnlm_cli.train import checkpoint
from rnnlm_cli.cli import cli

ROOT = Path(__file__).resolve().parents[1]
TRIALS = 6
KILLS_PER_TRIAL = 3
TIMING = {"tokens_per_sec", "elapsed", "wall_time_s"}


def make_corpus(folder: Path, n: int = 1200, seed: int = 5) -> None:
    rng = np.random.default_rng(seed)
    nouns = {False: ["dog", "cat", "man", "bird"], True: ["dogs", "cats", "men", "birds"]}
    lines = []
    for _ in range(n):
        plural = bool(rng.random() < 0.5)
        lines.append(f"the {rng.choice(nouns[plural])} {'run' if plural else 'runs'} home")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.txt").write_text("\n".join(lines[: n * 9 // 10]) + "\n", encoding="utf-8")
    (folder / "valid.txt").write_text("\n".join(lines[n * 9 // 10:]) + "\n", encoding="utf-8")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("crash")
    make_corpus(root / "corpus")
    result = CliRunner().invoke(cli, ["preprocess", "--train", str(root / "corpus" / "train.txt"),
                                      "--valid", str(root / "corpus" / "valid.txt"), "--out", str(root / "prep"), "-q"])
    assert result.exit_code == 0, result.output
    config = root / "c.yaml"
    config.write_text(
        f"data: {{prepared: {root / 'prep'}}}\n"
        "model: {hidden_size: 24, embedding_size: 12, dropout_output: 0.1}\n"
        "train: {batch_size: 4, k1: 8, epochs: 2, optimizer: adam, lr: 0.01, eval_every: 40,\n"
        "        checkpoint_every: 3, log_every: 1}\n", encoding="utf-8")
    return root, config


def train_cmd(config: Path, out: Path, *flags: str) -> list[str]:
    return [sys.executable, "-m", "rnnlm_cli", "train", "--config", str(config), "--out", str(out), "-q",
            "--format", "json", *flags]


def run_to_end(config: Path, out: Path, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(train_cmd(config, out, *flags), cwd=ROOT, capture_output=True, text=True, timeout=120)


def assert_loadable(out: Path) -> None:
    for name in ("checkpoint.npz", "best.npz"):
        if (out / name).exists():
            checkpoint.read(str(out / name))   # raises CheckpointError on any damage


def metric_lines(out: Path) -> list[dict]:
    lines = (out / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in lines]


def assert_same_run(ref: Path, out: Path) -> None:
    for name in ("checkpoint.npz", "best.npz"):
        a, b = checkpoint.load(str(ref / name)), checkpoint.load(str(out / name))
        assert sorted(a) == sorted(b)
        for key in a:
            if key in ("meta", "checksum"):
                continue
            assert a[key].dtype == b[key].dtype and a[key].shape == b[key].shape, key
            assert a[key].tobytes() == b[key].tobytes(), f"{name}: {key} differs"
        ma, mb = json.loads(str(a["meta"])), json.loads(str(b["meta"]))
        for m in (ma, mb):   # timings and the output folder differ, by design
            m["progress"].pop("wall"), m["config"]["train"].pop("out")
        assert ma == mb, name
    assert metric_lines(out) == metric_lines(ref)
    sa = {k: v for k, v in json.loads((ref / "summary.json").read_text()).items() if k not in TIMING}
    sb = {k: v for k, v in json.loads((out / "summary.json").read_text()).items() if k not in TIMING}
    assert sa == sb
    assert sorted(os.listdir(out)) == ["best.npz", "checkpoint.npz", "config.yaml", "metrics.jsonl", "summary.json"]


def test_sigkill_at_random_moments_then_resume_is_bit_exact(setup, tmp_path):
    root, config = setup
    ref = tmp_path / "reference"
    start = time.perf_counter()
    done = run_to_end(config, ref)
    span = time.perf_counter() - start
    assert done.returncode == 0, done.stderr
    steps = json.loads(done.stdout)["steps"]
    assert steps > 100

    rng = random.Random(20240607)
    kills = restarts_from_scratch = 0
    killed_at = []    # the step of the checkpoint on disk after each kill
    mid_write = 0     # kills that left a half-written temporary checkpoint behind
    for trial in range(TRIALS):
        out = tmp_path / f"trial{trial}"
        flags: tuple[str, ...] = ()
        for _ in range(KILLS_PER_TRIAL):
            proc = subprocess.Popen(train_cmd(config, out, *flags), cwd=ROOT,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            time.sleep(rng.uniform(0.05, 0.6 * span))
            if proc.poll() is not None:       # it finished before the kill
                assert proc.returncode == 0, proc.stderr.read()
                proc.stderr.close()
                break
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            proc.stderr.close()
            kills += 1
            assert_loadable(out)
            mid_write += any(n.startswith(".ckpt-") for n in os.listdir(out)) if out.exists() else 0
            if (out / "checkpoint.npz").exists():
                flags = ("--resume",)
                killed_at.append(checkpoint.read(str(out / "checkpoint.npz"))[4]["progress"]["step"])
            else:
                flags = ("--force",)
                restarts_from_scratch += 1
                killed_at.append(0)
        else:
            done = run_to_end(config, out, *flags)
            assert done.returncode == 0, done.stderr
        assert_loadable(out)
        assert_same_run(ref, out)
    # the kill moments are random and the machine's speed varies, so only require that the test
    # really killed runs (typically 10-16 kills over the trials)
    assert kills >= 2
    print(f"\n{TRIALS} trials, {kills} SIGKILLs ({restarts_from_scratch} before the first checkpoint, "
          f"{mid_write} while a checkpoint was being written), "
          f"{steps} steps, reference run {span:.2f} s; checkpoint step after each kill: {killed_at}")
