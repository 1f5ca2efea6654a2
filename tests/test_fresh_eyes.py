"""Cases of the fresh-eyes pass that the catalogue (test_bad_inputs.py) cannot hold: a closed
standard output, a closed pipe, warnings printed by numpy, outputs through symlinks, and the
memory estimate of drawn random tokens (whose message depends on this machine's memory)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from rnnlm_cli.cli import cli

RNNLM = f"{sys.executable} -m rnnlm_cli"
TEXT = "".join(f"the {n} {v} home\n" for n, v in [("dog", "runs"), ("dogs", "run"), ("cat", "runs"),
                                                    ("cats", "run")] * 15)
SMALL = ["--set", "model.hidden_size=8", "--set", "model.embedding_size=8", "--set", "train.batch_size=2",
         "--set", "train.k1=5"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("fresh")
    (root / "train.txt").write_text(TEXT, encoding="utf-8")
    ok = CliRunner().invoke(cli, ["preprocess", "--train", str(root / "train.txt"), "--out", str(root / "prep"), "-q"])
    assert ok.exit_code == 0, ok.output
    ok = CliRunner().invoke(cli, ["train", "--set", f"data.prepared={root / 'prep'}", "--out", str(root / "run"),
                                  "--max-steps", "4", "-q", *SMALL])
    assert ok.exit_code == 0, ok.output
    return root


def shell(command: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", command], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_closed_stdout_is_one_error_line(tmp_path):
    result = shell(f"{RNNLM} config show >&-", tmp_path)
    assert (result.returncode, result.stderr) == (1, "Error: cannot write to standard output: Bad file descriptor\n")


def test_closed_pipe_ends_quietly_with_141(run):
    ck = run / "run" / "checkpoint.npz"
    result = shell(f"set -o pipefail; {RNNLM} generate --checkpoint {ck} --set data.prepared={run / 'prep'} "
                   f"--n 20000 --max-tokens 20 | head -1 > /dev/null", run)
    assert (result.returncode, result.stderr) == (141, "")


def test_no_numpy_warning_text(run, tmp_path):
    """Weights that overflow under the skip policy: numpy's RuntimeWarnings are not printed."""
    result = shell(f"{RNNLM} train --set data.prepared={run / 'prep'} --out {tmp_path / 'r'} --max-steps 3 -q "
                   f"--set train.lr=1e30 --set train.nonfinite=skip {' '.join(SMALL)} > /dev/null", tmp_path)
    assert "Warning" not in result.stderr and "warn" not in result.stderr.lower(), result.stderr


def test_output_through_a_symlink_replaces_its_target_not_the_link(run, tmp_path):
    target = tmp_path / "tokens.tsv"
    target.write_text("old\n")
    link = tmp_path / "link.tsv"
    link.symlink_to(target)
    result = CliRunner().invoke(cli, ["evaluate", "--checkpoint", str(run / "run" / "checkpoint.npz"),
                                      "--set", f"data.prepared={run / 'prep'}", "--per-token", str(link)])
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_text().startswith("the\t")


def test_output_linked_to_a_fifo_is_refused(run, tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    link = tmp_path / "link.tsv"
    link.symlink_to(fifo)
    result = CliRunner().invoke(cli, ["evaluate", "--checkpoint", str(run / "run" / "checkpoint.npz"),
                                      "--set", f"data.prepared={run / 'prep'}", "--per-token", str(link)])
    assert result.exit_code == 2
    assert result.stderr == (f"Error: --per-token file {link} is a FIFO (named pipe), not a regular file; rnnlm writes "
                             f"its outputs to files (a temporary file renamed into place): choose a file path\n")
    assert link.is_symlink() and Path(os.path.realpath(link)) == fifo


def test_atomic_write_refuses_a_device_without_touching_it(tmp_path):
    from rnnlm_cli.fileio import WriteError, atomic_write_text
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(WriteError, match="a FIFO"):
        atomic_write_text(fifo, "x")
    assert fifo.is_fifo() and os.listdir(tmp_path) == ["pipe"]


def test_random_token_batches_count_in_the_memory_estimate(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["diagnose-gradients", "--batches", "100000000000", "--steps", "5"])
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: diagnose-gradients would need about ")
    assert result.stderr.endswith("; reduce diagnose.batches (now 100000000000)\n")
    assert os.listdir(tmp_path) == []


def test_corpus_agreement_replaces_its_own_corpus(tmp_path):
    out = tmp_path / "agreement"
    for _ in range(2):
        result = CliRunner().invoke(cli, ["corpus", "agreement", "--out", str(out)])
        assert result.exit_code == 0, result.output
    assert sorted(os.listdir(out)) == ["probe.jsonl", "test.txt", "train.txt", "valid.txt"]
