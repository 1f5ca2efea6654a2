"""Every JSON the tool writes is strict JSON: a NaN or infinite number is written as null, in
files (summary.json, metrics.jsonl, meta.json, records) and on stdout (--format json)."""

from __future__ import annotations

import json
import math

import pytest
from click.testing import CliRunner

from rnnlm_cli import fileio
from rnnlm_cli.cli import cli
from rnnlm_cli.cli.common import echo_json
from rnnlm_cli.train import trainer


def strict(text: str):
    """json.loads that refuses NaN, Infinity and -Infinity, as strict JSON parsers do."""
    def refuse(word):
        raise AssertionError(f"non-standard JSON constant {word}")
    return json.loads(text, parse_constant=refuse)


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], prog_name="rnnlm")


def test_a_diverging_run_writes_null_for_non_finite_numbers(tmp_path, monkeypatch):
    (tmp_path / "c.txt").write_text("the cat sat\nthe dog ran\n" * 40, encoding="utf-8")

    def diverged(model, tokens, cfg, sep, per_token=False):   # every validation and test loss is NaN
        return {"loss": math.nan, "ppl": math.inf, "bits": math.nan, "tokens": len(tokens)}

    monkeypatch.setattr(trainer, "evaluate_tokens", diverged)
    result = invoke("train", "--set", f"data.train={tmp_path / 'c.txt'}", "--set", f"data.prepared={tmp_path / 'p'}",
                    "--set", "model.hidden_size=4", "--set", "model.embedding_size=4", "--set", "train.batch_size=2",
                    "--set", "train.k1=4", "--set", "train.eval_every=2", "--out", tmp_path / "run", "--max-steps", 4,
                    "-q", "--format", "json")
    assert result.exit_code == 0, result.output
    summary = strict((tmp_path / "run" / "summary.json").read_text())
    assert summary["valid_loss"] is None and summary["valid_ppl"] is None
    assert strict(result.stdout) == summary
    lines = [strict(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [e["loss"] for e in lines if e.get("split") == "valid"] == [None] * 3   # steps 2, 4, final
    strict((tmp_path / "p" / "meta.json").read_text())


def test_json_on_stdout_is_strict(capsys):
    echo_json({"a": math.nan, "b": [math.inf, 1.5], "c": {"d": -math.inf}})
    assert strict(capsys.readouterr().out) == {"a": None, "b": [None, 1.5], "c": {"d": None}}


def test_the_json_writers_refuse_nothing_and_write_null(tmp_path):
    fileio.atomic_write_json(tmp_path / "x.json", {"loss": math.nan})
    assert strict((tmp_path / "x.json").read_text()) == {"loss": None}


@pytest.mark.parametrize("argv", [["config", "show", "--format", "json"]])
def test_config_json_is_strict(argv):
    result = invoke(*argv)
    assert result.exit_code == 0
    strict(result.stdout)
