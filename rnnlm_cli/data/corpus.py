"""Corpus handling: tokenise, build the vocabulary, encode, and read/write prepared data.

Tokenisation (`data.level`)
  word  whitespace-separated tokens (`str.split`), after lowercasing when `data.lowercase`. With
        `data.eos` an `<eos>` token follows every line, the last one too when the file has no final
        newline, and a blank line gives `<eos>` alone (the PTB convention: 42,068 lines, 42,068 `<eos>`).
  char  Unicode code points. "\\r\\n" is read as "\\n"; the newline is a symbol when
        `data.newline_symbol`, else dropped. A last line without a newline gets no newline symbol.
  At both levels a leading UTF-8 byte-order mark is dropped. Text that is not UTF-8 text is
  refused (`check_text`, the one rule for every text input: corpora, evaluate --split FILE,
  probe items): a NUL byte (file, line, byte offset; UTF-16 without a byte-order mark shows up
  so), a UTF-16/UTF-32 byte-order mark (named), invalid UTF-8 (unless data.encoding_errors=replace).

Vocabulary (built from the training split only)
  Ordered by training count, descending, ties by token (code-point order); a token's id is its
  position. `data.min_count` drops rarer types and `data.vocab_size` (counting `<unk>`) keeps the
  most frequent; dropped types map to `<unk>`. A literal `<unk>` in the text is that same token.
  `<unk>` is in the vocabulary only when needed: it occurs in the training text, or min_count or
  the cap removed a training type, or the valid/test text holds a type the training text lacks.
  Its count is the number of training tokens that map to it. (So Penn Treebank, whose text already
  has `<unk>`, gives exactly its 10,000 types, and Tiny Shakespeare gives exactly its 65 characters.)

Splits
  With `data.valid` and/or `data.test` set, each file is one split and `data.split` is ignored.
  With `data.train` alone, the file's tokens are cut contiguously by the ratios `data.split`:
  train = the first floor(N * r_train) tokens, valid the next up to floor(N * (r_train + r_valid)),
  test the rest (all of the rest to valid when r_test is 0).

Prepared folder (`data.prepared`), format_version 1
  vocab.txt    one `token<TAB>count` line per id; `\\`, tab, newline and CR in a token are written
               as `\\\\`, `\\t`, `\\n` and `\\r`.
  train.npy, valid.npy, test.npy
               token ids, 1-D, the smallest unsigned dtype that holds the vocabulary (uint8 up to
               256 types, uint16 up to 65,536, else uint32). All three are always written; a split
               with no text is an empty array (meta `tokens` 0, `oov_rate` null).
  meta.json    format ("rnnlm prepared data": the marker by which the tool knows its own folders),
               format_version, level, vocab_size, dtype, tokens and oov_rate per split (the fraction
               of the split's tokens whose type is not in the vocabulary, i.e. mapped to `<unk>`;
               a literal `<unk>` is not counted), special ids (unk, eos: int or null), sources
               (path, bytes, sha256, splits), split_mode (files or ratios), config (the data section).
  config.yaml  the resolved configuration used.
  The folder is written as a temporary sibling (`.NAME.tmp-PID-*`) and renamed into place, so it
  is whole or absent (the files in it are fsync'ed first: vocab.txt, meta.json and config.yaml
  through fileio.atomic_write, the splits with ordinary writes, so a full disk is an error, not a
  SIGBUS). Any failure or interruption removes the temporary folder; one left by a killed process
  is removed by the next preprocess of the same folder. Only a prepared-data folder that holds
  nothing but these files is ever replaced (with --force, or by train when it is out of date);
  a folder with anything else in it is refused, never deleted.

Who builds it: `rnnlm preprocess` (`preprocess`), and `rnnlm train` when data.train is set and
the folder is missing or out of date (`ensure_prepared`, which says so through its log
callback). A folder that is current but incomplete (a file deleted) is refused, naming the
file, never rebuilt behind the user's back. Commands that only read use `rebuild_reason` to
refuse stale data instead of rebuilding it.

Streaming: each input is read in pieces of about 1 MiB that end at a line end (or inside a longer
line, at a character boundary), in a counting pass and an encoding pass written front to back into
.npy files (one more counting pass when one file is cut by ratios), so memory grows
with the vocabulary, not with the corpus.
"""

from __future__ import annotations

import codecs
import contextlib
import dataclasses
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np

from rnnlm_cli.config import Config, DataConfig, to_yaml
from rnnlm_cli.errors import ConfigError, DataError, brief, brief_path
from rnnlm_cli.fileio import (WriteError, atomic_write_json, atomic_write_text, crash_point, is_temporary,
                             make_folders, remove_folders)
from rnnlm_cli.paths import PREPARED_FILES, PREPARED_MARKER, Out, check_paths, data_inputs, is_prepared_folder, shown
from rnnlm_cli.progress import Bar, ProgressFactory, no_progress
from rnnlm_cli.values import SCHEMA_VERSION

