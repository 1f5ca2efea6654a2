"""Reliability of `rnnlm train`: one run per folder, non-finite values, rollback, resume edge
cases, and the security rules (nothing unpickled, nothing in a config executed)."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from rnnlm_cli.train import step
from rnnlm_cli.train import checkpoint
from rnnlm_cli.train import trainer as train_mod
from rnnlm_cli.cli import cli
from rnnlm_cli.config import load_config
from rnnlm_cli.errors import TrainingError
from rnnlm_cli.train.lock import LOCK_NAME, LockError, RunLock, pid_alive

ROOT = Path(__file__).resolve().parents[1]


def write_corpus(folder: Path, n: int = 200) -> Path:
    rng = np.random.default_rng(1)
    lines = []
    for _ in range(n):
        plural = bool(rng.random() < 0.5)
        noun = rng.choice(["dogs", "cats"] if plural else ["dog", "cat"])
        lines.append(f"the {noun} {'run' if plural else 'runs'} home")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.txt").write_text("\n".join(lines[: n * 9 // 10]) + "\n", encoding="utf-8")
    (folder / "valid.txt").write_text("\n".join(lines[n * 9 // 10:]) + "\n", encoding="utf-8")
    return folder


@pytest.fixture
def prepared(tmp_path):
    folder = write_corpus(tmp_path / "corpus")
    result = CliRunner().invoke(cli, ["preprocess", "--train", str(folder / "train.txt"),
                                      "--valid", str(folder / "valid.txt"), "--out", str(tmp_path / "prep"), "-q"])
    assert result.exit_code == 0, result.output
    return tmp_path / "prep"


def sets(prepared, out, *extra):
    base = [f"data.prepared={prepared}", f"train.out={out}", "model.hidden_size=8", "model.embedding_size=8",
            "train.batch_size=2", "train.k1=5", "train.log_every=1", *extra]
    return [a for s in base for a in ("--set", s)]


def cfg(prepared, out, *extra):
    return load_config(None, [f"data.prepared={prepared}", f"train.out={out}", "model.hidden_size=8",
                              "model.embedding_size=8", "train.batch_size=2", "train.k1=5", "train.log_every=1",
                              *extra])


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], prog_name="rnnlm")


def metrics(out):
    return [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]


# --------------------------------------------------------------------------- one run per folder

HOLDER = ("import sys; from rnnlm_cli.train.lock import RunLock; RunLock(sys.argv[1]).acquire(); "
          "print('locked', flush=True); sys.stdin.read()")


def test_a_folder_held_by_a_live_process_is_refused_then_taken_over(prepared, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], cwd=ROOT, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        result = invoke("train", *sets(prepared, out), "-q")
        assert (result.exit_code, result.stderr) == (1, f"Error: {out} is in use by another rnnlm train "
                                                        f"(PID {holder.pid})\n")
        assert os.listdir(out) == [LOCK_NAME]             # nothing else written
        assert (out / LOCK_NAME).read_text() == f"{holder.pid}\n"
    finally:
        holder.stdin.close()                              # it exits without releasing: a stale lock
        holder.wait(timeout=30)
    assert not pid_alive(holder.pid)
    result = invoke("train", *sets(prepared, out, "train.max_steps=3"))
    assert result.exit_code == 0, result.output
    assert f"took over {out / LOCK_NAME} from PID {holder.pid}, which is no longer running" in result.stderr
    assert not (out / LOCK_NAME).exists()                 # released at the end


def test_stale_lock_file_with_a_dead_pid_is_taken_over(prepared, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (out / LOCK_NAME).write_text(f"{dead.pid}\n")
    result = invoke("train", *sets(prepared, out, "train.max_steps=2"))
    assert result.exit_code == 0, result.output
    assert f"from PID {dead.pid}, which is no longer running" in result.stderr
    assert not (out / LOCK_NAME).exists()


def test_a_running_train_holds_its_folder_and_releases_it_on_sigterm(prepared, tmp_path):
    out = tmp_path / "run"
    config = tmp_path / "c.yaml"
    config.write_text(f"data: {{prepared: {prepared}}}\nmodel: {{hidden_size: 8, embedding_size: 8}}\n"
                      f"train: {{out: {out}, batch_size: 2, k1: 5, epochs: 100000, log_every: 1}}\n")
    first = subprocess.Popen([sys.executable, "-m", "rnnlm_cli", "train", "--config", str(config), "-q"], cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and not (out / "metrics.jsonl").exists():
            time.sleep(0.02)
        assert (out / LOCK_NAME).read_text() == f"{first.pid}\n"
        for flags in ([], ["--resume"], ["--force"]):     # whatever the flags: refused, naming the PID
            result = invoke("train", "--config", config, "-q", *flags)
            assert (result.exit_code, result.stderr) == (1, f"Error: {out} is in use by another rnnlm train "
                                                            f"(PID {first.pid})\n")
    finally:
        first.send_signal(signal.SIGTERM)
        _, err = first.communicate(timeout=60)
    assert first.returncode == 143, err
    assert not (out / LOCK_NAME).exists()
    result = invoke("train", "--config", config, "-q", "--resume", "--max-steps", "1")   # free again
    assert result.exit_code == 0, result.output


def test_lock_released_after_an_error(prepared, tmp_path, monkeypatch):
    out = tmp_path / "run"
    real = step.batch_gradients

    def nan_at_3(model, *args, **kwargs):
        fwd, grads, state = real(model, *args, **kwargs)
        nan_at_3.calls += 1
        if nan_at_3.calls == 3:
            grads["embedding"].values[0, 0] = np.inf      # a RowSparse: the token rows
        return fwd, grads, state

    nan_at_3.calls = 0
    monkeypatch.setattr(step, "batch_gradients", nan_at_3)
    result = invoke("train", *sets(prepared, out), "-q")
    assert result.exit_code == 1 and "non-finite gradient in embedding at step 3" in result.stderr
    assert not (out / LOCK_NAME).exists()


def test_same_stale_file_cannot_be_won_twice(tmp_path):
    (tmp_path / LOCK_NAME).write_text("999999999\n")
    first = RunLock(str(tmp_path)).acquire()
    assert first.taken_over == 999999999
    with pytest.raises(LockError, match=rf"is in use by another rnnlm train \(PID {os.getpid()}\)"):
        RunLock(str(tmp_path)).acquire()                  # a second claimant, even in this process
    first.release()
    assert not (tmp_path / LOCK_NAME).exists()
    with RunLock(str(tmp_path)) as again:
        assert again.taken_over is None


def test_without_flock_the_pid_decides(tmp_path, monkeypatch):
    def no_flock(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    (tmp_path / LOCK_NAME).write_text("1\n")             # PID 1 is always alive
    with pytest.raises(LockError, match=r"\(PID 1\)$"):
        RunLock(str(tmp_path)).acquire()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / LOCK_NAME).write_text(f"{dead.pid}\n")
    lock = RunLock(str(tmp_path)).acquire()
    assert lock.taken_over == dead.pid
    lock.release()


class _Stop(BaseException):
    """What a SIGTERM handler raises (the CLI raises its own Terminated, a KeyboardInterrupt)."""


@pytest.fixture
def sigterm_raises():
    def handler(signum, frame):
        raise _Stop()
    old = signal.signal(signal.SIGTERM, handler)
    yield
    signal.signal(signal.SIGTERM, old)


def _sigterm_during(monkeypatch, module, name):
    """Make `module.name` send this process SIGTERM the first time it is called, then do its job."""
    real, sent = getattr(module, name), []

    def call(*args, **kwargs):
        if not sent:
            sent.append(True)
            os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)
    monkeypatch.setattr(module, name, call)
    return sent


def test_a_signal_while_the_lock_is_taken_leaves_no_lock_behind(tmp_path, monkeypatch, sigterm_raises):
    """SIGTERM between creating the lock file and recording it (here: during its fsync) is handled
    once the lock is complete: acquire then raises holding nothing, the file removed."""
    sent = _sigterm_during(monkeypatch, os, "fsync")
    lock = RunLock(str(tmp_path))
    with pytest.raises(_Stop):
        lock.acquire()
    assert sent and not (tmp_path / LOCK_NAME).exists()
    assert lock.fd is None
    monkeypatch.undo()
    with RunLock(str(tmp_path)) as again:                # and nothing stale is left to take over
        assert again.taken_over is None


def test_a_run_stopped_before_it_writes_leaves_no_folder_it_created(prepared, tmp_path, monkeypatch):
    """SIGTERM while the run takes its lock (here: during the lock's fsync): the folders the run
    created go again, with the lock, so a sweep rerun does not find an empty folder it cannot tell
    from a foreign one; an existing empty folder given as OUT stays."""
    _sigterm_during(monkeypatch, os, "fsync")
    new = tmp_path / "new" / "run"
    result = invoke("train", *sets(prepared, new), "-q")
    assert result.exit_code == 143 and result.stderr.strip().endswith("interrupted (SIGTERM)"), result.stderr
    assert not (tmp_path / "new").exists()
    existing = tmp_path / "empty"
    existing.mkdir()
    _sigterm_during(monkeypatch, os, "fsync")
    assert invoke("train", *sets(prepared, existing), "-q").exit_code == 143
    assert existing.is_dir() and not any(existing.iterdir())


def test_a_signal_while_the_lock_is_released_still_removes_it(tmp_path, monkeypatch, sigterm_raises):
    lock = RunLock(str(tmp_path)).acquire()
    sent = _sigterm_during(monkeypatch, os.path, "samestat")      # release's check before it unlinks
    with pytest.raises(_Stop):
        lock.release()
    assert sent and not (tmp_path / LOCK_NAME).exists()
    assert lock.fd is None


# --------------------------------------------------------------------------- non-finite values

def poison(monkeypatch, at: set, what: str):
    """Make update number k (1-based) in `at` non-finite: its loss, a gradient, or (after computing
    a finite update) the weights themselves."""
    real = step.batch_gradients
    calls = []

    def poisoned(model, *args, **kwargs):
        fwd, grads, state = real(model, *args, **kwargs)
        calls.append(1)
        if len(calls) in at:
            if what == "loss":
                fwd.loss = float("nan")
                grads["output.W"][...] = np.nan
            elif what == "gradient":
                grads["cell.W_h"][2, 1] = np.inf
            else:
                model.params["cell.W_h"][0, 0] = np.inf
        return fwd, grads, state

    monkeypatch.setattr(step, "batch_gradients", poisoned)


def test_error_policy_names_step_parameter_and_last_good_checkpoint(prepared, tmp_path, monkeypatch):
    out = tmp_path / "run"
    poison(monkeypatch, {5}, "gradient")
    result = invoke("train", *sets(prepared, out, "train.checkpoint_every=2"), "-q")
    ck = out / "checkpoint.npz"
    assert (result.exit_code, result.stderr) == (
        1, f"Error: non-finite gradient in cell.W_h at step 5; last good checkpoint: {ck} (step 4) "
           f"(lower train.lr, or set train.nonfinite=skip)\n")
    assert checkpoint.read(str(ck))[4]["progress"]["step"] == 4


def test_error_policy_on_a_nan_loss(prepared, tmp_path, monkeypatch):
    poison(monkeypatch, {2}, "loss")
    with pytest.raises(TrainingError, match=r"^non-finite loss at step 2 \(gradient in output.W too\); "
                                            r"last good checkpoint: none yet"):
        train_mod.train(cfg(prepared, tmp_path / "run"))


def test_skip_policy_counts_and_recovers(prepared, tmp_path, monkeypatch):
    poison(monkeypatch, {3, 4, 7}, "gradient")
    c = cfg(prepared, tmp_path / "run", "train.nonfinite=skip", "train.max_nonfinite=3", "train.max_steps=10")
    summary = train_mod.train(c)
    assert summary["nonfinite_skipped"] == 3 and summary["steps"] == 10
    lines = [m for m in metrics(c.train.out) if "split" not in m]
    assert [m["nonfinite_skipped"] for m in lines] == [0, 0, 1, 2, 2, 2, 3, 3, 3, 3]
    assert [m["step"] for m in lines] == list(range(1, 11))


def test_skip_policy_stops_after_max_nonfinite_in_a_row(prepared, tmp_path, monkeypatch):
    poison(monkeypatch, set(range(3, 100)), "gradient")
    c = cfg(prepared, tmp_path / "run", "train.nonfinite=skip", "train.max_nonfinite=4", "train.checkpoint_every=2")
    with pytest.raises(TrainingError) as info:
        train_mod.train(c)
    assert str(info.value) == (f"4 consecutive non-finite updates (train.max_nonfinite=4) at step 6, the last: "
                               f"non-finite gradient in cell.W_h at step 6; last good checkpoint: "
                               f"{tmp_path / 'run' / 'checkpoint.npz'} (step 4)")


@pytest.mark.parametrize("at, every, message", [
    # the next forward pass meets the infinite weight: no policy can help, stop at once
    (5, 3, "parameter cell.W_h holds non-finite values at step 6 (an update overflowed; lower train.lr or clip "
           "gradients); last good checkpoint: {ck} (step 3)"),
    # a checkpoint is due right after the update that overflowed: it is not written
    (10, 5, "parameter cell.W_h holds non-finite values at step 10; checkpoint.npz was not overwritten "
            "(lower train.lr or clip gradients); last good checkpoint: {ck} (step 5)"),
])
def test_overflowed_weights_stop_training_and_are_never_saved(prepared, tmp_path, monkeypatch, at, every, message):
    out = tmp_path / "run"
    poison(monkeypatch, {at}, "weights")     # update `at` leaves W_h infinite
    c = cfg(prepared, out, f"train.checkpoint_every={every}", "train.nonfinite=skip")
    with pytest.raises(TrainingError) as info:
        train_mod.train(c)
    assert str(info.value) == message.format(ck=out / "checkpoint.npz")
    params = checkpoint.read(str(out / "checkpoint.npz"))[0]
    assert all(np.isfinite(v).all() for v in params.values())


# --------------------------------------------------------------------------- reject_threshold rollback

@pytest.mark.parametrize("third", [3.0, float("nan")])
def test_reject_threshold_rolls_back_to_best_and_cuts_the_rate(prepared, tmp_path, monkeypatch, third):
    scripted = [2.0, 1.5, third]           # validation losses at steps 5, 10, 15
    real = train_mod.evaluate_tokens

    def fake(model, tokens, config, sep, per_token=False):
        result = real(model, tokens, config, sep, per_token)
        if scripted:
            result["loss"] = scripted.pop(0)
        return result

    monkeypatch.setattr(train_mod, "evaluate_tokens", fake)
    logs = []
    c = cfg(prepared, tmp_path / "run", "train.eval_every=5", "train.max_steps=15", "train.reject_threshold=0.5",
            "train.lr_factor=0.5", "train.optimizer=adam", "train.lr=0.01")
    summary = train_mod.train(c, log=logs.append)
    out = Path(c.train.out)
    best = checkpoint.read(str(out / "best.npz"))
    last = checkpoint.read(str(out / "checkpoint.npz"))
    assert best[4]["progress"]["step"] == 10 and last[4]["progress"]["step"] == 15
    for name in best[0]:                    # the weights at step 15 are the best ones (from step 10)
        np.testing.assert_array_equal(last[0][name], best[0][name], err_msg=name)
    for name in best[1]:                    # and so is the optimizer state
        np.testing.assert_array_equal(last[1][name], best[1][name], err_msg=name)
    assert last[4]["progress"]["lr"] == summary["lr"] == 0.005
    assert summary["best_valid_loss"] == 1.5
    assert any(re.search(r"step 15: validation loss rose above the best by more than 50%; rolled back to "
                         r"best.npz, lr -> 0.005", m) for m in logs), logs


# --------------------------------------------------------------------------- resume edge cases

def test_resume_at_max_steps_adds_no_update(prepared, tmp_path):
    c = cfg(prepared, tmp_path / "run", "train.max_steps=6")
    train_mod.train(c)
    before = checkpoint.read(str(tmp_path / "run" / "checkpoint.npz"))
    summary = train_mod.train(c, resume=True)
    after = checkpoint.read(str(tmp_path / "run" / "checkpoint.npz"))
    assert summary["steps"] == 6
    for name in before[0]:
        np.testing.assert_array_equal(before[0][name], after[0][name])
    # final evaluation lines are written once, not once per resume
    finals = [m for m in metrics(c.train.out) if m.get("final")]
    assert [m["split"] for m in finals] == ["valid"]


def test_metrics_lines_average_exactly_across_a_resume(prepared, tmp_path):
    # log_every=4 with a checkpoint every 3 updates: a resume lands inside a logging interval
    common = ["train.log_every=4", "train.checkpoint_every=3", "train.max_steps=16"]
    straight = cfg(prepared, tmp_path / "a", *common)
    train_mod.train(straight)
    train_mod.train(cfg(prepared, tmp_path / "b", *common[:2], "train.max_steps=7"))
    # pretend the run died at step 7, after the checkpoint at step 6
    resumed = cfg(prepared, tmp_path / "b", *common)
    train_mod.train(resumed, resume=True)
    drop = {"tokens_per_sec", "elapsed"}
    a = [{k: v for k, v in m.items() if k not in drop} for m in metrics(straight.train.out)]
    b = [{k: v for k, v in m.items() if k not in drop} for m in metrics(resumed.train.out)]
    assert a == b


def test_a_torn_metrics_line_is_dropped_on_resume(prepared, tmp_path):
    c = cfg(prepared, tmp_path / "run", "train.max_steps=4")
    train_mod.train(c)
    path = tmp_path / "run" / "metrics.jsonl"
    path.write_text(path.read_text() + '{"step": 5, "lo')
    train_mod.train(cfg(prepared, tmp_path / "run", "train.max_steps=6"), resume=True)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [m["step"] for m in lines if "split" not in m] == [1, 2, 3, 4, 5, 6]


def test_leftovers_of_killed_writes_are_removed_on_resume_old_names_too(prepared, tmp_path):
    out = tmp_path / "run"
    train_mod.train(cfg(prepared, out, "train.max_steps=2"))
    leftovers = [".checkpoint.npz-k2j3.tmp", ".metrics.jsonl-x9.tmp",    # fileio's temporary names
                 ".ckpt-abc123.npz.tmp", "summary.json.tmp-4242", "config.yaml.tmp-17"]   # earlier versions'
    for name in leftovers + ["notes.txt"]:
        (out / name).write_text("half")
    train_mod.train(cfg(prepared, out, "train.max_steps=3"), resume=True)
    assert sorted(os.listdir(out)) == ["checkpoint.npz", "config.yaml", "metrics.jsonl", "notes.txt",
                                       "summary.json"]


# --------------------------------------------------------------------------- security

def test_nothing_is_ever_unpickled():
    """Every numpy load in the package says allow_pickle=False; no pickle/marshal/eval anywhere."""
    for path in (ROOT / "rnnlm_cli").glob("*.py"):
        text = path.read_text(encoding="utf-8")
        for line in text.splitlines():
            if re.search(r"\bnp\.load\(", line):
                assert "allow_pickle=False" in line, f"{path.name}: {line.strip()}"
        assert not re.search(r"^\s*(import|from)\s+(pickle|marshal|shelve|dill)\b", text, re.M), path.name
        assert not re.search(r"(?<![\w.])(eval|exec)\(", text), path.name
        assert "yaml.load(" not in text or "Loader=_UniqueKeyLoader" in text, path.name
        assert "unsafe_load" not in text and "yaml.Loader" not in text and "FullLoader" not in text, path.name


def test_a_pickled_checkpoint_is_refused_by_evaluate_and_nothing_runs(prepared, tmp_path):
    out = tmp_path / "run"
    assert invoke("train", *sets(prepared, out, "train.max_steps=2"), "-q").exit_code == 0
    members = checkpoint.load(str(out / "checkpoint.npz"))
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    members["param/evil"] = np.array([Payload()], dtype=object)
    evil = tmp_path / "evil.npz"
    np.savez(evil, **members)
    result = invoke("evaluate", "--checkpoint", evil, "--split", "valid")
    assert (result.exit_code, result.stderr) == (
        1, f"Error: checkpoint {evil} holds pickled objects; refusing to load it (rnnlm never unpickles)\n")
    assert not marker.exists()


def test_python_tags_in_a_config_are_refused_and_not_run(tmp_path):
    marker = tmp_path / "pwned"
    for tag in ("!!python/object/apply:os.system", "!!python/object/new:os.system", "!!python/name:os.system"):
        path = tmp_path / "c.yaml"
        path.write_text(f"train:\n  out: {tag} ['touch {marker}']\n")
        result = invoke("config", "validate", "--config", path)
        assert result.exit_code == 2 and "could not determine a constructor for the tag" in result.stderr
        assert not marker.exists()
