"""The default probe set ships inside the package: a wheel (what `pip install .` installs)
holds it, and the default lookup finds it through importlib.resources, outside any checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROBE = "rnnlm_cli/data/agreement_probe.jsonl"
SKIP = {".git", ".venv", "build", "dist", ".hypothesis", ".pytest_cache", "__pycache__"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """A wheel of this checkout, built offline (no build isolation, no dependencies)."""
    pytest.importorskip("wheel", reason="building a wheel needs the wheel package (dev extra)")
    out = tmp_path_factory.mktemp("wheel")
    # build from a copy: setuptools leaves build/ and *.egg-info beside the sources it builds
    source = tmp_path_factory.mktemp("source") / "rnnlm"
    shutil.copytree(ROOT, source, symlinks=True, ignore=lambda folder, names: [
        n for n in names if n in SKIP or n.endswith(".egg-info") or (folder == str(ROOT) and n in ("runs", "data"))])
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           str(source), "-w", str(out)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PIP_NO_INDEX": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    (path,) = out.glob("rnnlm-*.whl")
    return path


def test_wheel_holds_the_probe_set(wheel):
    with zipfile.ZipFile(wheel) as zf:
        assert zf.read(PROBE) == (ROOT / "corpora" / "agreement" / "probe.jsonl").read_bytes()


def test_default_lookup_finds_the_probe_set_of_an_installed_copy(wheel, tmp_path):
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(site)
    code = ("import rnnlm_cli; from rnnlm_cli.analysis import probe as P; f = P.default_probe_file(); "
            "print(rnnlm_cli.__file__); print(f); print(len(P.load_items(f)))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(site)})
    assert proc.returncode == 0, proc.stderr
    package, probe_file, items = proc.stdout.splitlines()
    assert Path(package).is_relative_to(site) and Path(probe_file) == site / PROBE
    assert int(items) == 900            # 30 items for each distance 1..30 (corpora/README.md)
