"""rnnlm tune: two workers on one SQLite storage finish exactly the requested trials, none
duplicated, some pruned; a worker stopped by SIGTERM queues its trial again; the best trial's
configuration trains as it is; without Optuna, one line saying how to install it; bad input."""

from __future__ import annotations

import builtins
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from rnnlm_cli.cli import cli

optuna = pytest.importorskip("optuna", reason="the tune extra (pip install 'rnnlm[tune]') is not installed")

ROOT = Path(__file__).resolve().parents[1]
AGREEMENT = ROOT / "corpora" / "agreement"


def write_inputs(folder: Path, max_steps: int = 60) -> None:
    (folder / "base.yaml").write_text(f"""
data: {{train: {AGREEMENT / 'train.txt'}, valid: {AGREEMENT / 'valid.txt'}, test: {AGREEMENT / 'test.txt'},
       prepared: {folder / 'data'}}}
model: {{cell: tanh, embedding_size: 8, hidden_size: 8}}
train: {{batch_size: 16, k1: 10, epochs: 1, max_steps: {max_steps}, eval_every: 10, log_every: 10,
         optimizer: adam, lr: 0.01}}
""", encoding="utf-8")
    # a range whose lower two thirds (below ~1e-4) learn nothing in 60 updates: a trial drawn there
    # after two trials have completed is worse than their median at its first evaluation, so the
    # pruner has something to stop; with 10 trials, none drawn there is a ~(1/3)^8 chance
    (folder / "space.yaml").write_text("train.lr: loguniform(1e-7, 0.1)\nmodel.cell: [tanh, gru]\n",
                                       encoding="utf-8")