FORMAT_VERSION = 1
UNK = "<unk>"
EOS = "<eos>"
SPLITS = ("train", "valid", "test")
LABELS = {"train": "training", "valid": "validation", "test": "test"}

_PIECE = 1 << 20          # bytes read at once; a piece ends at its last newline (or is cut inside a longer line)
_INF = float("inf")


# --------------------------------------------------------------------------- tokenising

def _piece_tokens(text: str, ends_line: bool, cfg: DataConfig, carry: str = "") -> tuple[Iterable[str], str]:
    """Tokens of a piece of text holding whole lines, plus the word carried to the next piece.

    ends_line: the piece ends at a line end (its last "\n" or the end of the file); otherwise it
    stops inside a long line, and a word it cuts is carried. Returns a list of words or a str of
    characters. Splitting a piece after "\n" gives the same tokens as tokenising it whole.
    """
    if cfg.lowercase:
        text = text.lower()
    if cfg.level == "char":
        text = text.replace("\r\n", "\n")
        return (text if cfg.newline_symbol else text.replace("\n", "")), ""
    text = carry + text
    unterminated = ends_line and not text.endswith("\n")  # the file's last line has no newline
    if cfg.eos:
        text = text.replace("\n", f" {EOS} ")
    tokens = text.split()
    carry = ""
    if not ends_line and tokens and not text[-1].isspace():
        carry = tokens.pop()  # the last word goes on in the next piece
    if cfg.eos and unterminated:
        tokens.append(EOS)
    return tokens, carry


def tokenize(text: str, cfg: DataConfig, final_eos: bool = True) -> list[str]:
    """Tokens of a text, as preprocessing reads a file holding it.

    With final_eos=False a last line without a newline gets no `<eos>` (e.g. a generation prime).
    """
    if not text:
        return []
    if text.startswith("\ufeff"):
        text = text[1:]
    if final_eos or text.endswith("\n"):
        return list(_piece_tokens(text, True, cfg)[0])
    tokens, carry = _piece_tokens(text, False, cfg)  # as if the last line went on
    return list(tokens) + ([carry] if carry else [])


def _utf8_tail(data: bytes) -> int:
    """Length of an incomplete UTF-8 sequence at the end of `data` (0 when it ends cleanly)."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 != 0x80:  # a lead byte or ASCII
            need = 2 if byte >> 5 == 0b110 else 3 if byte >> 4 == 0b1110 else 4 if byte >> 3 == 0b11110 else 1
            return back if need > back else 0
    return 0


# byte-order marks of encodings that are not UTF-8 (UTF-32 first: its LE mark begins with UTF-16's)
_OTHER_BOMS = ((codecs.BOM_UTF32_LE, "UTF-32 (little-endian)"), (codecs.BOM_UTF32_BE, "UTF-32 (big-endian)"),
               (codecs.BOM_UTF16_LE, "UTF-16 (little-endian)"), (codecs.BOM_UTF16_BE, "UTF-16 (big-endian)"))


def check_text(data: bytes, path: str, start: int = 0, first_line: int = 1) -> None:
    """The one rule for text inputs, applied to raw bytes before decoding (`start`: the file
    offset of data[0]; `first_line`: its line number). Refused with a DataError: a UTF-16 or
    UTF-32 byte-order mark at the start of the file (named), and a NUL byte anywhere (file, line,
    byte offset): valid UTF-8 but never text, and the mark of UTF-16 without a byte-order mark.
    A UTF-8 byte-order mark is fine: the readers drop it."""
    if start == 0:
        for bom, name in _OTHER_BOMS:
            if data.startswith(bom):
                raise DataError(f"{path}: {name} text (it starts with that byte-order mark); rnnlm reads UTF-8: "
                                f"convert it first, e.g. iconv -f {name.split()[0]} -t UTF-8")
    nul = data.find(b"\0")
    if nul >= 0:
        line = first_line + data.count(b"\n", 0, nul)
        raise DataError(f"{path}: NUL byte at line {line}, byte offset {start + nul}: not UTF-8 text "
                        f"(UTF-16 without a byte-order mark, or a binary file?)")


def _decode(data: bytes, path: str, errors: str, start: int, first_line: int, hint: bool = True) -> str:
    """check_text, then UTF-8 decoding; invalid UTF-8 (errors='strict') raises DataError naming
    the file, line and byte offset (and, with `hint`, the data.encoding_errors way out)."""
    check_text(data, path, start, first_line)
    try:
        return data.decode("utf-8", errors)
    except UnicodeDecodeError as exc:
        where = first_line + data.count(b"\n", 0, exc.start)
        raise DataError(f"{path}: invalid UTF-8 at line {where}, byte offset {start + exc.start}"
                        + (" (set data.encoding_errors=replace to substitute U+FFFD)" if hint else "")) from None


def read_text(path: str, errors: str = "strict", label: str = "text", hint: bool = True) -> str:
    """A whole text file as str, by the rule of the corpus readers (check_text, UTF-8, a leading
    UTF-8 byte-order mark dropped); DataError when it cannot be read. `hint`: whether an invalid
    UTF-8 message suggests data.encoding_errors (files that key does not govern say nothing)."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise DataError(f"cannot read {label} file {path}: {exc.strerror or exc}") from None
    check_text(data[:4], path)                           # a wide byte-order mark before the UTF-8 one is dropped
    start = 3 if data.startswith(codecs.BOM_UTF8) else 0
    return _decode(data[start:], path, errors, start, 1, hint)


