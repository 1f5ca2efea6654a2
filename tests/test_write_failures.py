"""Writes that fail, and signals while writing: a full disk (ENOSPC), the file-size limit
(`ulimit -f`: EFBIG, with SIGXFSZ ignored), a read-only folder, a standard output that is a full
device, SIGTERM/SIGINT during preprocessing. Each ends in one `Error: ...` line that names what
could not be written and why, with exit 1 (130/143 for the signals), and leaves no temporary
file or folder and nothing half-written behind.

The file-size limit is the realistic full disk: root does not bypass it (root does bypass a
read-only folder, so that test is skipped as root)."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from rnnlm_cli import fileio
from rnnlm_cli.cli import cli
from rnnlm_cli.data import corpus

ROOT = Path(__file__).resolve().parents[1]
TEXT = "".join(f"the {n} {v} home\n" for n, v in [("dog", "runs"), ("dogs", "run"), ("cat", "runs")] * 40)
SMALL = ["--set", "model.hidden_size=4", "--set", "model.embedding_size=4", "--set", "train.batch_size=2",
         "--set", "train.k1=5"]


def rnnlm(*args, limit_kb: int | None = None, env: dict | None = None, stdout=subprocess.PIPE,
          cwd=ROOT) -> subprocess.CompletedProcess:
    """Run the real command line in a subprocess, optionally under `ulimit -f limit_kb`."""
    argv = [sys.executable, "-m", "rnnlm_cli", *map(str, args)]
    if limit_kb is not None:
        argv = ["bash", "-c", f'ulimit -f {limit_kb}; exec "$@"', "rnnlm", *argv]
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("RNNLM_FAULT")}
    return subprocess.run(argv, cwd=cwd, env={**full_env, **(env or {})}, stdout=stdout, stderr=subprocess.PIPE,
                          text=True, timeout=180)


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], prog_name="rnnlm")


def leftovers(folder: Path) -> list[str]:
    """Temporary files and folders of the tool's writes."""
    return [n for n in os.listdir(folder) if fileio.is_temporary(n) or ".tmp-" in n or ".old-" in n]


def big_corpus(path: Path, lines: int = 20000) -> Path:
    """Text with a vocabulary of 5000 words (uint16 ids), about 70 bytes a line."""
    path.write_text("".join(" ".join(f"w{(i * 7 + j * 131) % 5000}" for j in range(12)) + "\n" for i in range(lines)))
    return path


@pytest.fixture(scope="module")
def w(tmp_path_factory):
    """A corpus, its prepared folder and a short run with a result record (read-only)."""
    root = tmp_path_factory.mktemp("writes")
    (root / "train.txt").write_text(TEXT)
    ok = invoke("train", "--set", f"data.train={root / 'train.txt'}", "--set", f"data.prepared={root / 'prep'}",
                "--out", root / "run", "--max-steps", "3", "-q", "--record", root / "record.json", *SMALL)
    assert ok.exit_code == 0, ok.output
    return root


def assert_error(result, message, code=1):
    assert (result.returncode, result.stderr) == (code, f"Error: {message}\n")
    assert not result.stdout
    assert "Traceback" not in result.stderr


# --------------------------------------------------------------------------- preprocess

def test_preprocess_past_the_file_size_limit(tmp_path):
    train = big_corpus(tmp_path / "big.txt")
    result = rnnlm("preprocess", "--train", train, "--out", tmp_path / "prep", limit_kb=64)
    assert_error(result, f"cannot write the prepared data to {tmp_path / 'prep'}: File too large")
    assert sorted(os.listdir(tmp_path)) == ["big.txt"]


def test_train_building_its_data_past_the_file_size_limit(tmp_path):
    train = big_corpus(tmp_path / "big.txt")
    result = rnnlm("train", "--set", f"data.train={train}", "--set", f"data.prepared={tmp_path / 'prep'}",
                   "--out", tmp_path / "run", "-q", limit_kb=64)
    assert_error(result, f"cannot write the prepared data to {tmp_path / 'prep'}: File too large")
    assert sorted(os.listdir(tmp_path)) == ["big.txt"]