def worker(folder: Path, trials: int, storage: str = "sqlite:///tune.db", *extra) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "rnnlm_cli", "tune", "--config", "base.yaml", "--space",
                             "space.yaml", "--trials", str(trials), "--storage", storage, "--study", "s",
                             "--out", "out", *extra], cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def report(folder: Path, storage: str = "sqlite:///tune.db") -> dict:
    done = subprocess.run([sys.executable, "-m", "rnnlm_cli", "tune", "--report", "--storage", storage, "--study",
                           "s", "--format", "json"], cwd=folder, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.slow
@pytest.mark.parametrize("storage", ["sqlite:///tune.db", "journal:tune.journal"])
def test_two_workers_finish_exactly_the_trials_asked_for(tmp_path, storage):
    write_inputs(tmp_path)
    n = 10
    procs = [worker(tmp_path, n, storage) for _ in range(2)]
    outs = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    ran = [int(out.split("this worker ran ")[1].split()[0]) for out, _ in outs]
    assert sum(ran) == n
    result = report(tmp_path, storage)
    trials = result["trials"]
    assert len(trials) == n and sorted(t["number"] for t in trials) == list(range(n))
    states = [t["state"] for t in trials]
    assert set(states) <= {"complete", "pruned"} and "pruned" in states and "complete" in states, states
    params = [tuple(sorted(t["params"].items())) for t in trials]
    assert len(set(params)) == n                                     # no trial's parameters twice
    for t in trials:                                                 # each trial is an ordinary run
        run = Path(t["run"]) if Path(t["run"]).is_absolute() else tmp_path / t["run"]
        metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        valid = [m for m in metrics if m.get("split") == "valid" and not m.get("final")]
        if t["state"] == "pruned":                                  # stopped at the evaluation it was pruned at
            assert not (run / "summary.json").exists() and valid[-1]["step"] == t["last_step"] <= 60
        else:
            assert json.loads((run / "summary.json").read_text())["steps"] == 60
            assert t["value"] == pytest.approx(min(m["loss"] for m in valid))
    best = min((t for t in trials if t["state"] == "complete"), key=lambda t: t["value"])
    assert result["best"]["number"] == best["number"]
    cfg = yaml.safe_load((tmp_path / "out" / "best.yaml").read_text())
    assert cfg["train"]["lr"] == best["params"]["train.lr"] and cfg["model"]["cell"] == best["params"]["model.cell"]
    assert set(result["importances"]) == {"train.lr", "model.cell"}
    text = subprocess.run([sys.executable, "-m", "rnnlm_cli", "tune", "--report", "--storage", storage, "--study", "s"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60).stdout.splitlines()
    assert text[0] == f"study s: {n} trials" and text[2].split()[:2] == ["trial", "state"]
    assert [line.split()[1] for line in text[3:3 + n]] == states
    assert "parameter importances (fANOVA):" in text and any(line.split()[0] == "train.lr" for line in text[3 + n:] if line)


@pytest.mark.slow
def test_a_worker_stopped_by_sigterm_queues_its_trial_again(tmp_path):
    write_inputs(tmp_path, max_steps=100000)
    proc = worker(tmp_path, 2, "sqlite:///tune.db", "--pruner", "none")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list(tmp_path.glob("out/trial-00000/checkpoint.npz")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "the trial's parameters are queued again" in err
    trials = report(tmp_path)["trials"]
    assert [t["state"] for t in trials] == ["fail", "waiting"]
    assert trials[0]["params"] == trials[1]["params"]


def test_without_optuna_one_line_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    real_import = builtins.__import__

    def no_optuna(name, *args, **kwargs):
        if name == "optuna" or name.startswith("optuna."):
            raise ImportError("No module named 'optuna'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_optuna)
    result = CliRunner().invoke(cli, ["tune", "--storage", "sqlite:///t.db", "--study", "s", "--trials", "3",
                                      "--space", "space.yaml"])
    assert (result.exit_code, result.stderr) == (2, "Error: rnnlm tune needs Optuna, an optional extra: "
                                                    "pip install 'rnnlm[tune]'\n")
    assert list(tmp_path.iterdir()) == []


BAD = [
    ("train.lrr: loguniform(1e-4, 1e-2)\n", [], "unknown key 'train.lrr' (did you mean train.lr?)", 2),
    ("train.lr: loguniform(1e-4 1e-2)\n", [], "loguniform() takes two bounds, got 1", 2),
    ("train.lr: fancy(1, 2)\n", [], "unknown distribution 'fancy'", 2),
    ("model.cell: [tanh, bogus]\n", [], "model.cell", 2),
    ("", [], "must be a non-empty mapping of config keys to distributions", 2),
    ("train.lr: loguniform(1e-4, 1e-2)\n", ["--trials", "0"], "Invalid value for '--trials': must be at least 1, "
                                                            "got 0", 2),
    ("train.lr: loguniform(1e-4, 1e-2)\n", ["--storage", "sqlite:///missing/t.db"],
     "cannot open storage 'sqlite:///missing/t.db': folder", 1),
    ("train.lr: loguniform(1e-4, 1e-2)\n", ["--storage", "nonsense"], "--storage 'nonsense': expected", 2),
    ("train.lr: loguniform(1e-4, 1e-2)\n", ["--storage", "postgresql://u@127.0.0.1:1/none"],
     "cannot open storage 'postgresql://u@127.0.0.1:1/none'", 1),
]


@pytest.mark.parametrize("space,extra,words,code", BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_tune_input(tmp_path, monkeypatch, space, extra, words, code):
    monkeypatch.chdir(tmp_path)
    write_inputs(tmp_path)
    (tmp_path / "space.yaml").write_text(space, encoding="utf-8")
    before = sorted(p.name for p in tmp_path.iterdir())
    args = {"--trials": "3", "--storage": "sqlite:///t.db"}
    for i in range(0, len(extra), 2):
        args[extra[i]] = extra[i + 1]
    result = CliRunner().invoke(cli, ["tune", "--config", "base.yaml", "--space", "space.yaml", "--study", "s",
                                      *[a for kv in args.items() for a in kv]], prog_name="rnnlm")
    assert result.exit_code == code, result.output
    assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1 and words in result.stderr, \
        result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before          # nothing created


def test_report_reads_and_creates_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for storage in ("sqlite:///none.db", "journal:none.log"):
        result = CliRunner().invoke(cli, ["tune", "--report", "--storage", storage, "--study", "s"])
        assert result.exit_code == 1 and "none" in result.stderr and "does not exist" in result.stderr, result.output
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_a_killed_workers_trial_on_a_journal_is_failed_and_queued_again(tmp_path):
    """SIGKILL leaves the trial RUNNING; the next worker on this host finds its PID gone, marks it
    failed and runs its parameters again (the journal file has no heartbeat)."""
    write_inputs(tmp_path, max_steps=400)
    proc = worker(tmp_path, 1, "journal:tune.journal", "--pruner", "none")
    deadline = time.monotonic() + 60
    metrics = tmp_path / "out" / "trial-00000" / "metrics.jsonl"
    while time.monotonic() < deadline and not (metrics.exists() and metrics.stat().st_size > 0):
        time.sleep(0.02)
    proc.kill()
    proc.communicate(timeout=60)
    assert [t["state"] for t in report(tmp_path, "journal:tune.journal")["trials"]] == ["running"]
    again = worker(tmp_path, 1, "journal:tune.journal", "--pruner", "none")
    out, err = again.communicate(timeout=120)
    assert again.returncode == 0, err
    assert "trial 0: its worker (PID" in err and "marked failed and re-queued" in err
    trials = report(tmp_path, "journal:tune.journal")["trials"]
    assert [t["state"] for t in trials] == ["fail", "complete"] and trials[0]["params"] == trials[1]["params"]


def test_trials_that_only_fail_stop_the_worker(tmp_path, monkeypatch):
    """Every trial's training fails (simulated): five failed trials in a row end the worker with
    one error line instead of a loop, and Optuna's own warnings stay off stderr."""
    from rnnlm_cli.errors import TrainingError
    from rnnlm_cli.train import trainer

    def failing(cfg, **kwargs):
        raise TrainingError(f"non-finite loss at step 3 (lr {cfg.train.lr:.3g})")

    monkeypatch.setattr(trainer, "train", failing)
    monkeypatch.chdir(tmp_path)
    write_inputs(tmp_path)
    result = CliRunner().invoke(cli, ["tune", "--config", "base.yaml", "--space", "space.yaml", "--trials", "3",
                                      "--storage", "sqlite:///t.db", "--study", "s", "-q"])
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("Error: 5 trials in a row failed in this worker; the last: ")
    assert "non-finite loss at step 3" in result.stderr and result.stderr.count("\n") == 1


@pytest.mark.slow
def test_a_killed_workers_trial_on_sqlite_is_failed_by_heartbeat_and_retried(tmp_path, monkeypatch):
    """SIGKILL stops the trial's heartbeat; a worker that starts after the grace period marks it
    failed and Optuna's RetryFailedTrialCallback queues its parameters again (the grace period is
    shortened here from 60 s to 2 s, in the second worker, which is the one that checks)."""
    from rnnlm_cli.studies import tune

    write_inputs(tmp_path, max_steps=400)
    proc = worker(tmp_path, 1, "sqlite:///tune.db", "--pruner", "none")
    metrics = tmp_path / "out" / "trial-00000" / "metrics.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (metrics.exists() and metrics.stat().st_size > 0):
        time.sleep(0.02)
    proc.kill()
    proc.communicate(timeout=60)
    # SQLite's now() has whole seconds, so "more than 2 s since the last beat" holds for certain
    # only 4 s after it (the beat and the check may each be truncated by up to a second).
    time.sleep(4.0)
    monkeypatch.setattr(tune, "GRACE_PERIOD", 2)
    monkeypatch.setattr(tune, "HEARTBEAT_INTERVAL", 1)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["tune", "--config", "base.yaml", "--space", "space.yaml", "--trials", "1",
                                      "--storage", "sqlite:///tune.db", "--study", "s", "--out", "out",
                                      "--pruner", "none", "-q"])
    assert result.exit_code == 0, result.output
    trials = report(tmp_path)["trials"]
    assert [t["state"] for t in trials] == ["fail", "complete"] and trials[0]["params"] == trials[1]["params"]


@pytest.mark.parametrize("where", ["foreign", "input"])
def test_tune_refuses_an_out_folder_it_does_not_own(tmp_path, monkeypatch, where):
    monkeypatch.chdir(tmp_path)
    write_inputs(tmp_path)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    out = {"foreign": "mine", "input": "."}[where]
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    result = CliRunner().invoke(cli, ["tune", "--config", "base.yaml", "--space", "space.yaml", "--trials", "2",
                                      "--storage", "sqlite:///t.db", "--study", "s", "--out", out])
    words = {"foreign": "holds files rnnlm tune did not write (notes.txt)", "input": "contains the config file"}[where]
    assert result.exit_code == 2 and words in result.stderr and result.stderr.count("\n") == 1, result.output
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before
