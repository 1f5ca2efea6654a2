"""fileio: atomic writes (whole or not at all) and the crash points the crash tests use."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from rnnlm_cli import fileio

ROOT = Path(__file__).resolve().parents[1]


def test_atomic_write_replaces_whole_and_leaves_nothing_else(tmp_path):
    path = tmp_path / "f.txt"
    fileio.atomic_write_text(path, "one\r\n")
    fileio.atomic_write_text(path, "two é\n")
    assert path.read_bytes() == "two é\n".encode("utf-8")          # bytes as given, no newline translation
    assert os.listdir(tmp_path) == ["f.txt"]


def test_permissions_are_those_open_would_give(tmp_path):
    old = os.umask(0o027)
    try:
        fileio.atomic_write_text(tmp_path / "f.txt", "x")
        with open(tmp_path / "g.txt", "w") as fh:
            fh.write("x")
    finally:
        os.umask(old)
    mode = stat.S_IMODE(os.stat(tmp_path / "f.txt").st_mode)
    assert mode == stat.S_IMODE(os.stat(tmp_path / "g.txt").st_mode) == 0o640


def test_a_failing_write_keeps_the_old_content_and_removes_the_temporary(tmp_path):
    path = tmp_path / "f.txt"
    path.write_text("old")

    def half_then_fail(fh):
        fh.write(b"new, half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        fileio.atomic_write(path, half_then_fail)
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["f.txt"]


def test_atomic_write_json_is_strict(tmp_path):
    fileio.atomic_write_json(tmp_path / "a.json", {"x": [1, 2.5, None]})
    assert (tmp_path / "a.json").read_text() == json.dumps({"x": [1, 2.5, None]}, indent=2) + "\n"
    # NaN and infinities are written as null, never as the bare words JSON parsers refuse
    fileio.atomic_write_json(tmp_path / "b.json", {"x": float("nan"), "y": [float("inf"), -float("inf")]})
    assert json.loads((tmp_path / "b.json").read_text(), parse_constant=pytest.fail) == {"x": None, "y": [None, None]}
    assert sorted(os.listdir(tmp_path)) == ["a.json", "b.json"]


def test_temporary_names_are_recognised():
    assert fileio.is_temporary(".checkpoint.npz-a1b2c3.tmp")
    assert fileio.is_temporary(".ckpt-x1y2.npz.tmp")                 # the name checkpoints had before
    assert not fileio.is_temporary("checkpoint.npz") and not fileio.is_temporary("notes.tmp")


def test_crash_points_parse_a_point_and_a_count():
    assert fileio._read_faults("") == {}
    assert fileio._read_faults("after-rename:checkpoint.npz") == {"after-rename:checkpoint.npz": 1}
    assert fileio._read_faults("mid-line:metrics.jsonl@7") == {"mid-line:metrics.jsonl": 7}


SCRIPT = """
import sys
from rnnlm_cli import fileio
for i in range(1, 4):
    fileio.atomic_write_text(sys.argv[1], f"version {i}")
print("finished", flush=True)
"""


@pytest.mark.parametrize("point, content, temporary", [
    ("before-rename:f.txt@2", "version 1", True),    # version 2 written under its temporary name only
    ("after-rename:f.txt@2", "version 2", False),
    ("after-rename:other.txt", "version 3", False),  # a point never reached: the process runs to the end
])
def test_a_crash_point_kills_the_process_there(tmp_path, point, content, temporary):
    path = tmp_path / "f.txt"
    env = {**os.environ, fileio.FAULT_ENV: point}
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(path)], cwd=ROOT, env=env, capture_output=True, text=True)
    reached = point != "after-rename:other.txt"
    assert proc.returncode == (-signal.SIGKILL if reached else 0), proc.stderr
    assert ("finished" in proc.stdout) is not reached
    assert path.read_text() == content
    assert [fileio.is_temporary(n) for n in os.listdir(tmp_path) if n != "f.txt"] == ([True] if temporary else [])