def _pieces(path: str, errors: str, bar: Bar, digest) -> Iterator[tuple[str, bool]]:
    """Decoded pieces of a file: (text, ends at a line end), about _PIECE bytes each.

    A piece ends just after a newline, or, inside a line longer than _PIECE, at a character
    boundary (never between "\r" and "\n"). Invalid UTF-8 (errors='strict') raises DataError
    naming the file, line and byte offset; so do a NUL byte and a UTF-16/32 byte-order mark
    (check_text).
    """
    offset = 0        # file offset of pending[0]
    line = 1          # line number at pending[0]
    pending = b""     # bytes read but not yet decoded
    partial = False   # the last piece stopped inside a line

    def decode(data: bytes, start: int, first_line: int) -> str:
        return _decode(data, path, errors, start, first_line)

    with open(path, "rb") as fh:
        while True:
            chunk = fh.read(_PIECE)
            if not chunk:
                break
            digest.update(chunk)
            bar.update(len(chunk))
            data = pending + chunk
            start = offset
            if start == 0:
                check_text(data[:4], path)            # a UTF-16/32 byte-order mark, before the UTF-8 one is dropped
            if start == 0 and data.startswith(codecs.BOM_UTF8):
                data, start = data[3:], 3
            cut = data.rfind(b"\n") + 1
            partial = cut == 0
            if partial:  # inside a long line: stop at a character boundary
                cut = len(data) - _utf8_tail(data)
                if data[cut - 1:cut] == b"\r":  # maybe the start of "\r\n"
                    cut -= 1
            body, pending = data[:cut], data[cut:]
            offset = start + cut
            text = decode(body, start, line)
            line += body.count(b"\n")
            if body:
                yield text, not partial
    if pending:  # the last line, without a newline
        yield decode(pending, offset, line), True
    elif partial:  # the file ended exactly where a piece stopped inside its last line
        yield "", True


def _file_tokens(path: str, cfg: DataConfig, bar: Bar, digest) -> Iterator[Iterable[str]]:
    """Tokens of a file, piece by piece: a list of words, or a str of characters."""
    carry = ""
    for text, ends_line in _pieces(path, cfg.encoding_errors, bar, digest):
        tokens, carry = _piece_tokens(text, ends_line, cfg, carry)
        yield tokens


# --------------------------------------------------------------------------- vocabulary

_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_UNESCAPES = {"\\": "\\", "t": "\t", "n": "\n", "r": "\r"}
_ESCAPED = re.compile(r"\\(.)", re.DOTALL)


def smallest_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned integer dtype that holds ids 0 .. vocab_size - 1."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if vocab_size <= int(np.iinfo(dtype).max) + 1:
            return np.dtype(dtype)
    return np.dtype(np.uint64)


