"""Crash safety, proven: kill `rnnlm train` with SIGKILL, resume, and end bit-identical.

One uninterrupted reference run. Then runs killed at chosen points (the process SIGKILLs
itself there through the RNNLM_FAULT crash points, rnnlm_cli/fileio.py): before and after a
checkpoint's rename, in the middle of a metrics line, between best.npz and checkpoint.npz,
before the first checkpoint, and while preprocessing fills its temporary folder. After each
kill the folder must show exactly that moment and every checkpoint on disk must load
(checksum verified); restarted (with --resume when there is a checkpoint), the run must end
with the reference run's parameters, optimizer state, best model, metrics.jsonl (without
timing fields) and summary.json (without timings), and no lock or temporary file left behind.

The slow variant kills at seeded random moments instead: at a random training step (read from the
run's own metrics log, so a busy machine delays the kill as much as the run) plus a random delay
of up to a few milliseconds, which lands some kills in the middle of a write.
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

from rnnlm_cli import fileio
from rnnlm_cli.cli import cli
from rnnlm_cli.train import checkpoint
from rnnlm_cli.train.metrics import read_metrics

ROOT = Path(__file__).resolve().parents[1]
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
    """(root, config): data.train is set, so training could prepare root/prep itself; it is
    prepared here, so that the reference run's time is training only. A checkpoint every 3
    updates, a validation (and best.npz) every 40, a metrics line per update."""
    root = tmp_path_factory.mktemp("crash")
    make_corpus(root / "corpus")
    config = root / "c.yaml"
    config.write_text(
        f"data: {{train: {root / 'corpus' / 'train.txt'}, valid: {root / 'corpus' / 'valid.txt'}, "
        f"prepared: {root / 'prep'}}}\n"
        "model: {hidden_size: 24, embedding_size: 12, dropout_output: 0.1}\n"
        "train: {batch_size: 4, k1: 8, epochs: 1, optimizer: adam, lr: 0.01, eval_every: 40,\n"
        "        checkpoint_every: 3, log_every: 1}\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["preprocess", "--config", str(config), "-q"])
    assert result.exit_code == 0, result.output
    return root, config


@pytest.fixture(scope="module")
def reference(setup):
    """(folder, steps, seconds) of the uninterrupted run."""
    root, config = setup
    start = time.perf_counter()
    done = run_to_end(config, root / "reference")
    assert done.returncode == 0, done.stderr
    return root / "reference", json.loads(done.stdout)["steps"], time.perf_counter() - start


def train_cmd(config: Path, out: Path, *flags: str) -> list[str]:
    return [sys.executable, "-m", "rnnlm_cli", "train", "--config", str(config), "--out", str(out), "-q",
            "--format", "json", *flags]


def run_to_end(config: Path, out: Path, *flags: str, fault: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != fileio.FAULT_ENV}
    if fault:
        env[fileio.FAULT_ENV] = fault
    return subprocess.run(train_cmd(config, out, *flags), cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)


def step_of(path: Path) -> int:
    return checkpoint.read(str(path))[4]["progress"]["step"]


def temporary_files(folder: Path) -> list[str]:
    return sorted(n for n in os.listdir(folder) if fileio.is_temporary(n))


def assert_loadable(out: Path) -> None:
    for name in ("checkpoint.npz", "best.npz"):
        if (out / name).exists():
            checkpoint.read(str(out / name))   # raises CheckpointError on any damage


def logged_steps(out: Path) -> int:
    """Complete update lines in out/metrics.jsonl (one per update here)."""
    try:
        text = (out / "metrics.jsonl").read_text(encoding="utf-8")
    except OSError:
        return 0
    return sum(1 for line in text.split("\n")[:-1] if '"split"' not in line)


def wait_for_step(out: Path, step: int, proc: subprocess.Popen, timeout: float = 120.0) -> bool:
    """Wait until the run in `out` has logged `step` updates; False when the process ends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if logged_steps(out) >= step:
            return True
        time.sleep(0.002)
    return False


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
        for m in (ma, mb):   # timings and the folders differ, by design
            m["progress"].pop("wall"), m["config"]["train"].pop("out"), m["config"]["data"].pop("prepared")
        assert ma == mb, name
    assert metric_lines(out) == metric_lines(ref)
    sa = {k: v for k, v in json.loads((ref / "summary.json").read_text()).items() if k not in TIMING}
    sb = {k: v for k, v in json.loads((out / "summary.json").read_text()).items() if k not in TIMING}
    assert sa == sb
    assert sorted(os.listdir(out)) == ["best.npz", "checkpoint.npz", "config.yaml", "metrics.jsonl", "summary.json"]


# --------------------------------------------------------------------------- chosen points
# Checkpoints are written after updates 3, 6, 9, ... (the 5th after update 15), best.npz and a
# checkpoint after the validation at update 40 (the first validation always improves), and
# metrics line k is update k's up to line 39.