@pytest.mark.parametrize("where", ["split", "meta.json"])
def test_preprocess_on_a_full_disk(tmp_path, monkeypatch, where):
    (tmp_path / "t.txt").write_text(TEXT)
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    if where == "split":
        def write(self, ids):
            raise full
        monkeypatch.setattr(corpus._NpyWriter, "write", write)
    else:
        def crash_point(point, before=None):
            if point == "before-rename:meta.json":
                raise full
        monkeypatch.setattr(fileio, "crash_point", crash_point)
    result = invoke("preprocess", "--train", tmp_path / "t.txt", "--out", tmp_path / "prep")
    assert (result.exit_code, result.stderr) == (
        1, f"Error: cannot write the prepared data to {tmp_path / 'prep'}: No space left on device\n")
    assert sorted(os.listdir(tmp_path)) == ["t.txt"]


def test_a_forced_rebuild_that_fails_keeps_the_old_folder(tmp_path):
    train = big_corpus(tmp_path / "big.txt", lines=200)
    assert rnnlm("preprocess", "--train", train, "--out", tmp_path / "prep", "-q").returncode == 0
    before = {n: (tmp_path / "prep" / n).read_bytes() for n in os.listdir(tmp_path / "prep")}
    big_corpus(train)
    result = rnnlm("preprocess", "--train", train, "--out", tmp_path / "prep", "--force", limit_kb=64)
    assert_error(result, f"cannot write the prepared data to {tmp_path / 'prep'}: File too large")
    assert {n: (tmp_path / "prep" / n).read_bytes() for n in os.listdir(tmp_path / "prep")} == before
    assert leftovers(tmp_path) == []


# --------------------------------------------------------------------------- --per-token, --record, --plot

def test_per_token_past_the_file_size_limit(w, tmp_path):
    text = tmp_path / "eval.txt"
    text.write_text(TEXT)
    out = tmp_path / "tokens.tsv"
    result = rnnlm("evaluate", "--checkpoint", w / "run" / "checkpoint.npz", "--split", text, "--per-token", out,
                   limit_kb=1)
    assert_error(result, f"cannot write {out}: File too large")
    assert sorted(os.listdir(tmp_path)) == ["eval.txt"]


def test_per_token_keeps_an_old_file_whole_when_the_write_fails(w, tmp_path, monkeypatch):
    out = tmp_path / "tokens.tsv"
    out.write_text("an earlier result\n")

    def crash_point(point, before=None):
        if point == "before-rename:tokens.tsv":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(fileio, "crash_point", crash_point)
    result = invoke("evaluate", "--checkpoint", w / "run" / "checkpoint.npz", "--split", "valid", "--per-token", out)
    assert (result.exit_code, result.stderr, result.stdout) == (
        1, f"Error: cannot write {out}: No space left on device\n", "")
    assert out.read_text() == "an earlier result\n" and os.listdir(tmp_path) == ["tokens.tsv"]


def test_per_token_into_a_read_only_folder(w, tmp_path):
    if os.geteuid() == 0:
        pytest.skip("running as root: a read-only folder is still writable (the file-size limit tests cover it)")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    result = invoke("evaluate", "--checkpoint", w / "run" / "checkpoint.npz", "--split", "valid",
                    "--per-token", ro / "t.tsv")
    assert (result.exit_code, result.stderr) == (1, f"Error: cannot write {ro / 't.tsv'}: Permission denied\n")
    assert os.listdir(ro) == []


def test_record_on_a_full_disk(w, tmp_path, monkeypatch):
    record = tmp_path / "rec.json"

    def crash_point(point, before=None):
        if point == "before-rename:rec.json":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(fileio, "crash_point", crash_point)
    result = invoke("train", "--set", f"data.prepared={w / 'prep'}", "--out", tmp_path / "run", "--max-steps", "2",
                    "-q", "--record", record, *SMALL)
    assert (result.exit_code, result.stderr, result.stdout) == (
        1, f"Error: cannot write {record}: No space left on device\n", "")
    assert sorted(os.listdir(tmp_path)) == ["run"] and (tmp_path / "run" / "summary.json").is_file()