class Vocab:
    """Tokens and their training counts; a token's id is its position."""

    def __init__(self, tokens: Iterable[str], counts: Iterable[int]):
        self.tokens: list[str] = list(tokens)
        self.counts: list[int] = [int(c) for c in counts]
        if len(self.tokens) != len(self.counts):
            raise ValueError("tokens and counts differ in length")
        self.index: dict[str, int] = {t: i for i, t in enumerate(self.tokens)}
        if len(self.index) != len(self.tokens):
            raise ValueError("duplicate token in vocabulary")
        self.unk_id: int | None = self.index.get(UNK)
        self.eos_id: int | None = self.index.get(EOS)

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: str) -> bool:
        return token in self.index

    def __eq__(self, other) -> bool:
        return isinstance(other, Vocab) and self.tokens == other.tokens and self.counts == other.counts

    @property
    def dtype(self) -> np.dtype:
        return smallest_dtype(len(self))

    def id(self, token: str) -> int:
        """The token's id; `<unk>`'s for an unknown token (DataError when there is no `<unk>`)."""
        found = self.index.get(token, self.unk_id)
        if found is None:
            raise DataError(f"token {token!r} is not in the vocabulary, which has no {UNK}")
        return found

    def encode(self, tokens: Iterable[str]) -> np.ndarray:
        """Ids of the tokens, unknown ones as `<unk>`.  # (N,)"""
        return np.array([self.id(t) for t in tokens], dtype=self.dtype)

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.tokens[int(i)] for i in ids]

    def save(self, path: str) -> None:
        atomic_write_text(path, "".join(f"{t.translate(_ESCAPES)}\t{c}\n" for t, c in zip(self.tokens, self.counts)))

    @classmethod
    def load(cls, path: str) -> "Vocab":
        try:
            with open(path, encoding="utf-8", newline="") as fh:
                text = fh.read()
        except FileNotFoundError:
            raise DataError(f"vocabulary file not found: {path}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"cannot read vocabulary {path}: {exc}") from None
        tokens, counts = [], []
        for number, line in enumerate(text.split("\n")[:-1] if text.endswith("\n") else text.split("\n"), 1):
            parts = line.split("\t")
            if len(parts) != 2 or not parts[0] or not parts[1].isdigit():
                raise DataError(f"{path}, line {number}: expected token<TAB>count, got {line!r}")

            def unescape(match, number=number):
                if match.group(1) not in _UNESCAPES:
                    raise DataError(f"{path}, line {number}: unknown escape \\{match.group(1)}")
                return _UNESCAPES[match.group(1)]

            tokens.append(_ESCAPED.sub(unescape, parts[0]))
            counts.append(int(parts[1]))
        try:
            return cls(tokens, counts)
        except ValueError as exc:
            raise DataError(f"{path}: {exc}") from None


def build_vocab(train_counts: Counter, other_types: Iterable[str] = (), vocab_size: int = 0,
                min_count: int = 1) -> Vocab:
    """The vocabulary from training counts (see the module docstring for the `<unk>` rule).

    other_types: the types of the valid/test text; one missing from training needs `<unk>`.
    """
    # keep the frequent types, most frequent first
    kept = sorted(((t, c) for t, c in train_counts.items() if t != UNK and c >= min_count),
                  key=lambda tc: (-tc[1], tc[0]))
    types = len(train_counts) - (UNK in train_counts)
    need_unk = UNK in train_counts or len(kept) < types or any(t not in train_counts for t in other_types)
    if vocab_size and len(kept) + need_unk > vocab_size:
        kept, need_unk = kept[:vocab_size - 1], True
    if not any(t != EOS for t, _ in kept):
        raise DataError(f"no tokens left after filtering: data.min_count={min_count} and "
                        f"data.vocab_size={vocab_size} map every training token to {UNK}")
    # <unk> counts the training tokens that map to it, and sorts by that count
    entries = kept
    if need_unk:
        unk_count = sum(train_counts.values()) - sum(c for _, c in kept)
        entries = sorted(kept + [(UNK, unk_count)], key=lambda tc: (-tc[1], tc[0]))
    return Vocab([t for t, _ in entries], [c for _, c in entries])


# --------------------------------------------------------------------------- progress

def _bar(progress: ProgressFactory, total: int, desc: str):
    """A progress bar counting bytes read, closed when the `with` block ends."""
    return contextlib.closing(progress(total=total, desc=desc, unit="B"))


# --------------------------------------------------------------------------- preprocessing

@dataclass
class _Source:
    path: str
    label: str                                   # "training", "validation", "test"
    ranges: list[tuple[str, int, float]]         # (split, first token, end token) within this file
    bytes: int = 0
    sha256: str = ""


def _route(source: _Source, pos: int, tokens) -> Iterator[tuple[str, object]]:
    """(split, tokens) pieces of the tokens at file positions pos, pos + 1, ..."""
    n = len(tokens)
    for split, start, end in source.ranges:
        if start <= pos and pos + n <= end:
            yield split, tokens
            return
        lo, hi = max(start, pos), min(end, pos + n)
        if lo < hi:
            yield split, tokens[lo - pos:int(hi) - pos]


def _check_input(path: str, label: str) -> None:
    if not os.path.exists(path):
        raise DataError(f"{label} file not found: {path}")
    if os.path.isdir(path):
        raise DataError(f"{label} file is a folder, not a file: {path}")
    if os.path.getsize(path) == 0:
        raise DataError(f"{label} file is empty: {path}")
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise DataError(f"cannot read {label} file {path}: {exc.strerror}") from None


def _sources(cfg: DataConfig) -> tuple[list[_Source], str]:
    """The input files and which splits they feed; split_mode 'files' or 'ratios'."""
    if not cfg.train:
        raise ConfigError("no training file configured: set data.train (or pass --train PATH)")
    named = [(s, getattr(cfg, s)) for s in SPLITS if getattr(cfg, s)]
    for split, path in named:
        _check_input(path, LABELS[split])
    if len(named) > 1:
        return [_Source(path, LABELS[s], [(s, 0, _INF)]) for s, path in named], "files"
    return [_Source(cfg.train, LABELS["train"], [])], "ratios"


def _ratio_ranges(total: int, ratios: list[float]) -> list[tuple[str, int, float]]:
    r_train, r_valid, r_test = ratios
    a = int(total * r_train)
    b = a if r_valid == 0 else total if r_test == 0 else min(total, int(total * (r_train + r_valid)))
    return [("train", 0, a), ("valid", a, b), ("test", b, total)]


def _count(sources: list[_Source], cfg: DataConfig, progress: ProgressFactory) -> dict[str, Counter]:
    """Counting pass: a Counter per split; fills in each source's bytes and sha256."""
    counts = {s: Counter() for s in SPLITS}
    with _bar(progress, sum(os.path.getsize(s.path) for s in sources), "counting") as bar:
        for src in sources:
            digest, pos = hashlib.sha256(), 0
            for tokens in _file_tokens(src.path, cfg, bar, digest):
                for split, piece in _route(src, pos, tokens):
                    counts[split].update(piece)
                pos += len(tokens)
            src.sha256, src.bytes = digest.hexdigest(), os.path.getsize(src.path)
    return counts


def _measure(src: _Source, cfg: DataConfig, progress: ProgressFactory) -> int:
    """Tokens in a file (the pass before cutting one file by ratios)."""
    total = 0
    with _bar(progress, os.path.getsize(src.path), "measuring") as bar:
        for tokens in _file_tokens(src.path, cfg, bar, hashlib.sha256()):
            total += len(tokens)
    return total


class _NpyWriter:
    """A 1-D .npy file of `length` ids written front to back with ordinary writes (a full disk
    or a file-size limit is an OSError here, never a SIGBUS as with a memory map)."""

    def __init__(self, path: str, dtype: np.dtype, length: int):
        self.path, self.dtype, self.length, self.written = path, np.dtype(dtype), length, 0
        self.fh = open(path, "wb")
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": (length,)}
        np.lib.format.write_array_header_1_0(self.fh, header)

    def __len__(self) -> int:
        return self.length

    def write(self, ids: np.ndarray) -> None:
        self.fh.write(np.ascontiguousarray(ids, dtype=self.dtype).tobytes())
        self.written += len(ids)

    def finish(self) -> None:
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.fh.close()

    def close(self) -> None:
        self.fh.close()


def _encode(sources: list[_Source], cfg: DataConfig, lookup: dict[str, int], arrays: dict[str, _NpyWriter],
            progress: ProgressFactory) -> None:
    """Encoding pass: append every token's id to the per-split .npy writers, in order."""
    written = {s: 0 for s in SPLITS}
    get = lookup.__getitem__
    with _bar(progress, sum(s.bytes for s in sources), "encoding") as bar:
        for src in sources:
            digest, pos = hashlib.sha256(), 0
            for tokens in _file_tokens(src.path, cfg, bar, digest):
                for split, piece in _route(src, pos, tokens):
                    lo, hi, out = written[split], written[split] + len(piece), arrays[split]
                    if hi > len(out):
                        raise DataError(f"{src.path} changed while it was being preprocessed")
                    try:
                        ids = np.fromiter(map(get, piece), dtype=out.dtype, count=hi - lo)
                    except KeyError:  # a type the counting pass never saw
                        raise DataError(f"{src.path} changed while it was being preprocessed") from None
                    out.write(ids)
                    written[split] = hi
                pos += len(tokens)
            if digest.hexdigest() != src.sha256:
                raise DataError(f"{src.path} changed while it was being preprocessed")
    if any(written[s] != len(arrays[s]) for s in SPLITS):
        raise DataError("an input file changed while it was being preprocessed")


# --------------------------------------------------------------------------- the output folder

_LEFTOVER = re.compile(r"^\.(?P<name>.+)\.(?:tmp|old)-(?P<pid>\d+)-[^/]*$")


def _own_entries(folder: str) -> tuple[list[str], list[str]]:
    """(the tool's own entries, the others) in a prepared-data folder."""
    own, other = [], []
    for entry in sorted(os.listdir(folder)):
        (own if entry in PREPARED_FILES or is_temporary(entry) else other).append(entry)
    return own, other


def _output_state(folder: str, force: bool) -> None:
    """Refuse an output path that is a file, a non-empty folder without force, and with force
    anything but a prepared-data folder that holds nothing but the tool's own files."""
    if not os.path.lexists(folder):
        return
    if not os.path.isdir(folder):
        raise DataError(f"output path exists and is not a folder: {shown(folder)}")
    if not os.listdir(folder):
        return
    if not force:
        raise DataError(f"output folder is not empty: {shown(folder)} (use --force to replace it)")
    if not is_prepared_folder(folder):
        raise ConfigError(f"{shown(folder)} is not a prepared-data folder written by rnnlm preprocess (it has no "
                          f"meta.json of one), so it is never replaced; choose another output folder")
    _, other = _own_entries(folder)
    if other:
        listed = ", ".join(shown(n) for n in other[:5]) + (f" and {len(other) - 5} more" if len(other) > 5 else "")
        raise ConfigError(f"prepared-data folder {shown(folder)} also holds files that preprocess did not write "
                          f"({listed}); rebuilding it would delete them: move them out or choose another folder")


def _remove_own(folder: str) -> None:
    """Delete a replaced prepared-data folder: only the tool's own files, then the folder (left in
    place when anything else appeared in it meanwhile)."""
    own, _ = _own_entries(folder)
    for entry in own:
        try:
            os.unlink(os.path.join(folder, entry))
        except OSError:
            pass
    try:
        os.rmdir(folder)
    except OSError:
        pass


def _install(tmp: str, folder: str, force: bool) -> None:
    """Rename the finished temporary folder into place (replacing the old one with force);
    `folder` is a real path (no symlink)."""
    _output_state(folder, force)
    try:
        if os.path.isdir(folder) and os.listdir(folder):
            parent, base = os.path.split(tmp)
            old = os.path.join(parent, base.replace(".tmp-", ".old-", 1))
            os.rename(folder, old)
            try:
                os.rename(tmp, folder)
            except OSError:
                os.rename(old, folder)
                raise
            _remove_own(old)
        else:
            os.replace(tmp, folder)
    except OSError as exc:
        raise DataError(f"cannot move the prepared data into {shown(folder)}: {exc.strerror}") from None


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:             # another user's process: alive
        return True
    return True


def remove_leftovers(folder: str, log=None) -> list[str]:
    """Remove the temporary folders that killed preprocess runs left beside `folder`
    (`.NAME.tmp-PID-*`, `.NAME.old-PID-*`) when their process is gone and they hold only the
    tool's own files; says so through log(message). Returns the removed paths."""
    parent, name = os.path.split(os.path.abspath(folder))
    removed = []
    try:
        entries = os.listdir(parent)
    except OSError:
        return removed
    for entry in sorted(entries):
        match = _LEFTOVER.match(entry)
        path = os.path.join(parent, entry)
        if not match or match["name"] != name or os.path.islink(path) or not os.path.isdir(path):
            continue
        if _pid_alive(int(match["pid"])):
            continue
        try:
            _, other = _own_entries(path)
            if other:
                continue
            _remove_own(path)
        except OSError:
            continue
        if not os.path.exists(path):
            removed.append(path)
            if log is not None:
                log(f"removed {shown(path)}, left behind by preprocess process {match['pid']}, "
                    f"which is no longer running")
    return removed


def preprocess(data_cfg: DataConfig, full_cfg: Config | None = None, force: bool = False,
               progress: ProgressFactory | None = None, log=None) -> dict:
    """Tokenise, build the vocabulary, encode, and write the prepared folder `data_cfg.prepared`.

    Returns the meta dict (also written as meta.json). Raises DataError (unreadable or empty
    input, invalid UTF-8, nothing left, non-empty output folder without force, a write that
    fails) or ConfigError (no training file; an output folder that is or holds an input; with
    force, a folder that is not a prepared-data folder or also holds other files). The folder
    appears whole or not at all. Relative paths in data_cfg are relative to the current
    directory; meta.json and config.yaml record them as absolute paths. `progress` makes the
    byte-counting bars of the passes (default: none); log(message) hears of the temporary
    folders of killed runs that were removed.
    """
    progress = progress or no_progress
    # check the inputs and the output before any work
    data_cfg = _absolute(data_cfg)
    sources, mode = _sources(data_cfg)
    folder = data_cfg.prepared
    check_paths(data_inputs(data_cfg, with_prepared=False), [Out("prepared-data folder", folder, "prepared")])
    _output_state(folder, force)

    # counting pass (after measuring a file cut by ratios)
    if mode == "ratios":
        sources[0].ranges = _ratio_ranges(_measure(sources[0], data_cfg, progress), data_cfg.split)
    counts = _count(sources, data_cfg, progress)
    train = counts["train"]
    if not any(t != EOS for t in train):
        why = "only whitespace" if data_cfg.level == "word" else "only newlines, and data.newline_symbol is false"
        raise DataError(f"no tokens in the training text of {data_cfg.train} (level={data_cfg.level}: {why})")
    others = set(counts["valid"]) | set(counts["test"])
    vocab = build_vocab(train, others, data_cfg.vocab_size, data_cfg.min_count)

    # every type seen maps to an id: its own, or <unk>'s
    lookup = {t: vocab.index.get(t, vocab.unk_id) for t in set(train) | others}
    lookup.update(vocab.index)
    tokens = {s: sum(counts[s].values()) for s in SPLITS}
    oov = {s: (sum(c for t, c in counts[s].items() if t not in vocab.index) / tokens[s]) if tokens[s] else None
           for s in SPLITS}
    cfg = full_cfg if full_cfg is not None else Config()
    cfg = dataclasses.replace(cfg, data=data_cfg)
    meta = {
        "schema_version": SCHEMA_VERSION,
        "format": PREPARED_MARKER,
        "format_version": FORMAT_VERSION,
        "level": data_cfg.level,
        "vocab_size": len(vocab),
        "dtype": vocab.dtype.name,
        "tokens": tokens,
        "oov_rate": oov,
        "special": {"unk": vocab.unk_id, "eos": vocab.eos_id},
        "split_mode": mode,
        "sources": [{"path": os.path.abspath(s.path), "bytes": s.bytes, "sha256": s.sha256,
                     "splits": [r[0] for r in s.ranges]} for s in sources],
        "config": _jsonable(dataclasses.asdict(data_cfg)),
    }

    # encoding pass into a temporary sibling folder (named with this process's id, so a later
    # run can tell the leftovers of a killed one), then rename it into place
    target = os.path.realpath(folder)       # through a symlink: the folder it names is replaced, not the link
    parent, name = os.path.split(target)
    remove_leftovers(target, log)
    created = []
    try:
        created = make_folders(parent)
        tmp = tempfile.mkdtemp(prefix=f".{name}.tmp-{os.getpid()}-", dir=parent)
    except OSError as exc:
        remove_folders(created)
        raise DataError(f"cannot create the output folder {shown(folder)}: {exc.strerror}") from None
    try:
        with contextlib.ExitStack() as stack:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o777 & ~umask)
            arrays = {}
            for s in SPLITS:
                arrays[s] = _NpyWriter(os.path.join(tmp, f"{s}.npy"), vocab.dtype, tokens[s])
                stack.callback(arrays[s].close)
            _encode(sources, data_cfg, lookup, arrays, progress)
            for array in arrays.values():
                array.finish()
        vocab.save(os.path.join(tmp, "vocab.txt"))
        atomic_write_text(os.path.join(tmp, "config.yaml"), to_yaml(cfg))
        atomic_write_json(os.path.join(tmp, "meta.json"), meta)
        crash_point(f"before-rename:{name}")
        _install(tmp, target, force)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        remove_folders(created)
        if isinstance(exc, OSError) and not isinstance(exc, DataError):
            raise DataError(f"cannot write the prepared data to {shown(folder)}: {exc.strerror or exc}") from None
        if isinstance(exc, WriteError):
            raise DataError(f"cannot write the prepared data to {shown(folder)}: {exc.strerror}") from None
        raise
    return meta


