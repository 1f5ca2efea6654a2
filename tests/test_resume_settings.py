"""Resuming with changed settings: keys that only say how long and how often a run goes on are
applied and logged; any other change is refused (the run would go on with the checkpoint's
values while config.yaml claimed the new ones)."""

from __future__ import annotations

import shutil

import pytest
import yaml
from click.testing import CliRunner

from rnnlm_cli.cli import cli

SMALL = ["model.hidden_size=4", "model.embedding_size=4", "train.batch_size=2", "train.k1=4", "train.log_every=1"]


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], prog_name="rnnlm")


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    (root / "c.txt").write_text("the cat sat\nthe dog ran\n" * 40, encoding="utf-8")
    base = ["--set", f"data.train={root / 'c.txt'}", "--set", f"data.prepared={root / 'prep'}",
            *[a for s in SMALL for a in ("--set", s)]]
    result = invoke("train", *base, "--out", root / "run", "--max-steps", 3, "-q")
    assert result.exit_code == 0, result.output
    return root, base


def copy_run(finished, tmp_path):
    root, base = finished
    out = tmp_path / "run"
    shutil.copytree(root / "run", out)
    return out, base


@pytest.mark.parametrize("key, value", [("train.lr", "0.5"), ("train.optimizer", "adam"), ("model.dropout_output", "0.5"),
                                        ("train.schedule", "epoch_decay"), ("data.lowercase", "true"),
                                        ("train.seed", "7"), ("train.clip", "none")])
def test_a_changed_setting_is_refused_and_nothing_is_rewritten(finished, tmp_path, key, value):
    out, base = copy_run(finished, tmp_path)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    result = invoke("train", *base, "--out", out, "--max-steps", 6, "--resume", "--set", f"{key}={value}", "-q")
    assert result.exit_code in (1, 2) and result.stdout == ""
    line = result.stderr
    assert line.count("\n") == 1 and line.startswith("Error: ")
    if result.exit_code == 1:   # refused by the resume check: names the key, both values, and --force
        assert f": {key} is " in line and "in the checkpoint but" in line and "--force" in line
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before     # config.yaml not rewritten


def test_run_length_settings_are_applied_and_logged(finished, tmp_path):
    out, base = copy_run(finished, tmp_path)
    result = invoke("train", *base, "--out", out, "--max-steps", 6, "--resume", "--set", "train.log_every=2",
                    "--set", "train.epochs=2")
    assert result.exit_code == 0, result.output
    assert "resume: train.max_steps changed from 3 to 6 (applied)" in result.stderr
    assert "resume: train.log_every changed from 1 to 2 (applied)" in result.stderr
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["train"]["max_steps"] == 6 and saved["train"]["log_every"] == 2 and saved["train"]["lr"] == 0.1


def test_resume_without_changes_says_nothing_about_settings(finished, tmp_path):
    out, base = copy_run(finished, tmp_path)
    result = invoke("train", *base, "--out", out, "--max-steps", 3, "--resume")
    assert result.exit_code == 0, result.output
    assert "changed from" not in result.stderr
