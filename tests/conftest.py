"""Shared fixtures. Append new fixtures; keep each one small and independent. Helpers that are
not fixtures (models, tokens, explicit references) live in tests/helpers.py."""

from __future__ import annotations

from pathlib import Path

import pytest

# --------------------------------------------------------------------------- corpora (corpus.py)

# standard corpora kept beside the project (never inside it): ../shared/corpora from the repo root
SHARED_CORPORA = Path(__file__).resolve().parents[1].parent / "shared" / "corpora"

TINY_WORD = {
    # counts in train: the 3, <eos> 3, cat 2, sat 2, dog 1, ran 1
    "train": "the cat sat\nthe dog sat\nthe cat ran\n",
    "valid": "the dog ran\n",
    "test": "the bird sat\n",  # 'bird' is not in train
}

TINY_CHAR = "hello world\nhello there\nwhere are we\n"


@pytest.fixture
def write_file(tmp_path):
    """write_file(name, text_or_bytes) -> Path of a new file under tmp_path."""

    def write(name: str, content: str | bytes) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8", newline="")
        return path

    return write


@pytest.fixture
def tiny_word_corpus(write_file):
    """{'train': Path, 'valid': Path, 'test': Path} of a tiny word-level corpus (TINY_WORD)."""
    return {split: write_file(f"words/{split}.txt", text) for split, text in TINY_WORD.items()}


@pytest.fixture
def tiny_char_corpus(write_file):
    """Path of one small text file for character-level tests (TINY_CHAR)."""
    return write_file("chars/input.txt", TINY_CHAR)


@pytest.fixture
def shared_corpora():
    """The ../shared/corpora folder, or skip when this checkout has none."""
    if not SHARED_CORPORA.is_dir():
        pytest.skip(f"reference corpora not found at {SHARED_CORPORA} (a fresh clone has no ../shared)")
    return SHARED_CORPORA


# --------------------------------------------------------------------------- commands without data

@pytest.fixture
def no_data(tmp_path, monkeypatch):
    """A working folder with no prepared data (data/prepared, the default, does not exist)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path