def _absolute(data_cfg: DataConfig) -> DataConfig:
    """The data config with its paths made absolute (relative ones are relative to the cwd)."""
    paths = {f.name: os.path.abspath(getattr(data_cfg, f.name)) for f in dataclasses.fields(data_cfg)
             if f.metadata.get("path") and getattr(data_cfg, f.name)}
    return dataclasses.replace(data_cfg, **paths)


def _jsonable(obj):
    """obj as it reads back from JSON (tuples become lists), for comparisons with meta.json."""
    return json.loads(json.dumps(obj))


# --------------------------------------------------------------------------- prepared data

@dataclass
class Prepared:
    """A prepared-data folder: the vocabulary, meta.json, and the splits as read-only memmaps."""

    folder: str
    vocab: Vocab
    meta: dict

    @property
    def level(self) -> str:
        return self.meta["level"]

    def split(self, name: str) -> np.ndarray:
        """Token ids of 'train', 'valid' or 'test', memory-mapped read-only (empty when absent).  # (N,)"""
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; splits are {', '.join(SPLITS)}")
        path = os.path.join(self.folder, f"{name}.npy")
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except FileNotFoundError:
            raise DataError(f"prepared-data folder {self.folder} has no {name}.npy "
                            f"(run 'rnnlm preprocess --force' to rebuild it)") from None
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: not a readable .npy file ({exc})") from None
        if array.ndim != 1 or len(array) != self.meta["tokens"][name] or array.dtype != self.vocab.dtype:
            raise DataError(f"{path} does not match meta.json (re-run 'rnnlm preprocess --force')")
        return array


