"""Options and configuration keys share one validator; --debug and -q/--quiet work on every
command, after the subcommand too; sampling is numerically safe at any valid temperature."""

from __future__ import annotations

import json
import warnings

import click
import pytest
from click.testing import CliRunner

from rnnlm_cli.cli import cli
from rnnlm_cli.config import load_config, option_value
from rnnlm_cli.errors import ConfigError


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], prog_name="rnnlm")


def leaf_commands(group=cli, path=()):
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            yield from leaf_commands(cmd, path + (name,))
        else:
            yield path + (name,), cmd


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny trained run: (checkpoint path, prepared folder)."""
    root = tmp_path_factory.mktemp("opts")
    (root / "c.txt").write_text("the cat sat\nthe dog ran\n" * 40, encoding="utf-8")
    sets = ["model.hidden_size=4", "model.embedding_size=4", "train.batch_size=2", "train.k1=4"]
    args = ["train", "--set", f"data.train={root / 'c.txt'}", "--set", f"data.prepared={root / 'prep'}",
            "--out", root / "run", "--max-steps", 2, "-q"] + [a for s in sets for a in ("--set", s)]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    return root / "run" / "checkpoint.npz", root / "prep"


# --------------------------------------------------------------------------- one validator

# (command argv prefix, option, key): options that set a configuration key
KEY_OPTIONS = [
    (["gradcheck"], "--tolerance", "gradcheck.tolerance"),
    (["gradcheck"], "--hidden", "gradcheck.hidden_size"),
    (["gradcheck"], "--vocab", "gradcheck.vocab_size"),
    (["gradcheck"], "--steps", "gradcheck.steps"),
    (["diagnose-gradients"], "--threshold", "diagnose.threshold"),
    (["diagnose-gradients"], "--steps", "diagnose.steps"),
    (["diagnose-gradients"], "--batch-size", "diagnose.batch_size"),
    (["preprocess"], "--level", "data.level"),
    (["train"], "--max-steps", "train.max_steps"),
]


@pytest.mark.parametrize("prefix, option, key", KEY_OPTIONS, ids=[o[1] + "/" + o[2] for o in KEY_OPTIONS])
@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "0", "-1", "1e-30", "2.5", "abc", "1e400"])
def test_an_option_refuses_what_its_key_refuses_with_the_same_message(prefix, option, key, text):
    try:
        value = option_value(key, text)
    except ConfigError as exc:
        # refused: the command line says the key's own message, naming the key
        assert str(exc).startswith(f"{key}: ")
        result = invoke(*prefix, option, text)
        assert result.exit_code == 2 and result.stdout == ""
        assert result.stderr == f"Error: Invalid value for '{option}': {exc} (see 'rnnlm {prefix[0]} -h')\n"
        return
    # accepted: a value the key accepts too, through --set as through with_values
    assert load_config().with_values({key: value}) == load_config(None, [f"{key}={value!r}" if isinstance(value, str)
                                                                         else f"{key}={value}"])


@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "NaN", "Infinity"])
def test_non_finite_floats_are_refused_by_option_and_by_set(text, run):
    ck, _ = run
    by_option = invoke("generate", "--checkpoint", ck, "--temperature", text)
    assert by_option.exit_code == 2 and "generate.temperature: expected a finite number" in by_option.stderr
    yaml_text = {"nan": ".nan", "inf": ".inf", "-inf": "-.inf", "NaN": ".NaN", "Infinity": ".inf"}[text]
    by_set = invoke("generate", "--checkpoint", ck, "--set", f"generate.temperature={yaml_text}")
    assert by_set.exit_code == 2 and by_set.stderr.startswith("Error: generate.temperature: expected a finite number")


def test_tiny_temperature_samples_greedily_without_warnings(run):
    ck, _ = run
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tiny = invoke("generate", "--checkpoint", ck, "--temperature", "1e-300", "--n", 2, "--max-tokens", 6,
                      "--format", "json")
        small = invoke("generate", "--checkpoint", ck, "--temperature", "1e-6", "--n", 2, "--max-tokens", 6,
                       "--format", "json", "--seed", 5)
    assert tiny.exit_code == 0 and tiny.stderr == "", tiny.output
    samples = json.loads(tiny.stdout)["samples"]
    assert all(s.strip() for s in samples)                         # not empty
    assert samples == json.loads(small.stdout)["samples"]           # the most likely tokens, whatever the seed


# --------------------------------------------------------------------------- --debug and --quiet everywhere

@pytest.mark.parametrize("path, command", list(leaf_commands()), ids=[" ".join(p) for p, _ in leaf_commands()])
def test_every_command_takes_quiet_and_debug(path, command):
    result = invoke(*path, "-h")
    assert result.exit_code == 0
    assert "-q, --quiet" in result.output and "--debug" in result.output


def test_debug_after_the_subcommand_shows_the_traceback():
    before = invoke("--debug", "config", "validate", "--set", "model.cell=rnn")
    after = invoke("config", "validate", "--set", "model.cell=rnn", "--debug")
    for result in (before, after):
        assert isinstance(result.exception, ConfigError)       # raised, not turned into one line
    plain = invoke("config", "validate", "--set", "model.cell=rnn")
    assert plain.exit_code == 2 and isinstance(plain.exception, SystemExit)


def test_quiet_never_silences_errors():
    result = invoke("config", "validate", "-q", "--set", "model.cell=rnn")
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: model.cell: expected one of")
    ok = invoke("config", "validate", "-q")
    assert ok.exit_code == 0 and ok.stderr == ""


def test_quiet_silences_the_random_tokens_note(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["diagnose-gradients", "--set", "model.hidden_size=4", "--set", "model.embedding_size=4",
            "--steps", 4, "--set", "diagnose.truncations=[1]", "--format", "json"]
    loud = invoke(*args)
    quiet = invoke(*args, "-q")
    assert loud.exit_code == 0 and quiet.exit_code == 0, loud.output
    assert "note:" in loud.stderr and quiet.stderr == ""
