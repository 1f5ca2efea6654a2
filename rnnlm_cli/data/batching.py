"""Batches for the three BPTT modes, deterministic and resumable.

Stream batches (stream and window modes). The token stream is trimmed to a multiple of B
and cut into B contiguous parallel streams, `data = tokens[:n*B].reshape(B, n).T` (n, B),
as in the PyTorch word_language_model example. Chunk c scores the k1 inputs
[c*k1, (c+1)*k1) (the last chunk may be shorter) against the next tokens. With k2 > k1
the batch covers the k2-step window that ends with the chunk, [c*k1 - (k2-k1), (c+1)*k1)
(cut at 0), and `loss_start` marks where the scored chunk begins. `carry` is the number of
window inputs after which the state must be saved for the next batch (the next window's
start); with k2 == k1 it is the batch length, i.e. the final state.

Resuming: `StreamBatches(...).iterate(start)` begins at chunk `start`; the caller saves the
chunk index and the carried state in its checkpoint.

Random chunk lengths (train.k1_spread, as AWD-LSTM draws them): `chunk_lengths(rng, k1, spread,
steps)` draws the lengths of one epoch's chunks, and `StreamBatches(..., lengths=...)` cuts the
stream at their running sums instead of every k1 steps, so the chunks still tile the stream:
each step is scored exactly once per epoch, in order, the state carried from chunk to chunk.
Each length: base = k1 with probability P_FULL (0.95), else k1 / 2; then round(N(base,
spread)), clipped to [min(MIN_CHUNK, k1), 2 k1] (the upper bound keeps a batch's memory within
twice a k1 batch's); the last chunk takes what is left. With a spread, k2 = k1 (no window).

Sentence batches (full mode). The stream is split after every `eos`; a sentence
w1 .. wn <eos> becomes inputs <eos> w1 .. wn and targets w1 .. wn <eos> (the previous eos is
the start symbol). Sentences are shuffled by `rng` (None keeps the order), grouped B at a
time, padded to the longest with a 0/1 mask. Every batch starts from the zero state.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rnnlm_cli.errors import DataError


@dataclass
class Batch:
    """x, y (T, B) int token ids; mask (T, B) float32 or None (all scored); loss_start: first
    scored row; carry: inputs after which the next batch's state is taken; index: batch number;
    position: index of the first input row in the (n, B) stream data (stream batches)."""

    x: np.ndarray
    y: np.ndarray
    mask: np.ndarray | None
    loss_start: int
    carry: int
    index: int
    position: int = 0

    @property
    def loss_mask(self) -> np.ndarray:
        """(T, B) float32: 1 on the scored positions (mask, and rows from loss_start), else 0."""
        m = np.ones(self.x.shape, dtype=np.float32) if self.mask is None else self.mask.astype(np.float32)
        m[:self.loss_start] = 0
        return m

    @property
    def tokens(self) -> int:
        """Number of scored target tokens."""
        if self.mask is None:
            return (self.x.shape[0] - self.loss_start) * self.x.shape[1]
        return int(self.mask[self.loss_start:].sum())


StreamBatch = Batch
SentenceBatch = Batch


def batchify(tokens: np.ndarray, batch_size: int) -> np.ndarray:
    """(N,) -> (n, B): B contiguous streams side by side, the tail that does not fit dropped."""
    tokens = np.asarray(tokens)
    n = len(tokens) // batch_size
    if n < 2:
        raise DataError(f"{len(tokens)} tokens are too few for {batch_size} parallel streams "
                        f"(need at least {2 * batch_size})")
    return np.ascontiguousarray(tokens[:n * batch_size].reshape(batch_size, n).T)


P_FULL = 0.95      # chance that a drawn chunk length centres on k1 (else on k1 / 2)
MIN_CHUNK = 5      # the shortest drawn chunk (k1 when k1 is shorter)


def chunk_lengths(rng: np.random.Generator, k1: int, spread: float, steps: int) -> np.ndarray:
    """(C,) int64 chunk lengths that sum to `steps`, drawn in order from `rng` (module docstring):
    base k1 (probability P_FULL) or k1 / 2, length round(N(base, spread)) within
    [min(MIN_CHUNK, k1), 2 k1]; the last one cut to what is left."""
    low, high = min(MIN_CHUNK, k1), 2 * k1
    lengths, total = [], 0
    while total < steps:
        base = k1 if rng.random() < P_FULL else k1 / 2
        n = min(high, max(low, int(round(rng.normal(base, spread)))))
        n = min(n, steps - total)
        lengths.append(n)
        total += n
    return np.array(lengths, dtype=np.int64)


class StreamBatches:
    """Chunks of k1 steps over B parallel streams, each extended back to k2 steps (k2=0: k1);
    or, with `lengths` (chunk_lengths), chunks of those lengths (no extension back)."""

    def __init__(self, tokens: np.ndarray, batch_size: int, k1: int, k2: int = 0, lengths=None):
        if k1 < 1:
            raise ValueError(f"k1 must be >= 1, got {k1}")
        k2 = k2 or k1
        if k2 < k1:
            raise ValueError(f"k2 ({k2}) must be >= k1 ({k1})")
        self.data = batchify(tokens, batch_size)        # (n, B)
        self.k1, self.k2, self.B = k1, k2, batch_size
        self.steps = len(self.data) - 1                 # inputs that have a target
        self.starts = None                              # drawn lengths: chunk c is [starts[c], starts[c+1])
        if lengths is not None:
            lengths = np.asarray(lengths, dtype=np.int64)
            if k2 != k1 or (lengths < 1).any() or int(lengths.sum()) != self.steps:
                raise ValueError(f"chunk lengths must be >= 1 and sum to the {self.steps} steps, with k2 = k1")
            self.starts = np.concatenate(([0], np.cumsum(lengths)))

    def __len__(self) -> int:
        if self.starts is not None:
            return len(self.starts) - 1
        return -(-self.steps // self.k1)

    def batch(self, c: int, k2_in: int | None = None, k2_out: int | None = None) -> Batch:
        """Chunk c (0-based), extended back to self.k2 steps.

        A k2 that changes between chunks (train.k2 auto): the window starts k2_in - k1 steps
        before the chunk, where the state carried from the previous chunk lies, and the state
        to carry is the one k2_out - k1 steps before the chunk's end, where the next chunk's
        window starts; k2_out may exceed k2_in by at most k1 (that state must lie inside the
        window)."""
        if not 0 <= c < len(self):
            raise IndexError(f"chunk {c} out of range [0, {len(self)})")
        if self.starts is not None:
            start, end = int(self.starts[c]), int(self.starts[c + 1])
            return Batch(x=self.data[start:end], y=self.data[start + 1:end + 1], mask=None,
                         loss_start=0, carry=end - start, index=c, position=start)
        start, end = c * self.k1, min((c + 1) * self.k1, self.steps)
        extra_in = (k2_in or self.k2) - self.k1
        extra_out = (k2_out or self.k2) - self.k1
        if extra_in < 0 or extra_out < 0 or extra_out > extra_in + self.k1:
            raise ValueError(f"k2 from {k2_in} to {k2_out} with k1 = {self.k1}: each must be >= k1, and grow "
                             f"by at most k1 per chunk")
        w0 = max(0, start - extra_in)
        nxt = max(w0, end - extra_out)          # the last, shorter chunk: no earlier than the window's start
        return Batch(x=self.data[w0:end], y=self.data[w0 + 1:end + 1], mask=None,
                     loss_start=start - w0, carry=nxt - w0, index=c, position=w0)

    def iterate(self, start: int = 0):
        for c in range(start, len(self)):
            yield self.batch(c)

    def __iter__(self):
        return self.iterate(0)


def stream_batches(tokens: np.ndarray, batch_size: int, k1: int, k2: int = 0, start: int = 0):
    """Iterator over StreamBatches(tokens, batch_size, k1, k2) from chunk `start`."""
    return StreamBatches(tokens, batch_size, k1, k2).iterate(start)


def split_sentences(tokens: np.ndarray, eos_id: int, max_len: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """(inputs, targets) per sentence; inputs start with eos; cut to max_len (0 = no limit)."""
    tokens = np.asarray(tokens)
    toks = np.concatenate(([eos_id], tokens)).astype(tokens.dtype if len(tokens) else np.int64)
    ends = np.flatnonzero(tokens == eos_id) + 1          # index in toks of each eos
    bounds = list(ends)
    if len(tokens) and (not bounds or bounds[-1] != len(tokens)):
        bounds.append(len(tokens))                       # a last sentence without eos
    out, prev = [], 0
    for e in bounds:
        x, y = toks[prev:e], toks[prev + 1:e + 1]
        if max_len:
            x, y = x[:max_len], y[:max_len]
        out.append((x, y))
        prev = e
    return out


class SentenceBatches:
    """Padded batches of whole sentences with a mask, for full mode."""

    def __init__(self, tokens: np.ndarray, eos_id: int, batch_size: int, rng: np.random.Generator | None = None,
                 max_len: int = 0):
        self.sentences = split_sentences(tokens, eos_id, max_len)
        if not self.sentences:
            raise DataError("no sentences to batch (empty token stream)")
        self.order = (rng.permutation(len(self.sentences)) if rng is not None
                      else np.arange(len(self.sentences)))
        self.B, self.eos_id = batch_size, eos_id

    def __len__(self) -> int:
        return -(-len(self.sentences) // self.B)

    def batch(self, i: int) -> Batch:
        if not 0 <= i < len(self):
            raise IndexError(f"batch {i} out of range [0, {len(self)})")
        chosen = [self.sentences[j] for j in self.order[i * self.B:(i + 1) * self.B]]
        T, B = max(len(x) for x, _ in chosen), len(chosen)
        x = np.full((T, B), self.eos_id, dtype=np.int64)
        y = np.zeros((T, B), dtype=np.int64)
        mask = np.zeros((T, B), dtype=np.float32)
        for b, (xs, ys) in enumerate(chosen):
            x[:len(xs), b], y[:len(ys), b], mask[:len(xs), b] = xs, ys, 1.0
        return Batch(x=x, y=y, mask=mask, loss_start=0, carry=T, index=i)

    def iterate(self, start: int = 0):
        for i in range(start, len(self)):
            yield self.batch(i)

    def __iter__(self):
        return self.iterate(0)


def sentence_batches(tokens: np.ndarray, eos_id: int, batch_size: int, rng: np.random.Generator | None = None,
                     max_len: int = 0, start: int = 0):
    """Iterator over SentenceBatches(tokens, eos_id, batch_size, rng, max_len) from batch `start`."""
    return SentenceBatches(tokens, eos_id, batch_size, rng, max_len).iterate(start)
