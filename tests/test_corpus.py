"""corpus.py: tokenising, the vocabulary and its <unk> rule, encoding, prepared-data I/O."""

from __future__ import annotations

import json
import os
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnlm_cli.data import corpus
from rnnlm_cli.config import Config, DataConfig, load_config
from rnnlm_cli.data.corpus import EOS, UNK, Vocab, build_vocab, tokenize
from rnnlm_cli.errors import ConfigError, DataError
from rnnlm_cli.progress import NullBar


def data_cfg(tmp_path, **kw) -> DataConfig:
    kw = {k: str(v) if isinstance(v, os.PathLike) else v for k, v in kw.items()}
    kw.setdefault("prepared", str(tmp_path / "prepared"))
    return DataConfig(**kw)


def run(tmp_path, **kw) -> tuple[dict, corpus.Prepared]:
    cfg = data_cfg(tmp_path, **kw)
    meta = corpus.preprocess(cfg)
    return meta, corpus.load_prepared(cfg.prepared)


def decoded(prepared, split):
    return prepared.vocab.decode(prepared.split(split))


# --------------------------------------------------------------------------- tokenising

def test_word_tokens_get_eos_at_every_line_end():
    cfg = DataConfig()
    assert tokenize("a  b\n\nc\td\n", cfg) == ["a", "b", EOS, EOS, "c", "d", EOS]
    assert tokenize("a b\nc", cfg) == ["a", "b", EOS, "c", EOS]
    assert tokenize("a b\nc", cfg, final_eos=False) == ["a", "b", EOS, "c"]
    assert tokenize("", cfg) == []


def test_word_tokens_without_eos_and_lowercased():
    assert tokenize("The CAT\nsat\n", DataConfig(eos=False)) == ["The", "CAT", "sat"]
    assert tokenize("The CAT\nsat\n", DataConfig(lowercase=True)) == ["the", "cat", EOS, "sat", EOS]


def test_char_tokens_keep_or_drop_the_newline():
    assert tokenize("ab\r\nc\n", DataConfig(level="char")) == ["a", "b", "\n", "c", "\n"]
    assert tokenize("ab\nc", DataConfig(level="char")) == ["a", "b", "\n", "c"]
    assert tokenize("ab\nc\n", DataConfig(level="char", newline_symbol=False)) == ["a", "b", "c"]
    assert tokenize("Ab é\n", DataConfig(level="char", lowercase=True)) == ["a", "b", " ", "é", "\n"]


# --------------------------------------------------------------------------- vocabulary

def test_vocab_order_is_count_descending_then_token():
    vocab = build_vocab(Counter({"b": 2, "a": 2, "c": 5, "d": 1}))
    assert vocab.tokens == ["c", "a", "b", "d"]
    assert vocab.counts == [5, 2, 2, 1]
    assert vocab.index == {"c": 0, "a": 1, "b": 2, "d": 3}
    assert vocab.unk_id is None and vocab.eos_id is None


def test_unk_only_when_needed():
    counts = Counter({"a": 3, "b": 2, EOS: 4})
    assert UNK not in build_vocab(counts, other_types={"a", "b"})
    # a valid/test type outside the training types needs <unk>, with count 0
    vocab = build_vocab(counts, other_types={"a", "z"})
    assert vocab.tokens == [EOS, "a", "b", UNK] and vocab.counts == [4, 3, 2, 0]
    assert vocab.unk_id == 3 and vocab.eos_id == 0
    # a literal <unk> in the training text is the same token
    vocab = build_vocab(Counter({"a": 3, UNK: 5}))
    assert vocab.tokens == [UNK, "a"] and vocab.counts == [5, 3]


def test_min_count_and_cap_map_the_rest_to_unk():
    counts = Counter({"a": 5, "b": 4, "c": 2, "d": 1, UNK: 1})
    vocab = build_vocab(counts, min_count=2)
    assert vocab.tokens == ["a", "b", UNK, "c"] and vocab.counts == [5, 4, 2, 2]  # "<" sorts before "c"
    vocab = build_vocab(counts, vocab_size=3)  # the cap counts <unk>
    assert vocab.tokens == ["a", UNK, "b"] and vocab.counts == [5, 4, 4]
    # a cap that exactly fits every type needs no <unk>
    assert build_vocab(Counter({"a": 2, "b": 1}), vocab_size=2).tokens == ["a", "b"]
    assert build_vocab(Counter({"a": 3, "b": 1, "c": 1}), vocab_size=2).tokens == ["a", UNK]