def _read_meta(folder: str) -> dict:
    path = os.path.join(folder, "meta.json")
    try:
        with open(path, encoding="utf-8") as fh:
            meta = json.load(fh)
    except FileNotFoundError:
        raise DataError(f"prepared-data folder {folder} has no meta.json "
                        f"(run 'rnnlm preprocess' to write it)") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not readable JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise DataError(f"{path}: expected a JSON object")
    return meta


def load_prepared(folder: str) -> Prepared:
    """Open a prepared-data folder; DataError naming the folder and what is missing or wrong."""
    if not os.path.isdir(folder):
        raise DataError(f"prepared-data folder not found: {folder} (run 'rnnlm preprocess' first)")
    meta = _read_meta(folder)
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise DataError(f"prepared-data folder {folder} has format_version {version}, this rnnlm reads "
                        f"{FORMAT_VERSION} (re-run 'rnnlm preprocess --force')")
    for name in ("vocab.txt",) + tuple(f"{s}.npy" for s in SPLITS):
        if not os.path.isfile(os.path.join(folder, name)):
            raise DataError(f"prepared-data folder {folder} has no {name} "
                            f"(run 'rnnlm preprocess --force' to rebuild it)")
    for key in ("vocab_size", "tokens", "level"):      # a meta.json edited by hand: its entries' types
        value = meta.get(key)
        ok = {"vocab_size": isinstance(value, int) and not isinstance(value, bool) and value >= 1,
              "tokens": isinstance(value, dict) and all(isinstance(value.get(s), int) and not isinstance(value.get(s), bool)
                                                        and value.get(s) >= 0 for s in SPLITS),
              "level": value in ("word", "char")}[key]
        if not ok:
            expected = {"vocab_size": "a positive integer", "tokens": f"token counts >= 0 of {', '.join(SPLITS)}",
                        "level": "word or char"}[key]
            raise DataError(f"prepared-data folder {brief_path(folder)}: meta.json entry {key} is {brief(value)}, "
                            f"expected {expected} (re-run 'rnnlm preprocess --force')")
    vocab = Vocab.load(os.path.join(folder, "vocab.txt"))
    try:
        if len(vocab) != meta["vocab_size"] or not all(isinstance(meta["tokens"][s], int) for s in SPLITS):
            raise DataError(f"prepared-data folder {folder}: vocab.txt has {len(vocab)} tokens, "
                            f"meta.json says {meta['vocab_size']}")
    except (KeyError, TypeError) as exc:
        raise DataError(f"prepared-data folder {folder}: meta.json lacks {exc}") from None
    return Prepared(folder, vocab, meta)


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _stale_reason(meta: dict | None, data_cfg: DataConfig) -> str | None:
    """Why a prepared folder with this meta.json (None: none readable) must be rebuilt from
    data_cfg's sources; None when it is current."""
    if meta is None:
        return "missing"
    if meta.get("format_version") != FORMAT_VERSION:
        return "written by another format version"
    saved = dict(meta.get("config") or {})
    wanted = _jsonable(dataclasses.asdict(_absolute(data_cfg)))
    saved.pop("prepared", None)
    wanted.pop("prepared", None)
    if saved != wanted:
        return "data settings changed"
    for src in meta.get("sources") or []:
        path = src.get("path")
        if not path or not os.path.isfile(path) or os.path.getsize(path) != src.get("bytes"):
            return "sources changed"
        if file_sha256(path) != src.get("sha256"):
            return "sources changed"
    return None if meta.get("sources") else "sources changed"


