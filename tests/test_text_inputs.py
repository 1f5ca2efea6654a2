"""Text that is not text: one rule (corpus.check_text) for every text input. A NUL byte is refused
with file, line and byte offset (UTF-16 without a byte-order mark shows up that way); a UTF-16 or
UTF-32 byte-order mark is refused naming the encoding; a UTF-8 byte-order mark is dropped."""

from __future__ import annotations

import codecs
import json

import pytest
from click.testing import CliRunner

from rnnlm_cli.cli import cli
from rnnlm_cli.data import corpus
from rnnlm_cli.errors import DataError

TEXT = "the dog runs home\nthe cats run home\n" * 10
NUL_TAIL = "(UTF-16 without a byte-order mark, or a binary file?)"


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], prog_name="rnnlm")


def assert_refused(result, message, code=1):
    assert (result.exit_code, result.stderr) == (code, f"Error: {message}\n"), result.output
    assert result.stdout == "" and isinstance(result.exception, SystemExit)


@pytest.mark.parametrize("data,line,offset", [
    (b"the dog\nruns\x00 home\n", 2, 12),
    (b"\x00", 1, 0),
    (codecs.BOM_UTF8 + b"a b\nc\x00", 2, 8),                      # offsets count the file's bytes, BOM included
    ("ab\ncd\n".encode("utf-16-le"), 1, 1),                        # UTF-16 without a byte-order mark
    ("ab\ncd\n".encode("utf-16-be"), 1, 0),
])
def test_nul_bytes_are_refused_with_line_and_offset(tmp_path, data, line, offset):
    p = tmp_path / "c.txt"
    p.write_bytes(data)
    assert_refused(invoke("preprocess", "--train", p, "--out", tmp_path / "out"),
                   f"{p}: NUL byte at line {line}, byte offset {offset}: not UTF-8 text {NUL_TAIL}")
    assert not (tmp_path / "out").exists()


def test_a_nul_byte_far_into_a_file_is_found_in_its_piece(tmp_path, monkeypatch):
    monkeypatch.setattr(corpus, "_PIECE", 64)                      # many pieces, some cut inside lines
    body = ("word " * 30 + "\n") * 20
    p = tmp_path / "c.txt"
    p.write_bytes(body.encode() + b"tail \x00\n")
    with pytest.raises(DataError, match=rf"NUL byte at line 21, byte offset {len(body) + 5}: "):
        list(corpus._pieces(str(p), "strict", corpus.no_progress(), corpus.hashlib.sha256()))


@pytest.mark.parametrize("encoding,name,tool", [("utf-16", "UTF-16 (little-endian)", "UTF-16"),
                                                 ("utf-16-be", "UTF-16 (big-endian)", "UTF-16"),
                                                 ("utf-32", "UTF-32 (little-endian)", "UTF-32"),
                                                 ("utf-32-be", "UTF-32 (big-endian)", "UTF-32")])
def test_utf16_and_utf32_with_a_byte_order_mark_are_refused_by_name(tmp_path, encoding, name, tool):
    p = tmp_path / "c.txt"
    data = TEXT.encode(encoding)
    if encoding.endswith("-be"):
        data = (codecs.BOM_UTF16_BE if "16" in encoding else codecs.BOM_UTF32_BE) + data
    p.write_bytes(data)
    assert_refused(invoke("preprocess", "--train", p, "--out", tmp_path / "out"),
                   f"{p}: {name} text (it starts with that byte-order mark); rnnlm reads UTF-8: convert it first, "
                   f"e.g. iconv -f {tool} -t UTF-8")


def test_encoding_errors_replace_does_not_let_a_nul_through(tmp_path):
    p = tmp_path / "c.txt"
    p.write_bytes(b"a b\n\x00\n")
    assert_refused(invoke("preprocess", "--train", p, "--out", tmp_path / "out", "--set", "data.encoding_errors=replace"),
                   f"{p}: NUL byte at line 2, byte offset 4: not UTF-8 text {NUL_TAIL}")


def test_a_utf8_byte_order_mark_is_dropped(tmp_path):
    plain, marked = tmp_path / "plain.txt", tmp_path / "marked.txt"
    plain.write_text(TEXT, encoding="utf-8")
    marked.write_bytes(codecs.BOM_UTF8 + TEXT.encode())
    for src in (plain, marked):
        assert invoke("preprocess", "--train", src, "--out", tmp_path / src.stem, "-q").exit_code == 0
    assert (tmp_path / "plain" / "vocab.txt").read_text() == (tmp_path / "marked" / "vocab.txt").read_text()
    assert corpus.read_text(str(marked)) == TEXT