def test_nothing_left_after_filtering():
    with pytest.raises(DataError, match="^no tokens left after filtering: data.min_count=9"):
        build_vocab(Counter({"a": 2, EOS: 5}), min_count=9)


def test_vocab_txt_round_trips_awkward_tokens(tmp_path):
    tokens = ["\t", "\n", "\r", "\\", "\\n", "a\tb", " ", "\u2028", "\x85", "\x0c", "é", "<unk>", "\\\\t"]
    vocab = Vocab(tokens, range(len(tokens), 0, -1))
    path = tmp_path / "vocab.txt"
    vocab.save(str(path))
    lines = path.read_bytes().split(b"\n")
    assert len(lines) == len(tokens) + 1 and lines[-1] == b""
    assert lines[0] == b"\\t\t13" and lines[3] == b"\\\\\t10"
    loaded = Vocab.load(str(path))
    assert loaded == vocab and loaded.tokens == tokens and loaded.unk_id == 11


def test_vocab_load_rejects_a_malformed_line(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("a\t3\nb 2\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"vocab.txt, line 2: expected token<TAB>count, got 'b 2'"):
        Vocab.load(str(path))


def test_encode_and_decode():
    vocab = Vocab(["a", UNK, "b"], [3, 2, 1])
    ids = vocab.encode(["b", "zzz", "a"])
    assert ids.dtype == np.uint8 and ids.tolist() == [2, 1, 0]
    assert vocab.decode(ids) == ["b", UNK, "a"]
    with pytest.raises(DataError, match="not in the vocabulary, which has no <unk>"):
        Vocab(["a"], [1]).encode(["b"])


def test_smallest_dtype_boundaries():
    assert corpus.smallest_dtype(256) == np.uint8
    assert corpus.smallest_dtype(257) == np.uint16
    assert corpus.smallest_dtype(65536) == np.uint16
    assert corpus.smallest_dtype(65537) == np.uint32


# --------------------------------------------------------------------------- preprocess

def test_word_corpus_from_separate_files(tmp_path, tiny_word_corpus):
    meta, prep = run(tmp_path, **tiny_word_corpus)
    assert prep.vocab.tokens == [EOS, "the", "cat", "sat", "dog", "ran", UNK]
    assert prep.vocab.counts == [3, 3, 2, 2, 1, 1, 0]
    assert decoded(prep, "train") == tokenize(tiny_word_corpus["train"].read_text(), DataConfig())
    assert decoded(prep, "test") == ["the", UNK, "sat", EOS]
    assert meta["tokens"] == {"train": 12, "valid": 4, "test": 4}
    assert meta["oov_rate"] == {"train": 0.0, "valid": 0.0, "test": 0.25}
    assert meta["special"] == {"unk": 6, "eos": 0}


def test_meta_fields(tmp_path, tiny_word_corpus):
    meta, prep = run(tmp_path, **tiny_word_corpus)
    folder = tmp_path / "prepared"
    assert sorted(os.listdir(folder)) == ["config.yaml", "meta.json", "test.npy", "train.npy", "valid.npy", "vocab.txt"]
    assert json.loads((folder / "meta.json").read_text()) == meta == prep.meta
    assert meta["format_version"] == corpus.FORMAT_VERSION and meta["level"] == "word"
    assert meta["vocab_size"] == 7 and meta["dtype"] == "uint8" and meta["split_mode"] == "files"
    src = meta["sources"][0]
    assert src["path"] == str(tiny_word_corpus["train"]) and src["bytes"] == 36 and src["splits"] == ["train"]
    assert src["sha256"] == corpus.file_sha256(str(tiny_word_corpus["train"]))
    assert meta["config"]["train"] == str(tiny_word_corpus["train"]) and meta["config"]["split"] == [0.9, 0.05, 0.05]
    saved = load_config(str(folder / "config.yaml"))
    assert saved.data.train == str(tiny_word_corpus["train"])


def test_relative_paths_are_recorded_absolute(tmp_path, tiny_word_corpus, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = Config(data=DataConfig(train="words/train.txt", valid="words/valid.txt", prepared="out/prep"))
    meta = corpus.preprocess(cfg.data, cfg)
    assert meta["config"]["train"] == str(tiny_word_corpus["train"])
    assert meta["config"]["prepared"] == str(tmp_path / "out" / "prep")
    assert meta["sources"][1]["path"] == str(tiny_word_corpus["valid"])
    saved = load_config(str(tmp_path / "out" / "prep" / "config.yaml"))
    assert saved.data == corpus._absolute(cfg.data)
    assert corpus.is_current(meta, cfg.data) and corpus.is_current(meta, saved.data)


def test_missing_split_is_an_empty_array(tmp_path, tiny_word_corpus):
    meta, prep = run(tmp_path, train=tiny_word_corpus["train"], valid=tiny_word_corpus["valid"])
    assert meta["tokens"]["test"] == 0 and meta["oov_rate"]["test"] is None
    test = prep.split("test")
    assert test.shape == (0,) and test.dtype == np.uint8


def test_split_arrays_are_read_only_memmaps(tmp_path, tiny_word_corpus):
    _, prep = run(tmp_path, **tiny_word_corpus)
    train = prep.split("train")
    assert isinstance(train, np.memmap) and not train.flags.writeable
    with pytest.raises(ValueError):
        train[0] = 1
    with pytest.raises(ValueError, match="unknown split"):
        prep.split("dev")


def test_eos_off_lowercase_min_count_cap(tmp_path, write_file):
    train = write_file("t.txt", "A a a B b c\nC d\n")
    meta, prep = run(tmp_path, train=train, valid=write_file("v.txt", "a\n"), eos=False, lowercase=True, min_count=2)
    assert prep.vocab.tokens == ["a", "b", "c", UNK] and prep.vocab.counts == [3, 2, 2, 1]
    assert meta["special"] == {"unk": 3, "eos": None}
    assert decoded(prep, "train") == ["a", "a", "a", "b", "b", "c", "c", UNK]
    assert meta["oov_rate"]["train"] == 1 / 8
    meta, prep = run(tmp_path / "cap", train=train, valid=write_file("v.txt", "a\n"), lowercase=True, vocab_size=3)
    assert prep.vocab.tokens == [UNK, "a", EOS] and prep.vocab.counts == [5, 3, 2]


def test_literal_unk_is_not_oov(tmp_path, write_file):
    meta, prep = run(tmp_path, train=write_file("t.txt", "a <unk> b\n"), valid=write_file("v.txt", "<unk> a\n"))
    assert UNK in prep.vocab and meta["oov_rate"] == {"train": 0.0, "valid": 0.0, "test": None}


def test_char_corpus_split_by_ratios(tmp_path, tiny_char_corpus):
    text = tiny_char_corpus.read_text()
    meta, prep = run(tmp_path, train=tiny_char_corpus, level="char", split=[0.5, 0.25, 0.25])
    n = len(text)
    assert meta["tokens"] == {"train": n // 2, "valid": int(n * 0.75) - n // 2, "test": n - int(n * 0.75)}
    assert "".join(decoded(prep, "train") + decoded(prep, "valid") + decoded(prep, "test")) == \
        "".join(t if t in prep.vocab else UNK for t in text)
    assert set(prep.vocab.tokens) - {UNK} == set(text[:n // 2])
    assert meta["split_mode"] == "ratios" and meta["sources"][0]["splits"] == ["train", "valid", "test"]


def test_char_ratio_without_test_gives_the_rest_to_valid(tmp_path, tiny_char_corpus):
    meta, prep = run(tmp_path, train=tiny_char_corpus, level="char", split=[0.9, 0.1, 0.0], newline_symbol=False)
    text = tiny_char_corpus.read_text().replace("\n", "")
    assert meta["tokens"] == {"train": int(len(text) * 0.9), "valid": len(text) - int(len(text) * 0.9), "test": 0}
    assert "\n" not in prep.vocab


@pytest.mark.parametrize("types, dtype", [(256, "uint8"), (257, "uint16"), (65537, "uint32")])
def test_dtype_is_the_smallest_that_fits(tmp_path, write_file, types, dtype):
    train = write_file("t.txt", "\n".join(f"w{i}" for i in range(types)) + "\n")
    meta, prep = run(tmp_path, train=train, valid=train, eos=False)
    assert meta["vocab_size"] == types and meta["dtype"] == dtype
    assert prep.split("train").dtype == np.dtype(dtype) and int(prep.split("train").max()) == types - 1


def test_long_lines_stream_in_pieces(tmp_path, write_file, monkeypatch):
    text = "ab cé€𝄞 " * 40 + "\n" + "x" * 50 + "\n" + "𝄞" * 9
    path = write_file("t.txt", text)
    monkeypatch.setattr(corpus, "_PIECE", 7)
    for cfg in (dict(level="word"), dict(level="char")):
        meta, prep = run(tmp_path / cfg["level"], train=path, valid=path, **cfg)
        expected = tokenize(text, DataConfig(**cfg))
        assert decoded(prep, "train") == expected and decoded(prep, "valid") == expected


@settings(max_examples=60, deadline=None)
@given(text=st.text(alphabet=st.sampled_from("aB é€𝄞\n\r\t\x85\u2028"), min_size=1, max_size=60),
       piece=st.integers(4, 9), level=st.sampled_from(["word", "char"]), flags=st.tuples(st.booleans(), st.booleans()))
def test_streaming_matches_tokenize(tmp_path_factory, text, piece, level, flags):
    """Reading a file in small pieces gives the tokens of the whole text."""
    path = tmp_path_factory.mktemp("stream") / "t.txt"
    path.write_text(text, encoding="utf-8", newline="")
    cfg = DataConfig(level=level, lowercase=flags[0], eos=flags[1], newline_symbol=flags[1])
    old, corpus._PIECE = corpus._PIECE, piece
    try:
        got = [t for toks in corpus._file_tokens(str(path), cfg, NullBar(), corpus.hashlib.sha256()) for t in toks]
    finally:
        corpus._PIECE = old
    assert got == tokenize(text, cfg)


def test_byte_order_mark_is_dropped(tmp_path, write_file):
    _, prep = run(tmp_path, train=write_file("t.txt", b"\xef\xbb\xbfab\n"), level="char", split=[1.0, 0.0, 0.0])
    assert decoded(prep, "train") == ["a", "b", "\n"]


def test_invalid_utf8_names_file_line_and_byte(tmp_path, write_file):
    bad = write_file("t.txt", b"ok line\nsecond \xff line\n")
    with pytest.raises(DataError) as err:
        run(tmp_path, train=bad)
    assert str(err.value) == (f"{bad}: invalid UTF-8 at line 2, byte offset 15 "
                              f"(set data.encoding_errors=replace to substitute U+FFFD)")
    _, prep = run(tmp_path, train=bad, encoding_errors="replace")
    assert "\ufffd" in prep.vocab


def test_invalid_utf8_position_across_pieces(tmp_path, write_file, monkeypatch):
    monkeypatch.setattr(corpus, "_PIECE", 4)
    bad = write_file("t.txt", "a\n".encode() + "é" .encode() * 5 + b"\xff ok\n")
    with pytest.raises(DataError, match=r"invalid UTF-8 at line 2, byte offset 12 "):
        run(tmp_path, train=bad)
    cut = write_file("c.txt", b"ab\n\xe2\x82")  # the file ends inside a character
    with pytest.raises(DataError, match=r"invalid UTF-8 at line 2, byte offset 3 "):
        run(tmp_path, train=cut)


def test_errors_before_any_work(tmp_path, write_file):
    with pytest.raises(ConfigError, match=r"^no training file configured: set data.train \(or pass --train PATH\)$"):
        corpus.preprocess(data_cfg(tmp_path))
    with pytest.raises(DataError, match="^training file not found: "):
        run(tmp_path, train=tmp_path / "nope.txt")
    with pytest.raises(DataError, match="^validation file is a folder, not a file: "):
        run(tmp_path, train=write_file("t.txt", "a\n"), valid=tmp_path)
    with pytest.raises(DataError, match="^test file is empty: "):
        run(tmp_path, train=write_file("t.txt", "a\n"), test=write_file("e.txt", ""))
    with pytest.raises(DataError, match=r"^no tokens in the training text of .*w.txt \(level=word: only whitespace\)$"):
        run(tmp_path, train=write_file("w.txt", "  \n\t\n"))
    assert not (tmp_path / "prepared").exists()


# --------------------------------------------------------------------------- atomic output

def leftovers(parent):
    return [n for n in os.listdir(parent) if ".tmp-" in n or ".old-" in n]


def test_failure_midway_leaves_nothing(tmp_path, tiny_word_corpus, write_file):
    bad = write_file("bad.txt", b"fine\n\xc3(\n")
    out = tmp_path / "deep" / "er" / "prepared"
    with pytest.raises(DataError, match="invalid UTF-8 at line 2, byte offset 5"):
        corpus.preprocess(DataConfig(train=str(tiny_word_corpus["train"]), test=str(bad), prepared=str(out)))
    assert not (tmp_path / "deep").exists()


def test_failure_in_encoding_pass_leaves_no_temp_folder(tmp_path, tiny_word_corpus, monkeypatch):
    def boom(*args, **kw):
        raise DataError("boom")

    monkeypatch.setattr(corpus, "_encode", boom)
    with pytest.raises(DataError, match="boom"):
        run(tmp_path, **tiny_word_corpus)
    assert not (tmp_path / "prepared").exists() and leftovers(tmp_path) == []


def test_source_changed_between_passes(tmp_path, tiny_word_corpus, monkeypatch):
    real = corpus._count

    def count_then_edit(sources, *args):
        counts = real(sources, *args)
        with open(tiny_word_corpus["train"], "a", encoding="utf-8") as fh:
            fh.write("new words\n")
        return counts

    monkeypatch.setattr(corpus, "_count", count_then_edit)
    with pytest.raises(DataError, match=f"^{tiny_word_corpus['train']} changed while it was being preprocessed$"):
        run(tmp_path, **tiny_word_corpus)
    assert not (tmp_path / "prepared").exists() and leftovers(tmp_path) == []


def test_non_empty_output_needs_force(tmp_path, tiny_word_corpus, write_file):
    out = tmp_path / "prepared"
    out.mkdir()
    run(tmp_path, **tiny_word_corpus)  # an empty folder is fine
    with pytest.raises(DataError, match=f"^output folder is not empty: {out} \\(use --force to replace it\\)$"):
        run(tmp_path, **tiny_word_corpus)
    cfg = data_cfg(tmp_path, train=tiny_word_corpus["train"], level="char")
    (out / "extra.txt").write_text("x")        # not the tool's: --force refuses rather than delete it
    with pytest.raises(ConfigError, match=f"^prepared-data folder {out} also holds files that preprocess did not "
                                          f"write \\(extra.txt\\); rebuilding it would delete them"):
        corpus.preprocess(cfg, force=True)
    assert (out / "extra.txt").read_text() == "x" and corpus.load_prepared(str(out)).meta["level"] == "word"
    (out / "extra.txt").unlink()
    meta = corpus.preprocess(cfg, force=True)
    assert meta["level"] == "char" and leftovers(tmp_path) == []


def test_failed_forced_run_keeps_the_old_folder(tmp_path, tiny_word_corpus, write_file):
    meta, _ = run(tmp_path, **tiny_word_corpus)
    bad = write_file("bad.txt", b"\xff\n")
    with pytest.raises(DataError):
        corpus.preprocess(data_cfg(tmp_path, train=tiny_word_corpus["train"], test=bad), force=True)
    assert corpus.load_prepared(str(tmp_path / "prepared")).meta == meta and leftovers(tmp_path) == []


def test_output_path_that_is_a_file(tmp_path, tiny_word_corpus, write_file):
    out = write_file("out", "x")
    with pytest.raises(DataError, match="^output path exists and is not a folder: "):
        corpus.preprocess(data_cfg(tmp_path, train=tiny_word_corpus["train"], prepared=out), force=True)


# --------------------------------------------------------------------------- loading and staleness

def test_load_prepared_errors(tmp_path, tiny_word_corpus):
    folder = tmp_path / "prepared"
    with pytest.raises(DataError, match=f"^prepared-data folder not found: {folder} "):
        corpus.load_prepared(str(folder))
    run(tmp_path, **tiny_word_corpus)
    (folder / "valid.npy").unlink()
    with pytest.raises(DataError, match=f"^prepared-data folder {folder} has no valid.npy "):
        corpus.load_prepared(str(folder))
    meta = json.loads((folder / "meta.json").read_text())
    meta["format_version"] = 99
    (folder / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match=f"^prepared-data folder {folder} has format_version 99, this rnnlm reads 1"):
        corpus.load_prepared(str(folder))
    (folder / "meta.json").unlink()
    with pytest.raises(DataError, match=f"^prepared-data folder {folder} has no meta.json"):
        corpus.load_prepared(str(folder))


def test_ensure_prepared_builds_reuses_and_rebuilds(tmp_path, tiny_word_corpus, monkeypatch):
    cfg = Config(data=data_cfg(tmp_path, **tiny_word_corpus))
    folder, sources = cfg.data.prepared, ", ".join(str(tiny_word_corpus[s]) for s in ("train", "valid", "test"))
    calls, logs = [], []
    real = corpus.preprocess
    monkeypatch.setattr(corpus, "preprocess", lambda *a, **k: calls.append(1) or real(*a, **k))
    assert corpus.rebuild_reason(cfg.data) == "missing"
    first = corpus.ensure_prepared(cfg, log=logs.append)
    assert len(calls) == 1 and first.meta["tokens"]["train"] == 12
    assert logs == [f"preparing {folder} from {sources} (missing)"]
    assert corpus.ensure_prepared(cfg, log=logs.append).meta == first.meta and len(calls) == 1 and len(logs) == 1
    # a changed data config is stale
    lower = cfg.replace(data={"lowercase": True})
    assert corpus.rebuild_reason(lower.data) == "data settings changed"
    assert corpus.ensure_prepared(lower, log=logs.append).meta["config"]["lowercase"] is True and len(calls) == 2
    assert logs[-1] == f"preparing {folder} from {sources} (data settings changed)"
    # a changed source is stale, even with the same size
    tiny_word_corpus["train"].write_text("the cat sat\nthe dog sat\nthe cat sag\n")
    assert corpus.rebuild_reason(lower.data) == "sources changed"
    assert "sag" in corpus.ensure_prepared(lower, log=logs.append).vocab and len(calls) == 3
    assert logs[-1] == f"preparing {folder} from {sources} (sources changed)" and len(logs) == 3
    # without data.train, the folder is only loaded
    only = lower.replace(data={"train": None, "valid": None, "test": None})
    assert "sag" in corpus.ensure_prepared(only).vocab and len(calls) == 3


def test_ensure_prepared_refuses_an_incomplete_folder(tmp_path, tiny_word_corpus):
    cfg = Config(data=data_cfg(tmp_path, **tiny_word_corpus))
    corpus.ensure_prepared(cfg)
    folder = cfg.data.prepared
    os.unlink(os.path.join(folder, "valid.npy"))
    assert corpus.rebuild_reason(cfg.data) is None          # current: meta.json and sources agree
    with pytest.raises(DataError, match=f"^prepared-data folder {folder} has no valid.npy "):
        corpus.ensure_prepared(cfg)
    assert not os.path.exists(os.path.join(folder, "valid.npy"))


def test_ensure_prepared_never_replaces_foreign_content(tmp_path, tiny_word_corpus):
    cfg = Config(data=data_cfg(tmp_path, **tiny_word_corpus))
    (tmp_path / "prepared").mkdir()
    (tmp_path / "prepared" / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="^output folder is not empty: "):
        corpus.ensure_prepared(cfg)
    only = cfg.replace(data={"train": None, "valid": None, "test": None, "prepared": str(tmp_path / "none")})
    with pytest.raises(DataError, match="^prepared-data folder not found: "):
        corpus.ensure_prepared(only)


# --------------------------------------------------------------------------- reference corpora

def test_penn_treebank_word_level(tmp_path, shared_corpora):
    ptb = shared_corpora / "ptb"
    meta, prep = run(tmp_path, train=ptb / "ptb.train.txt", valid=ptb / "ptb.valid.txt", test=ptb / "ptb.test.txt")
    assert meta["vocab_size"] == 10000 and meta["dtype"] == "uint16"
    assert meta["tokens"] == {"train": 929589, "valid": 73760, "test": 82430}
    assert meta["oov_rate"] == {"train": 0.0, "valid": 0.0, "test": 0.0}
    assert prep.vocab.tokens[:3] == ["the", UNK, EOS]
    assert int(np.count_nonzero(prep.split("train") == prep.vocab.eos_id)) == 42068


def test_tiny_shakespeare_char_level(tmp_path, shared_corpora):
    meta, prep = run(tmp_path, train=shared_corpora / "tinyshakespeare" / "input.txt", level="char",
                     split=[0.9, 0.1, 0.0])
    assert meta["vocab_size"] == 65 and meta["special"] == {"unk": None, "eos": None} and meta["dtype"] == "uint8"
    assert meta["tokens"] == {"train": 1003854, "valid": 111540, "test": 0}