def _meta_or_none(folder: str) -> dict | None:
    try:
        return _read_meta(folder)
    except DataError:
        return None


def is_current(meta: dict, data_cfg: DataConfig) -> bool:
    """Whether a prepared folder's meta matches this data config and its sources' bytes/sha256."""
    return _stale_reason(meta, data_cfg) is None


def rebuild_reason(data_cfg: DataConfig) -> str | None:
    """Why data_cfg.prepared must be (re)built from data_cfg.train ("missing", "sources
    changed", "data settings changed", ...); None when it is current. Reads only."""
    return _stale_reason(_meta_or_none(data_cfg.prepared), data_cfg)


def ensure_prepared(cfg: Config, progress: ProgressFactory | None = None, log=None) -> Prepared:
    """The prepared data a training run reads.

    Without data.train: data.prepared, loaded. With data.train: loaded when current; built when
    missing and rebuilt when its sources or data settings changed, after a log line
    "preparing FOLDER from SOURCES (REASON)". Only a folder written by preprocess that holds
    nothing else is ever replaced; another non-empty folder is refused (DataError, or
    ConfigError when it has a meta.json but is not such a folder or holds other files), and so
    is a current folder that lacks a file (naming it), which is never silently rebuilt.
    """
    data = cfg.data
    if not data.train:
        return load_prepared(data.prepared)
    meta = _meta_or_none(data.prepared)
    reason = _stale_reason(meta, data)
    if reason is not None:
        sources = ", ".join(p for p in (data.train, data.valid, data.test) if p)
        if log is not None:
            log(f"preparing {data.prepared} from {sources} ({reason})")
        preprocess(data, cfg, force=meta is not None, progress=progress, log=log)
    return load_prepared(data.prepared)


def vocab_checksum(prepared: Prepared) -> str:
    digest = hashlib.sha256()
    for token in prepared.vocab.tokens:
        digest.update(token.encode("utf-8") + b"\0")
    return digest.hexdigest()


def separator_id(prepared: Prepared) -> int | None:
    """The sentence separator: <eos> at word level, the newline symbol at char level."""
    if prepared.vocab.eos_id is not None:
        return prepared.vocab.eos_id
    return prepared.vocab.index.get("\n")