def test_validation_and_test_files_follow_the_rule(tmp_path):
    train, valid = tmp_path / "train.txt", tmp_path / "valid.txt"
    train.write_text(TEXT, encoding="utf-8")
    valid.write_bytes("the dog\n".encode("utf-16"))
    assert_refused(invoke("preprocess", "--train", train, "--valid", valid, "--out", tmp_path / "out"),
                   f"{valid}: UTF-16 (little-endian) text (it starts with that byte-order mark); rnnlm reads UTF-8: "
                   f"convert it first, e.g. iconv -f UTF-16 -t UTF-8")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("text")
    (root / "train.txt").write_text(TEXT, encoding="utf-8")
    prep = root / "prep"
    assert invoke("preprocess", "--train", root / "train.txt", "--out", prep, "-q").exit_code == 0
    out = root / "run"
    result = invoke("train", "--set", f"data.prepared={prep}", "--out", out, "--max-steps", "2", "-q",
                    "--set", "model.hidden_size=4", "--set", "model.embedding_size=4", "--set", "train.batch_size=2",
                    "--set", "train.k1=4")
    assert result.exit_code == 0, result.output
    return out / "checkpoint.npz"


def test_evaluate_split_file_follows_the_rule(run, tmp_path):
    p = tmp_path / "eval.txt"
    p.write_bytes("the dog runs\n".encode("utf-16-le"))
    assert_refused(invoke("evaluate", "--checkpoint", run, "--split", p),
                   f"{p}: NUL byte at line 1, byte offset 1: not UTF-8 text {NUL_TAIL}")
    p.write_bytes("the dog runs\n".encode("utf-32"))
    assert_refused(invoke("evaluate", "--checkpoint", run, "--split", p),
                   f"{p}: UTF-32 (little-endian) text (it starts with that byte-order mark); rnnlm reads UTF-8: "
                   f"convert it first, e.g. iconv -f UTF-32 -t UTF-8")
    p.write_bytes(codecs.BOM_UTF8 + b"the dog runs home\n")
    with_bom = invoke("evaluate", "--checkpoint", run, "--split", p, "--format", "json")
    p.write_bytes(b"the dog runs home\n")
    without = invoke("evaluate", "--checkpoint", run, "--split", p, "--format", "json")
    assert with_bom.exit_code == 0 and json.loads(with_bom.stdout) == json.loads(without.stdout)


def test_probe_items_follow_the_rule(run, tmp_path):
    item = json.dumps({"prefix": "the dog", "verb": "runs", "wrong": "run", "distance": 1, "plural": False})
    p = tmp_path / "items.jsonl"
    p.write_bytes((item + "\n").encode("utf-16"))
    assert_refused(invoke("probe", "--checkpoint", run, "--data", p),
                   f"{p}: UTF-16 (little-endian) text (it starts with that byte-order mark); rnnlm reads UTF-8: "
                   f"convert it first, e.g. iconv -f UTF-16 -t UTF-8")
    p.write_bytes((item + "\n" + item + "\x00\n").encode())
    assert_refused(invoke("probe", "--checkpoint", run, "--data", p),
                   f"{p}: NUL byte at line 2, byte offset {2 * len(item) + 1}: not UTF-8 text {NUL_TAIL}")
    p.write_bytes((item + "\n").encode() + b"\xff\n")
    assert_refused(invoke("probe", "--checkpoint", run, "--data", p),
                   f"{p}: invalid UTF-8 at line 2, byte offset {len(item) + 1}")


def test_config_files_that_are_not_text_are_refused(tmp_path):
    """Config files are the configuration's to read; the promise holds there too: one line, exit 2."""
    for data in ("model:\n  cell: gru\n".encode("utf-16"), "model:\n  cell: gru\n".encode("utf-16-le"),
                 b"model:\n  cell: tanh\x00\n"):
        p = tmp_path / "c.yaml"
        p.write_bytes(data)
        result = invoke("config", "validate", "--config", p)
        assert result.exit_code == 2 and result.stderr.startswith(f"Error: {p}: ") and result.stderr.count("\n") == 1
