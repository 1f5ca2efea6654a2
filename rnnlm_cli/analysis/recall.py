"""Recall scoring: where a long-range task is deterministic, does the model get it right?

Teacher forcing: the model reads the TRUE prefix (never its own samples) and its own argmax
prediction at the scored position is compared with the answer.

copy       every recalled symbol of every test line (rnnlm_cli/data/copytask.py): the argmax
           over the whole vocabulary after reading <eos>, the line's m symbols, T blanks, the
           delimiter and the recalled symbols before it. Also the loss per position over
           every position of the line (inputs <eos> w_1..w_L, targets w_1..w_L <eos>, as
           batching.split_sentences cuts them) and per recalled symbol, next to the memoryless
           baseline computed over the same positions (copytask.memoryless_baseline).
agreement  the verb's number (data/agreement.py items): after reading <eos> and the prefix,
           is the right form scored above the wrong one (the argmax over the pair)?

Each line starts from the zero state, as in full mode. The probability source is a function
`logits_fn(x (T, B) token ids) -> (T, B, V) logits` (`model_logits(model)` for a Model), so the
scoring can be checked against hand-built predictors.
"""

from __future__ import annotations

import math

import numpy as np

from rnnlm_cli.data.copytask import CopyTask, memoryless_baseline, parse_line
from rnnlm_cli.errors import DataError
from rnnlm_cli.nn.model import Model

CHUNK = 64          # sequences per forward pass


def model_logits(model: Model):
    """logits_fn of a model: x (T, B) -> (T, B, V) logits, from the zero state."""
    def logits_fn(x):
        x = np.asarray(x)
        fwd = model.forward(x, x)                          # the targets do not matter here
        T, B = x.shape
        return model.output.logits(model.params, fwd.hs.reshape(T * B, -1)).reshape(T, B, -1)
    return logits_fn


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def score_copy(logits_fn, lines: list[list[str]], task: CopyTask, vocab) -> dict:
    """Recall accuracy (overall and per recalled position), losses and the baseline on `lines`
    (lists of words of well-formed lines of `task`; DataError otherwise). vocab: id(word),
    and the id of "<eos>"."""
    task.check()
    if not lines:
        raise DataError("copy scoring: no test lines")
    for i, words in enumerate(lines):
        if parse_line(words, task) is None:
            raise DataError(f"copy scoring: line {i + 1} is not a copy line of m={task.symbols}, T={task.delay}")
    eos = vocab.id("<eos>")
    ids = np.array([[eos] + [vocab.id(w) for w in words] + [eos] for words in lines], dtype=np.int64).T  # (L+2, N)
    x, y = ids[:-1], ids[1:]                                            # (L+1, N) each
    recall = np.array(task.recall_positions)                            # positions in the line = rows of y
    correct = np.zeros((len(recall), x.shape[1]))                       # (m, N)
    nll = np.zeros(x.shape)                                             # (L+1, N)
    for s in range(0, x.shape[1], CHUNK):
        z = np.asarray(logits_fn(x[:, s:s + CHUNK]), dtype=np.float64)  # (L+1, b, V)
        logp = _log_softmax(z)
        tgt = y[:, s:s + CHUNK]
        nll[:, s:s + CHUNK] = -np.take_along_axis(logp, tgt[..., None], axis=-1)[..., 0]
        correct[:, s:s + CHUNK] = z[recall].argmax(axis=-1) == tgt[recall]
    base = memoryless_baseline(task.symbols, task.alphabet, task.delay)
    per_position = correct.mean(axis=1)
    return {"task": "copy", "sequences": int(x.shape[1]), "accuracy": float(correct.mean()),
            "per_position": [float(v) for v in per_position],
            "sequences_all_recalled": float(correct.all(axis=0).mean()),
            "loss_per_token": float(nll.mean()), "loss_per_recalled_symbol": float(nll[recall].mean()),
            "baseline": base,
            "excess_recovered": _recovered(float(nll.mean()), base["per_token"], base["perfect_per_token"])}


def _recovered(loss: float, memoryless: float, perfect: float) -> float | None:
    """Where the loss sits between the memoryless baseline (0) and perfect recall (1)."""
    if not math.isfinite(loss) or memoryless <= perfect:
        return None
    return (memoryless - loss) / (memoryless - perfect)


def score_agreement(logits_fn, items, vocab) -> dict:
    """The verb's number on agreement items (prefix, verb, wrong, distance): overall accuracy and
    per distance. Every verb form must be in the vocabulary (DataError naming it otherwise)."""
    if not items:
        raise DataError("agreement scoring: no items")
    eos = vocab.id("<eos>")
    for item in items:
        for form in (item.verb, item.wrong):
            if form not in vocab:
                raise DataError(f"agreement scoring: the verb form {form!r} is not in the vocabulary")
    correct = np.zeros(len(items))
    for s in range(0, len(items), CHUNK):
        chunk = items[s:s + CHUNK]
        T = max(len(it.prefix) for it in chunk) + 1
        x = np.full((T, len(chunk)), eos, dtype=np.int64)               # right padding: causal, harmless
        for b, it in enumerate(chunk):
            x[1:len(it.prefix) + 1, b] = [vocab.id(w) for w in it.prefix]
        z = np.asarray(logits_fn(x))                                    # (T, b, V)
        for b, it in enumerate(chunk):
            last = z[len(it.prefix), b]
            correct[s + b] = last[vocab.id(it.verb)] > last[vocab.id(it.wrong)]
    distances = sorted({it.distance for it in items})
    by = {d: [c for c, it in zip(correct, items) if it.distance == d] for d in distances}
    return {"task": "agreement", "sequences": len(items), "accuracy": float(correct.mean()),
            "per_distance": {str(d): float(np.mean(v)) for d, v in by.items()}, "baseline_accuracy": 0.5}
