"""Fuzzing: random configs, --set strings and corpora either work or end in one clean error.

Every example must either succeed or raise RnnlmError (library) / end with exactly one
`Error: ...` line and exit code 1 or 2 (CLI); never a traceback or another exception type.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import fields

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from rnnlm_cli.cli import cli
from rnnlm_cli.config import SECTIONS, build_config, load_config, parse_override, to_yaml
from rnnlm_cli.errors import ConfigError, RnnlmError

KEYS = [(s, f.name) for s, cls in SECTIONS.items() for f in fields(cls)]
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_counter = itertools.count()


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


def fresh(scratch, suffix=""):
    return scratch / f"f{next(_counter)}{suffix}"


def assert_clean_failure(result, codes=(1, 2)):
    """A CLI failure: one 'Error:' line on stderr, nothing on stdout, a SystemExit with code 1 or 2."""
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code in codes, result.output
    assert result.stdout == ""
    assert result.stderr.startswith("Error: ") and result.stderr.endswith("\n"), result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.output


def assert_round_trips(cfg):
    """A valid config written as YAML (`rnnlm config show`) reads back as the same config."""
    assert build_config(yaml.safe_load(to_yaml(cfg))) == cfg


# --------------------------------------------------------------------------- values that YAML can hold

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-2 ** 70, max_value=2 ** 70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.sampled_from(["tanh", "lstm", "epoch", "word", "char", "norm", "adam", "1e-3", "0x1F", ".inf", "~", ""]),
)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                      max_leaves=8)
section_names = st.one_of(st.sampled_from(list(SECTIONS)), st.text(max_size=8))


@st.composite
def config_docs(draw):
    """Mostly real section/key names with random values, sometimes random names or shapes."""
    doc = {}
    for _ in range(draw(st.integers(0, 4))):
        section = draw(section_names)
        if draw(st.integers(0, 9)) == 0:
            doc[section] = draw(values)        # a section that is not a mapping
            continue
        keys = [k for s, k in KEYS if s == section] or ["x"]
        body = {}
        for _ in range(draw(st.integers(0, 4))):
            key = draw(st.one_of(st.sampled_from(keys), st.text(max_size=10)))
            body[key] = draw(values)
        doc[section] = body
    return doc


@FAST
@given(doc=config_docs())
def test_random_config_documents(scratch, doc):
    path = fresh(scratch, ".yaml")
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    try:
        cfg = load_config(str(path))
    except RnnlmError:
        return
    assert_round_trips(cfg)


@FAST
@given(text=st.one_of(st.text(max_size=200),
                      st.lists(st.sampled_from(["model:", "  cell: gru", "\t", "train:", "  lr: 1e-3", " - a",
                                                "'", '"', "&a", "*a", "<<: *a", "!!python/object:x", "!!int z",
                                                "? [a]", ": b", "{", "}", "[", "---", "...", "%TAG", "\x00", "#"]),
                               max_size=10).map("\n".join)))
def test_random_yaml_text(scratch, text):
    path = fresh(scratch, ".yaml")
    path.write_text(text, encoding="utf-8")
    try:
        load_config(str(path))
    except RnnlmError:
        pass
    result = CliRunner().invoke(cli, ["config", "validate", "--config", str(path)])
    if result.exit_code != 0:
        assert_clean_failure(result, codes=(2,))


@FAST
@given(raw=st.binary(max_size=200))
def test_random_config_bytes(scratch, raw):
    path = fresh(scratch, ".yaml")
    path.write_bytes(raw)
    result = CliRunner().invoke(cli, ["config", "validate", "--config", str(path)])
    if result.exit_code != 0:
        assert_clean_failure(result, codes=(2,))


# --------------------------------------------------------------------------- --set

set_values = st.one_of(st.text(max_size=20), st.sampled_from(
    ["", "0", "-1", "1e400", ".nan", "[1, 2", "[0.5, 0.5, 0]", "{a: 1}", "!!int x", "!!float y", "!!timestamp z",
     "!!python/object/apply:os.system ['true']", "&a [*a]", "*x", "null", "~", "yes", "2" * 30, "epoch",
     "tanh", "'quoted'", "\x00", "a\nb"]))


@FAST
@given(text=st.one_of(
    st.text(max_size=40),
    st.builds(lambda k, v: f"{k[0]}.{k[1]}={v}", st.sampled_from(KEYS), set_values),
    st.builds(lambda s, k, v: f"{s}.{k}={v}", section_names, st.text(max_size=8), set_values),
))
def test_random_set_strings(text):
    try:
        parse_override(text)
    except ConfigError:
        pass
    try:
        cfg = load_config(None, [text])
    except RnnlmError:
        pass
    else:
        assert_round_trips(cfg)
    assume("\x00" not in text)  # argv cannot carry NUL; CliRunner passes it through, a shell never would
    result = CliRunner().invoke(cli, ["config", "show", "--format", "json", "--set", text])
    if result.exit_code != 0:
        assert_clean_failure(result, codes=(2,))


# --------------------------------------------------------------------------- preprocess

options = st.sampled_from([[], ["--level", "char"], ["--set", "data.encoding_errors=replace"],
                           ["--level", "char", "--set", "data.newline_symbol=false"],
                           ["--set", "data.eos=false"], ["--set", "data.min_count=2"], ["--set", "data.vocab_size=2"],
                           ["--set", "data.split=[0.5, 0.5, 0.0]"], ["--set", "data.lowercase=true"]])


def preprocess(scratch, content, opts):
    path = fresh(scratch, ".txt")
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8", newline="")
    out = fresh(scratch)
    result = CliRunner().invoke(cli, ["preprocess", "--train", str(path), "--out", str(out), "-q",
                                      "--format", "json", *opts])
    if result.exit_code == 0:
        assert (out / "meta.json").is_file()
    else:
        assert_clean_failure(result)
        assert not out.exists()       # nothing half-written
        assert not [n for n in os.listdir(scratch) if ".tmp-" in n]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.text(max_size=300), opts=options)
def test_random_unicode_corpus(scratch, text, opts):
    preprocess(scratch, text, opts)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=st.one_of(st.binary(max_size=300),
                     st.lists(st.sampled_from([b"a ", b"b\n", b"\r\n", b"\r", b"\xef\xbb\xbf", b"\xe2\x82",
                                               b"\xac", b"\xff", b"\x00", b"\xc3\xa9", b" ", b"\n"]),
                              max_size=40).map(b"".join)),
       opts=options)
def test_random_bytes_corpus(scratch, raw, opts):
    preprocess(scratch, raw, opts)
