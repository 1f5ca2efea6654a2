"""Command-line options enter the configuration as values (never re-read as YAML text), and the
printed resume command is shell-quoted so that it gives back the same argv."""

from __future__ import annotations

import json
import shlex

import pytest
from click.testing import CliRunner

from rnnlm_cli.cli import cli
from rnnlm_cli.config import load_config
from rnnlm_cli.errors import ConfigError


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """A tiny corpus and config in tmp_path (also the current folder); the config names no out."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.txt").write_text("the cat sat\nthe dog ran\n" * 50, encoding="utf-8")
    cfg = tmp_path / "my config.yaml"
    cfg.write_text("data: {train: c.txt, prepared: prepared}\n"
                   "model: {hidden_size: 4, embedding_size: 4}\n"
                   "train: {batch_size: 2, k1: 4, log_every: 1}\n", encoding="utf-8")
    return cfg


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.mark.parametrize("name", ["x #1", "yes", "null", "[1, 2]"])
def test_train_out_is_the_folder_given(tiny, tmp_path, name):
    # YAML would read 'runs/x #1' as 'runs/x' (comment), 'yes' as true, 'null' as None
    result = invoke("train", "--config", tiny, "--out", f"runs/{name}", "--max-steps", 2, "--quiet")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == [name]
    assert (tmp_path / "runs" / name / "checkpoint.npz").is_file()


def test_preprocess_out_is_the_folder_given(tiny, tmp_path):
    result = invoke("preprocess", "--config", tiny, "--out", "p #1", "--level", "char", "--quiet")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "p #1" / "meta.json").is_file() and not (tmp_path / "p").exists()
    assert result.stdout.splitlines()[-1] == f"output      {tmp_path / 'p #1'}"


def test_resume_hint_gives_back_the_same_argv(tiny, tmp_path, monkeypatch):
    from rnnlm_cli.train import trainer

    def interrupted(cfg, **kwargs):
        raise trainer.Interrupted(130, str(tmp_path / "checkpoint.npz"))

    monkeypatch.setattr(trainer, "train", interrupted)
    args = ["--config", str(tiny), "--set", "train.lr=0.5 # a comment", "--set", "data.prepared=my data",
            "--out", "runs/x #1", "--max-steps", "7"]
    result = invoke("train", *args)
    assert result.exit_code == 130
    (line,) = result.stderr.splitlines()
    prefix = f"Interrupted: checkpoint saved to {tmp_path / 'checkpoint.npz'}; resume with: "
    assert line.startswith(prefix)
    assert shlex.split(line[len(prefix):]) == ["rnnlm", "train", *args, "--resume"]


def test_with_values_validates_like_set_but_takes_values(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config().with_values({"train.out": "yes", "train.max_steps": 5, "probe.data": "a #b.jsonl"})
    assert (cfg.train.out, cfg.train.max_steps) == (str(tmp_path / "yes"), 5)
    assert cfg.probe.data == str(tmp_path / "a #b.jsonl")
    # the same text through --set is YAML: 'yes' is a boolean there
    with pytest.raises(ConfigError, match=r"^train\.out: expected str, got True$"):
        load_config(None, ["train.out=yes"])
    for values, message in [
            ({"train.max_steps": -1}, "train.max_steps: expected a value >= 0, got -1"),
            ({"train.eval_every": 0}, "train.eval_every: expected a positive integer or 'epoch', got 0"),
            ({"train.eval_every": True}, "train.eval_every: expected a positive integer or 'epoch', got True"),
            ({"train.lrr": 0.1}, "unknown key 'train.lrr' (did you mean train.lr?)"),
            ({"train.k1": 50, "train.k2": 10}, "train.k2 (10) must be >= train.k1 (50), or 0 for k2 = k1")]:
        with pytest.raises(ConfigError) as info:
            load_config().with_values(values)
        assert str(info.value) == message
    assert load_config().with_values({}) == load_config()


def test_generate_options_override_the_config_keys(tiny, tmp_path):
    assert invoke("train", "--config", tiny, "--out", "run", "--max-steps", 2, "--quiet").exit_code == 0
    ck = tmp_path / "run" / "checkpoint.npz"
    by_option = invoke("generate", "--checkpoint", ck, "--n", 2, "--max-tokens", 5, "--prime", "the",
                       "--seed", 3, "--format", "json")
    by_set = invoke("generate", "--checkpoint", ck, "--set", "generate.n=2", "--set", "generate.max_tokens=5",
                    "--set", "generate.prime=the", "--set", "generate.seed=3", "--format", "json")
    assert by_option.exit_code == 0, by_option.output
    samples = json.loads(by_option.stdout)["samples"]
    assert by_option.stdout == by_set.stdout and len(samples) == 2
    assert all(s.startswith("the") and len(s.split()) <= 1 + 5 for s in samples)   # prime + at most 5 tokens
