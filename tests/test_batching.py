"""Batching: parallel streams with k1/k2 windows, padded sentence batches, resuming."""

from __future__ import annotations

import numpy as np
import pytest

from rnnlm_cli.data.batching import (SentenceBatches, StreamBatches, batchify, sentence_batches, split_sentences,
                                stream_batches)
from rnnlm_cli.errors import DataError


def test_batchify_makes_contiguous_parallel_streams():
    data = batchify(np.arange(23), 4)                 # 23 -> 20 tokens, 4 streams of 5
    assert data.shape == (5, 4)
    np.testing.assert_array_equal(data[:, 1], [5, 6, 7, 8, 9])
    with pytest.raises(DataError, match="too few"):
        batchify(np.arange(5), 4)


def test_stream_chunks_cover_every_target_once():
    tokens = np.arange(2 * 11)                         # 2 streams of 11 -> 10 input steps
    sb = StreamBatches(tokens, 2, k1=4)
    batches = list(sb)
    assert len(sb) == 3 and [len(b.x) for b in batches] == [4, 4, 2]
    for b in batches:
        np.testing.assert_array_equal(b.y, b.x + 1)     # next token in each stream
        assert b.loss_start == 0 and b.carry == len(b.x) and b.mask is None
    np.testing.assert_array_equal(np.concatenate([b.x for b in batches])[:, 0], np.arange(10))
    assert sum(b.tokens for b in batches) == 20


def test_stream_k2_windows_and_carry():
    tokens = np.arange(3 * 21)                         # 3 streams, 20 steps
    sb = StreamBatches(tokens, 3, k1=5, k2=8)
    b0, b1, b3 = sb.batch(0), sb.batch(1), sb.batch(3)
    assert (b0.position, len(b0.x), b0.loss_start, b0.carry) == (0, 5, 0, 2)
    assert (b1.position, len(b1.x), b1.loss_start, b1.carry) == (2, 8, 3, 5)
    assert (b3.position, len(b3.x), b3.loss_start) == (12, 8, 3)
    np.testing.assert_array_equal(b1.x[:, 0], np.arange(2, 10))
    # the next window starts where this one's carry points
    for c in range(len(sb) - 1):
        assert sb.batch(c).position + sb.batch(c).carry == sb.batch(c + 1).position
    lm = b1.loss_mask
    assert lm.shape == (8, 3) and lm[:3].sum() == 0 and lm[3:].min() == 1
    with pytest.raises(ValueError):
        StreamBatches(tokens, 3, k1=5, k2=4)


def test_stream_iteration_resumes_from_a_chunk():
    tokens = np.arange(4 * 40)
    all_b = list(stream_batches(tokens, 4, 7, 10))
    tail = list(stream_batches(tokens, 4, 7, 10, start=3))
    assert len(tail) == len(all_b) - 3
    for a, b in zip(all_b[3:], tail):
        np.testing.assert_array_equal(a.x, b.x)
        assert (a.index, a.loss_start, a.carry) == (b.index, b.loss_start, b.carry)


def test_split_sentences_uses_eos_as_start_symbol():
    eos = 0
    toks = np.array([5, 6, 0, 7, 0, 0, 8, 9])
    sents = split_sentences(toks, eos)
    assert [list(x) for x, _ in sents] == [[0, 5, 6], [0, 7], [0], [0, 8]]  # a last sentence without eos
    assert [list(y) for _, y in sents] == [[5, 6, 0], [7, 0], [0], [8, 9]]
    cut = split_sentences(toks, eos, max_len=2)
    assert [list(x) for x, _ in cut] == [[0, 5], [0, 7], [0], [0, 8]]


def test_sentence_batches_are_padded_with_a_mask():
    toks = np.array([5, 6, 0, 7, 0, 0, 8, 9, 3, 0])
    sb = SentenceBatches(toks, 0, 3)
    assert len(sb) == 2
    b = sb.batch(0)
    assert b.x.shape == (3, 3) and b.mask.dtype == np.float32
    np.testing.assert_array_equal(b.mask, [[1, 1, 1], [1, 1, 0], [1, 0, 0]])
    np.testing.assert_array_equal(b.y[:, 0], [5, 6, 0])
    assert b.tokens == 6
    last = sb.batch(1)
    assert last.x.shape == (4, 1)
    np.testing.assert_array_equal(last.y[:, 0], [8, 9, 3, 0])


def test_sentence_shuffle_is_seeded_and_resumable():
    rng_toks = np.random.default_rng(0)
    toks = np.concatenate([np.append(rng_toks.integers(1, 9, size=n), 0) for n in rng_toks.integers(1, 6, 30)])
    a = list(sentence_batches(toks, 0, 4, rng=np.random.default_rng(5)))
    b = list(sentence_batches(toks, 0, 4, rng=np.random.default_rng(5)))
    c = list(sentence_batches(toks, 0, 4, rng=np.random.default_rng(5), start=2))
    assert len(a) == 8
    for p, q in zip(a, b):
        np.testing.assert_array_equal(p.x, q.x)
    np.testing.assert_array_equal(a[2].x, c[0].x)
    assert sum(bt.tokens for bt in a) == len(toks)
    with pytest.raises(DataError):
        SentenceBatches(np.array([], dtype=np.int64), 0, 2)
