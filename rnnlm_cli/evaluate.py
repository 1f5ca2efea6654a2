"""The evaluation protocol: cross-entropy of a token stream under a trained model.

stream/window-trained models are read as B contiguous streams in chunks of k1 with the hidden
state carried across chunks; full-trained models sentence by sentence from the zero state.
Every chunk is weighted by its token count, and the separator (<eos>) tokens are scored.
"""

from __future__ import annotations

import math

import numpy as np

from rnnlm_cli.config import Config
from rnnlm_cli.data.batching import SentenceBatches
from rnnlm_cli.errors import ConfigError, DataError
from rnnlm_cli.nn.model import Model

LN2 = math.log(2.0)


def perplexity(loss: float) -> float:
    """exp(loss), capped instead of overflowing for a diverged model."""
    return math.exp(min(loss, 700.0))


def eval_streams(tokens: np.ndarray, start_id: int | None, batch_size: int):
    """(x, y, mask) (L, B) for evaluation over EVERY token of a split.

    The first target is predicted from `start_id` (the separator) when there is one, so all N
    tokens are scored (the PTB convention); otherwise from token 0 (N - 1 scored). The stream
    is cut into B contiguous segments; the last is padded with mask 0.
    """
    tokens = np.asarray(tokens, dtype=np.int64)
    if start_id is not None:
        x = np.concatenate(([start_id], tokens[:-1]))
        y = tokens
    else:
        x, y = tokens[:-1], tokens[1:]
    N = len(y)
    B = max(1, min(batch_size, N))
    L = -(-N // B)
    pad = L * B - N
    xs = np.concatenate((x, np.zeros(pad, np.int64))).reshape(B, L).T
    ys = np.concatenate((y, np.zeros(pad, np.int64))).reshape(B, L).T
    mask = np.concatenate((np.ones(N, np.float32), np.zeros(pad, np.float32))).reshape(B, L).T
    return np.ascontiguousarray(xs), np.ascontiguousarray(ys), np.ascontiguousarray(mask)


def evaluate_tokens(model: Model, tokens: np.ndarray, cfg: Config, sep_id: int | None,
                    per_token: bool = False) -> dict:
    """Cross-entropy of `tokens` under the standard protocol.

    stream/window-trained models: B contiguous streams in chunks of k1, the hidden state carried
    across chunks; full-trained models: sentence by sentence from the zero state. Every chunk is
    weighted by its token count. Returns loss (nats/token), bits, ppl, tokens; with per_token,
    also `logp` (log-probability of every scored token, in text order).
    """
    if len(tokens) < 2:
        raise DataError(f"too few tokens to evaluate ({len(tokens)})")
    if int(np.max(tokens)) >= model.V:
        raise DataError(f"token id {int(np.max(tokens))} is outside the model's vocabulary of {model.V} "
                        f"(corrupted or mismatched prepared data)")
    total, count = 0.0, 0.0
    logp = None
    if cfg.train.bptt == "full":
        if sep_id is None:
            raise ConfigError("train.bptt=full needs sentence boundaries (<eos> or a newline symbol)")
        batches = SentenceBatches(tokens, sep_id, cfg.train.eval_batch_size, rng=None, max_len=0)
        pieces = []
        for batch in batches:
            nll, _ = model.log_probs(batch.x, batch.y, None, mask=batch.mask)
            total += float(-nll.sum(dtype=np.float64))
            count += float(batch.mask.sum())
            if per_token:
                pieces.extend(nll[:int(m.sum()), b] for b, m in enumerate(batch.mask.T))
        if per_token:
            logp = np.concatenate(pieces)
    else:
        x, y, mask = eval_streams(tokens, sep_id, cfg.train.eval_batch_size)
        state = model.initial_state(x.shape[1])
        k = cfg.train.k1
        lp_all = np.zeros(x.shape, dtype=np.float64) if per_token else None
        for s in range(0, len(x), k):
            lp, state = model.log_probs(x[s:s + k], y[s:s + k], state, mask=mask[s:s + k])
            total -= float(lp.sum(dtype=np.float64))
            if per_token:
                lp_all[s:s + k] = lp
        count = float(mask.sum(dtype=np.float64))
        if per_token:
            logp = lp_all.T.reshape(-1)[mask.T.reshape(-1) > 0]
    loss = total / count
    result = {"loss": loss, "bits": loss / LN2, "ppl": perplexity(loss), "tokens": int(count)}
    if per_token:
        result["logp"] = logp
    return result
