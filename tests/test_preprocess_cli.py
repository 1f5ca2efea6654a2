"""`rnnlm preprocess`: options, output, and one exact error line per mistake."""

from __future__ import annotations

import json
import os

import pytest
from click.testing import CliRunner

from rnnlm_cli.cli import cli


def invoke(*args):
    return CliRunner().invoke(cli, list(map(str, args)), prog_name="rnnlm")


def assert_error(result, message, code):
    assert result.exit_code == code, result.output
    assert result.stderr == f"Error: {message}\n"
    assert result.stdout == ""
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)


def test_help():
    result = invoke("preprocess", "-h")
    assert result.exit_code == 0
    assert result.stdout.startswith("Usage: rnnlm preprocess [OPTIONS]\n\n  Tokenise a corpus, build the vocabulary")
    assert "  Example:\n    rnnlm preprocess --config configs/tiny.yaml\n" in result.stdout
    for option in ("--config", "--set", "--train", "--valid", "--test", "--level", "--out", "--force",
                   "--quiet", "--format"):
        assert option in result.stdout


def test_table_output(tmp_path, tiny_word_corpus):
    out = tmp_path / "prep"
    c = tiny_word_corpus
    result = invoke("preprocess", "--train", c["train"], "--valid", c["valid"], "--test", c["test"], "--out", out)
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "vocabulary  7 (word level, uint8)\n"
        "split         tokens      OOV\n"
        "train             12    0.00%\n"
        "valid              4    0.00%\n"
        "test               4   25.00%\n"
        f"output      {out}\n")
    assert result.stderr.startswith("preprocessed 0.0 MB in ")


def test_json_output_quiet(tmp_path, tiny_char_corpus):
    out = tmp_path / "prep"
    result = invoke("preprocess", "--train", tiny_char_corpus, "--level", "char", "--set", "data.split=[0.9,0.1,0.0]",
                    "--out", out, "--format", "json", "--quiet")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    meta = json.loads(result.stdout)
    assert meta == json.loads((out / "meta.json").read_text())
    assert meta["level"] == "char" and meta["tokens"]["test"] == 0 and meta["config"]["split"] == [0.9, 0.1, 0.0]


def test_config_file_and_relative_overrides(tmp_path, tiny_word_corpus, monkeypatch):
    (tmp_path / "cfg").mkdir()
    config = tmp_path / "cfg" / "c.yaml"
    config.write_text("data:\n  train: ../words/train.txt\n  valid: ../words/valid.txt\n  prepared: ../from-config\n"
                      "  lowercase: true\n")
    result = invoke("preprocess", "--config", config, "-q")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "from-config" / "meta.json").is_file()
    # the shortcuts override the config; their paths are relative to the current directory
    monkeypatch.chdir(tmp_path / "words")
    result = invoke("preprocess", "--config", config, "--train", "test.txt", "--out", "here", "-q", "--format", "json")
    assert result.exit_code == 0, result.output
    meta = json.loads(result.stdout)
    assert meta["config"]["train"] == str(tmp_path / "words" / "test.txt")
    assert meta["config"]["valid"] == str(tmp_path / "words" / "valid.txt") and meta["config"]["lowercase"] is True
    assert (tmp_path / "words" / "here" / "meta.json").is_file()


def test_force_replaces(tmp_path, tiny_word_corpus):
    out = tmp_path / "prep"
    args = ("preprocess", "--train", tiny_word_corpus["train"], "--out", out, "-q")
    assert invoke(*args).exit_code == 0
    assert_error(invoke(*args), f"output folder is not empty: {out} (use --force to replace it)", 1)
    result = invoke(*args, "--level", "char", "--force")
    assert result.exit_code == 0, result.output
    assert json.loads((out / "meta.json").read_text())["level"] == "char"
    assert sorted(os.listdir(tmp_path)) == ["prep", "words"]


def test_no_training_file_configured(tmp_path):
    result = invoke("preprocess", "--out", tmp_path / "p")
    assert_error(result, "no training file configured: set data.train (or pass --train PATH)", 2)


def test_bad_config_key_is_exit_2(tmp_path):
    assert invoke("preprocess", "--set", "data.levle=char").exit_code == 2