def killed_before_the_first_checkpoint(out, tmp):
    assert sorted(os.listdir(out)) == ["config.yaml", "train.lock"]        # a stale lock, taken over later


def killed_before_a_checkpoint_rename(out, tmp):
    assert step_of(out / "checkpoint.npz") == 12                           # the previous one, intact
    assert [n.startswith(".checkpoint.npz-") for n in temporary_files(out)] == [True]   # the new one, unnamed


def killed_after_a_checkpoint_rename(out, tmp):
    assert step_of(out / "checkpoint.npz") == 15 and temporary_files(out) == []


def killed_mid_metrics_line(out, tmp):
    text = (out / "metrics.jsonl").read_text()
    assert [e["step"] for _, e in read_metrics(str(out))] == list(range(1, 20))
    assert text.count("\n") == 19 and text.split("\n")[-1].startswith('{"step": 20')   # half of line 20
    assert step_of(out / "checkpoint.npz") == 18                           # the resume drops the lines after it


def killed_between_best_and_checkpoint(out, tmp):
    assert step_of(out / "best.npz") == 40 and step_of(out / "checkpoint.npz") == 39


def killed_while_preprocessing(out, tmp):
    assert not out.exists()                                                # nothing written into OUT yet
    assert not (tmp / "prep").exists()                                     # the folder is whole or absent
    assert [n.startswith(".prep.tmp-") for n in os.listdir(tmp) if n != "run"] == [True]


@pytest.mark.parametrize("fault, after_kill", [
    ("after-rename:config.yaml", killed_before_the_first_checkpoint),
    ("before-rename:checkpoint.npz@5", killed_before_a_checkpoint_rename),
    ("after-rename:checkpoint.npz@5", killed_after_a_checkpoint_rename),
    ("mid-line:metrics.jsonl@20", killed_mid_metrics_line),
    ("after-rename:best.npz@1", killed_between_best_and_checkpoint),
    ("before-rename:prep", killed_while_preprocessing),
], ids=lambda v: v if isinstance(v, str) else "")
def test_sigkill_at_a_chosen_point_then_resume_is_bit_exact(setup, reference, tmp_path, fault, after_kill):
    root, config = setup
    ref, _, _ = reference
    out = tmp_path / "run"
    # the kill during preprocessing needs a folder to prepare; the other runs read the reference's
    flags = ("--set", f"data.prepared={tmp_path / 'prep'}") if fault.endswith(":prep") else ()
    killed = run_to_end(config, out, *flags, fault=fault)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    after_kill(out, tmp_path)
    if out.exists():
        assert_loadable(out)
    resume = ("--resume",) if (out / "checkpoint.npz").exists() else ()
    done = run_to_end(config, out, *flags, *resume)
    assert done.returncode == 0, done.stderr
    assert_same_run(ref, out)


# --------------------------------------------------------------------------- random moments

@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_is_bit_exact(setup, reference, tmp_path):
    root, config = setup
    ref, steps, span = reference
    assert steps > 100
    trials, kills_per_trial = 2, 3
    rng = random.Random(20240607)
    kills = restarts_from_scratch = 0
    killed_at = []    # the step of the checkpoint on disk after each kill
    mid_write = 0     # kills that left a half-written temporary checkpoint behind
    for trial in range(trials):
        out = tmp_path / f"trial{trial}"
        flags: tuple[str, ...] = ()
        start = 0                             # the step the next process starts from
        for _ in range(kills_per_trial):
            # past what the killed process logged after its checkpoint (the new one trims it)
            first = max(start, logged_steps(out)) + 1
            target = rng.randint(first, max(first, steps - 10))
            proc = subprocess.Popen(train_cmd(config, out, *flags), cwd=ROOT,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            reached = wait_for_step(out, target, proc)
            if reached:
                time.sleep(rng.uniform(0.0, 0.005))
            if not reached or proc.poll() is not None:       # it finished before the kill
                proc.wait()
                assert proc.returncode == 0, proc.stderr.read()
                proc.stderr.close()
                break
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            proc.stderr.close()
            kills += 1
            assert_loadable(out)
            mid_write += bool(temporary_files(out)) if out.exists() else 0
            if (out / "checkpoint.npz").exists():
                flags = ("--resume",)
                start = step_of(out / "checkpoint.npz")
                killed_at.append(start)
            else:
                flags = ("--force",)
                start = 0
                restarts_from_scratch += 1
                killed_at.append(0)
        else:
            done = run_to_end(config, out, *flags)
            assert done.returncode == 0, done.stderr
        assert_loadable(out)
        assert_same_run(ref, out)
    # every kill is due before the run's last 10 steps, so nearly all land
    assert kills >= trials * kills_per_trial - 1
    print(f"\n{trials} trials, {kills} SIGKILLs ({restarts_from_scratch} before the first checkpoint, "
          f"{mid_write} while a file was being written), "
          f"{steps} steps, reference run {span:.2f} s; checkpoint step after each kill: {killed_at}")