def test_record_whose_folder_cannot_be_created(w, tmp_path):
    (tmp_path / "file").write_text("x")
    record = tmp_path / "file" / "rec.json"
    result = invoke("train", "--set", f"data.prepared={w / 'prep'}", "--out", tmp_path / "run", "--max-steps", "2",
                    "-q", "--record", record, *SMALL)
    assert (result.exit_code, result.stderr) == (1, f"Error: cannot write {record}: Not a directory\n")


def test_plot_past_the_file_size_limit(w, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "curves.png"
    result = rnnlm("results", w / "record.json", "--plot", out, limit_kb=1, stdout=subprocess.DEVNULL)
    assert (result.returncode, result.stderr) == (1, f"Error: cannot write {out}: File too large\n")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("name", ["curves.png", "curves.svg", "curves.pdf", "CURVES.PNG"])
def test_plot_formats(w, tmp_path, name):
    pytest.importorskip("matplotlib")
    result = invoke("results", w / "record.json", "--plot", tmp_path / name)
    assert result.exit_code == 0, result.output
    head = (tmp_path / name).read_bytes()[:8]
    assert head.startswith({"png": b"\x89PNG", "svg": b"<?xml", "pdf": b"%PDF"}[name.split(".")[1].lower()])
    assert os.listdir(tmp_path) == [name]


# --------------------------------------------------------------------------- standard output

@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full here")
@pytest.mark.parametrize("command", ["config", "evaluate", "preprocess"])
def test_stdout_on_a_full_device(w, tmp_path, command):
    args = {"config": ["config", "show"],
            "evaluate": ["evaluate", "--checkpoint", w / "run" / "checkpoint.npz", "--split", "valid",
                         "--format", "json"],
            "preprocess": ["preprocess", "--train", w / "train.txt", "--out", tmp_path / "prep", "-q"]}[command]
    with open("/dev/full", "w") as full:
        result = rnnlm(*args, stdout=full)
    assert (result.returncode, result.stderr) == (1, "Error: cannot write to standard output: No space left on device\n")
    if command == "preprocess":      # what was asked for is written, whole; only the report could not be
        assert corpus.load_prepared(str(tmp_path / "prep")).meta["tokens"]["train"] > 0


# --------------------------------------------------------------------------- signals while preprocessing

@pytest.mark.parametrize("sig, code, message", [("TERM", 143, "interrupted (SIGTERM)"), ("INT", 130, "interrupted")])
@pytest.mark.parametrize("command", ["preprocess", "train"])
def test_a_signal_while_preprocessing_removes_the_temporary_folder(tmp_path, sig, code, message, command):
    (tmp_path / "t.txt").write_text(TEXT)
    prep = tmp_path / "prep"
    args = (["preprocess", "--train", tmp_path / "t.txt", "--out", prep] if command == "preprocess" else
            ["train", "--set", f"data.train={tmp_path / 't.txt'}", "--set", f"data.prepared={prep}",
             "--out", tmp_path / "run", "-q"])
    result = rnnlm(*args, env={fileio.FAULT_ENV: "before-rename:prep", fileio.FAULT_SIGNAL_ENV: sig})
    assert (result.returncode, result.stderr, result.stdout) == (code, f"Error: {message}\n", "")
    assert sorted(os.listdir(tmp_path)) == ["t.txt"]


def test_sigterm_at_a_random_moment_of_preprocessing(tmp_path):
    """A real SIGTERM from outside while the temporary folder is being written."""
    train = big_corpus(tmp_path / "big.txt", lines=120000)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RNNLM_FAULT")}
    proc = subprocess.Popen([sys.executable, "-m", "rnnlm_cli", "preprocess", "--train", str(train),
                             "--out", str(tmp_path / "prep"), "-q"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not leftovers(tmp_path) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    if proc.poll() is not None:
        proc.communicate()
        pytest.skip("preprocessing finished before the signal could be sent")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert (proc.returncode, err, out) == (143, "Error: interrupted (SIGTERM)\n", "")
    assert sorted(os.listdir(tmp_path)) == ["big.txt"]


def test_json_record_of_the_fixture_is_whole(w):
    assert json.loads((w / "record.json").read_text())["name"] == "default"