@pytest.mark.parametrize("case", ["missing", "folder", "empty", "whitespace", "newlines", "filtered", "utf8", "valid-missing"])
def test_data_errors(tmp_path, write_file, case):
    good = write_file("good.txt", "a b\n")
    args = ["--train", good]
    if case == "missing":
        args, message = ["--train", tmp_path / "nope.txt"], f"training file not found: {tmp_path / 'nope.txt'}"
    elif case == "folder":
        args, message = ["--train", tmp_path], f"training file is a folder, not a file: {tmp_path}"
    elif case == "empty":
        path = write_file("empty.txt", "")
        args, message = ["--train", path], f"training file is empty: {path}"
    elif case == "whitespace":
        path = write_file("ws.txt", "  \n \t\n")
        args, message = ["--train", path], f"no tokens in the training text of {path} (level=word: only whitespace)"
    elif case == "newlines":
        path = write_file("nl.txt", "\n\r\n\n")
        args = ["--train", path, "--level", "char", "--set", "data.newline_symbol=false"]
        message = (f"no tokens in the training text of {path} "
                   f"(level=char: only newlines, and data.newline_symbol is false)")
    elif case == "filtered":
        args = ["--train", good, "--set", "data.min_count=5"]
        message = "no tokens left after filtering: data.min_count=5 and data.vocab_size=0 map every training token to <unk>"
    elif case == "utf8":
        path = write_file("bad.txt", b"a b\nc \xe9 d\n")
        args = ["--train", good, "--test", path]
        message = (f"{path}: invalid UTF-8 at line 2, byte offset 6 "
                   f"(set data.encoding_errors=replace to substitute U+FFFD)")
    else:
        args, message = ["--train", good, "--valid", tmp_path / "v.txt"], f"validation file not found: {tmp_path / 'v.txt'}"
    result = invoke("preprocess", *args, "--out", tmp_path / "out")
    assert_error(result, message, 1)
    assert not (tmp_path / "out").exists()
    assert not [n for n in os.listdir(tmp_path) if ".tmp-" in n]


def test_replace_decodes_invalid_utf8(tmp_path, write_file):
    path = write_file("bad.txt", b"a b\nc \xe9 d\n")
    result = invoke("preprocess", "--train", path, "--valid", path, "--set", "data.encoding_errors=replace",
                    "--out", tmp_path / "out", "-q", "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["vocab_size"] == 6  # a b c d U+FFFD <eos>


def test_output_path_is_a_file(tmp_path, write_file):
    good = write_file("good.txt", "a b\n")
    other = write_file("other.txt", "c d\n")
    result = invoke("preprocess", "--train", good, "--out", other)
    assert_error(result, f"output path exists and is not a folder: {other}", 1)


def test_output_path_is_the_corpus(tmp_path, write_file):
    good = write_file("good.txt", "a b\n")
    result = invoke("preprocess", "--train", good, "--out", good)
    assert_error(result, f"output folder {good} is also the training file {good}; choose another path", 2)
    assert good.read_text() == "a b\n"


# --------------------------------------------------------------------------- read-only commands never preprocess

def test_diagnose_gradients_reads_prepared_data_and_never_builds_it(tmp_path, tiny_word_corpus, monkeypatch):
    monkeypatch.chdir(tmp_path)
    c, prep = tiny_word_corpus, tmp_path / "prep"
    (tmp_path / "c.yaml").write_text(
        f"data: {{train: {c['train']}, valid: {c['valid']}, test: {c['test']}, prepared: {prep}}}\n"
        "model: {hidden_size: 5, embedding_size: 3}\ndiagnose: {batch_size: 1, steps: 3, truncations: [1]}\n")
    diagnose = ("diagnose-gradients", "--config", "c.yaml", "--format", "json", "--quiet")
    assert_error(invoke(*diagnose), f"prepared-data folder {prep} for data.train={c['train']} does not exist; "
                                    f"diagnose-gradients only reads data: run 'rnnlm preprocess --config c.yaml' first", 1)
    assert not prep.exists()
    assert invoke("preprocess", "--config", "c.yaml", "--quiet").exit_code == 0
    result = invoke(*diagnose)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["models"][0]["data"] == "valid"
    # a changed source makes the folder stale: refused, and the folder is left as it was
    before = {name: (prep / name).read_bytes() for name in os.listdir(prep)}
    c["train"].write_text("the cat sat\nthe dog sat\nthe cat sag\n")
    assert_error(invoke(*diagnose), f"prepared-data folder {prep} for data.train={c['train']} is out of date "
                                    f"(sources changed); diagnose-gradients only reads data: run "
                                    f"'rnnlm preprocess --config c.yaml --force' first", 1)
    assert {name: (prep / name).read_bytes() for name in os.listdir(prep)} == before
