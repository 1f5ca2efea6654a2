"""Configuration loading, validation, overrides, and the `config` commands."""

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from rnnlm_cli.cli import cli
from rnnlm_cli.config import Config, build_config, load_config, parse_override, to_yaml
from rnnlm_cli.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def run(*args):
    result = CliRunner().invoke(cli, list(args))
    return result


def write(tmp_path, text, name="c.yaml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_default_yaml_documents_exactly_the_builtin_defaults():
    # configs/default.yaml is generated from the dataclasses: same keys, same values
    shipped = (ROOT / "configs" / "default.yaml").read_text(encoding="utf-8")
    assert shipped == to_yaml(Config(), comments=True)
    doc = yaml.safe_load(shipped)
    assert doc == Config().to_dict()
    assert build_config(doc) == Config()


def test_every_key_has_a_comment_in_default_yaml():
    shipped = (ROOT / "configs" / "default.yaml").read_text(encoding="utf-8")
    key_lines = [line for line in shipped.splitlines() if line.startswith("  ")]
    assert len(key_lines) == sum(len(v) for v in Config().to_dict().values())
    assert all("  # " in line for line in key_lines)


def test_config_show_without_config_prints_defaults():
    result = run("config", "show")
    assert result.exit_code == 0
    assert yaml.safe_load(result.output) == Config().to_dict()


def test_config_show_applies_overrides_as_yaml_scalars(tmp_path):
    path = write(tmp_path, "model:\n  cell: gru\n")
    result = run("config", "show", "--config", path, "--set", "model.hidden_size=128",
                 "--set", "train.eval_every=50", "--set", "model.tie_weights=true",
                 "--set", "model.embedding_size=128", "--format", "json")
    assert result.exit_code == 0, result.output
    import json
    doc = json.loads(result.output)
    assert doc["model"]["cell"] == "gru"
    assert doc["model"]["hidden_size"] == 128
    assert doc["model"]["tie_weights"] is True
    assert doc["train"]["eval_every"] == 50


def test_relative_paths_resolve_against_the_config_folder(tmp_path):
    sub = tmp_path / "cfgs"
    sub.mkdir()
    path = write(sub, "data:\n  train: ../text/train.txt\ntrain:\n  out: runs/x\n")
    cfg = load_config(path)
    assert cfg.data.train == str(tmp_path / "text" / "train.txt")
    assert cfg.train.out == str(sub / "runs" / "x")


def test_paths_given_with_set_resolve_against_the_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config(None, ["data.train=corpus.txt"])
    assert cfg.data.train == str(tmp_path / "corpus.txt")


def test_float_key_accepts_an_integer():
    assert load_config(None, ["train.lr=1"]).train.lr == 1.0


@pytest.mark.parametrize("override, message", [
    ("model.hiden_size=3", "--set model.hiden_size=3: unknown key 'model.hiden_size' (did you mean model.hidden_size?)"),
    ("modle.cell=gru", "--set modle.cell=gru: unknown section 'modle' (did you mean model?)"),
    ("model.cell=tnh", "model.cell: expected one of tanh, relu, gru, lstm, got 'tnh' (did you mean tanh?)"),
    ("model.hidden_size=0", "model.hidden_size: expected a value >= 1, got 0"),
    ("model.hidden_size=abc", "model.hidden_size: expected int, got 'abc'"),
    ("model.hidden_size=1.5", "model.hidden_size: expected int, got 1.5"),
    ("train.lr=0", "train.lr: expected a value > 0.0, got 0"),
    ("model.dropout_output=1.5", "model.dropout_output: expected a value <= 0.95, got 1.5"),
    ("train.eval_every=often", "train.eval_every: expected a positive integer or 'epoch', got 'often'"),
    ("train.k2=10", "train.k2 (10) must be >= train.k1 (35), or 0 for k2 = k1"),
    ("model.tie_weights=true", None),
    ("model.hidden_size", "--set expects section.key=value, got 'model.hidden_size'"),
    ("hidden_size=3", "--set expects section.key=value, got 'hidden_size=3'"),
    ("data.split=[0.5, 0.6, 0.0]", "data.split: expected three non-negative ratios summing to 1 with train > 0, got [0.5, 0.6, 0.0]"),
    ("train.lr=nan", "train.lr: expected a finite number, got 'nan'"),
    ("train.lr=.inf", "train.lr: expected a finite number, got inf"),
    ("train.clip=yes", "train.clip: expected str, got True"),
])
def test_bad_overrides_name_the_key(override, message):
    if message is None:  # tie_weights with equal default sizes is valid
        assert load_config(None, [override]).model.tie_weights is True
        return
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    assert str(info.value) == message


def test_tie_weights_needs_equal_sizes():
    with pytest.raises(ConfigError, match="model.tie_weights needs model.embedding_size == model.hidden_size, got 32 and 64"):
        load_config(None, ["model.tie_weights=true", "model.embedding_size=32"])


@pytest.mark.parametrize("text, message", [
    ("model:\n\tcell: tanh\n", "invalid YAML (line 2, column 1): found character '\\t' that cannot start any token"),
    ("model:\n  cell: 'tanh\n", "invalid YAML"),
    ("model:\n  cell: tanh\n  cell: gru\n", "duplicate key 'cell' (line 3)"),
    ("- a\n- b\n", "the top level must be a mapping of sections (data, model, train, ...), not a list"),
    ("modl:\n  cell: tanh\n", "unknown section 'modl' (did you mean model?); sections are data, model, train, diagnose, gradcheck, generate"),
    ("model:\n  hidden: 3\n", "unknown key 'model.hidden' (did you mean model.hidden_size?)"),
    ("model: 3\n", "section 'model' must be a mapping of keys, got int"),
    ("train:\n  batch_size: -4\n", "train.batch_size: expected a value >= 1, got -4"),
])
def test_bad_config_files_give_one_line(tmp_path, text, message):
    path = write(tmp_path, text)
    result = run("config", "validate", "--config", path)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("Error: ")
    assert message in lines[0]
    assert "Traceback" not in result.output


def test_missing_and_folder_config(tmp_path):
    result = run("config", "validate", "--config", str(tmp_path / "nope.yaml"))
    assert (result.exit_code, result.output.strip()) == (2, f"Error: config file not found: {tmp_path / 'nope.yaml'}")
    result = run("config", "validate", "--config", str(tmp_path))
    assert (result.exit_code, result.output.strip()) == (2, f"Error: config path is a folder, not a file: {tmp_path}")


def test_empty_config_file_is_the_defaults(tmp_path):
    path = write(tmp_path, "")
    assert load_config(path) == Config()
    result = run("config", "validate", "--config", path)
    assert result.exit_code == 0
    assert result.output == f"OK: {path} is a valid configuration\n"


def test_yaml_is_never_executed(tmp_path):
    path = write(tmp_path, "model: !!python/object/apply:os.system ['echo hacked']\n")
    result = run("config", "validate", "--config", path)
    assert result.exit_code == 2
    assert "hacked" not in result.output


def test_parse_override_values_are_yaml_scalars():
    assert load_config(None, ["train.lr=1e-3"]).train.lr == 1e-3  # PyYAML alone reads '1e-3' as a string
    assert parse_override("model.tie_weights=yes") == (["model", "tie_weights"], True)
    assert parse_override("generate.prime=the cat=dog") == (["generate", "prime"], "the cat=dog")


def test_unknown_option_is_one_line_usage_error():
    result = run("config", "show", "--bogus")
    assert result.exit_code == 2
    assert result.output == "Error: No such option '--bogus'. (see 'cli config show -h')\n"


def test_version_and_help():
    from rnnlm_cli import __version__
    result = run("--version")
    assert result.exit_code == 0 and __version__ in result.output
    for args in (["-h"], ["config", "-h"], ["config", "show", "-h"], ["config", "validate", "-h"]):
        result = run(*args)
        assert result.exit_code == 0
        assert "Example:" in result.output
