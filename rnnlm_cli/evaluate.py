"""The evaluation protocols: cross-entropy of a token stream under a trained model.

static   (`evaluate_tokens`) the weights stay as trained. stream/window-trained models are read
         as B contiguous streams in chunks of k1 with the hidden state carried across chunks;
         full-trained models sentence by sentence from the zero state. Every chunk is weighted
         by its token count, and the separator (<eos>) tokens are scored.
dynamic  (`dynamic_evaluate`; Mikolov's -dynamic, Krause et al. 2018) the text is read as ONE
         stream, in chunks of evaluate.dynamic_chunk tokens with the state carried: each chunk
         is scored with the current weights, then the weights take one gradient step on that
         chunk's mean loss (the state before the chunk a constant) before the next chunk is
         read. A token is therefore scored before any update has seen it, and the text is read
         in order (several streams side by side would let an update learn from text that lies
         later than a chunk still to be scored). Updates:
             sgd  theta <- theta - lr g + decay (theta_0 - theta)
             rms  theta <- theta - lr g / (rms + eps) + min(1, decay rms / mean(rms)) (theta_0 - theta)
         theta_0 the trained weights; rms the root mean square of each weight's gradient over
         evaluate.dynamic_ms_batches batches of the training split (measured once, with the
         trained weights; Krause et al.'s RMS update with its global prior). The checkpoint is
         never changed: the updates live in a copy.
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


def _check_tokens(model: Model, tokens: np.ndarray) -> None:
    """A stream to evaluate: two tokens at least, every id inside the model's vocabulary."""
    if len(tokens) < 2:
        raise DataError(f"too few tokens to evaluate ({len(tokens)})")
    if int(np.max(tokens)) >= model.V:
        raise DataError(f"token id {int(np.max(tokens))} is outside the model's vocabulary of {model.V} "
                        f"(corrupted or mismatched prepared data)")


def evaluate_tokens(model: Model, tokens: np.ndarray, cfg: Config, sep_id: int | None,
                    per_token: bool = False) -> dict:
    """Cross-entropy of `tokens` under the standard protocol.

    stream/window-trained models: B contiguous streams in chunks of k1, the hidden state carried
    across chunks; full-trained models: sentence by sentence from the zero state. Every chunk is
    weighted by its token count. Returns loss (nats/token), bits, ppl, tokens; with per_token,
    also `logp` (log-probability of every scored token, in text order).
    """
    _check_tokens(model, tokens)
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


# --------------------------------------------------------------------------- dynamic evaluation

def gradient_ms(model: Model, train_tokens: np.ndarray, cfg: Config) -> dict:
    """Mean squared gradient of every weight over evaluate.dynamic_ms_batches training batches
    (train.batch_size streams, train.k1 steps, the state carried, no dropout), with the trained
    weights: the `rms` update's normaliser."""
    from rnnlm_cli.data.batching import StreamBatches
    from rnnlm_cli.train.step import batch_gradients

    tc, n = cfg.train, cfg.evaluate.dynamic_ms_batches
    batches = StreamBatches(np.asarray(train_tokens, dtype=np.int64), tc.batch_size, tc.k1)
    ms = {k: np.zeros(v.shape, dtype=np.float64) for k, v in model.params.items()}
    state, used = None, 0
    for i in range(min(n, len(batches))):
        _, grads, state = batch_gradients(model, batches.batch(i), state, mode="stream", train=False)
        for k in ms:
            g = grads.dense(k)
            ms[k] += g.astype(np.float64) ** 2
        used += 1
    return {k: v / max(used, 1) for k, v in ms.items()}


def dynamic_evaluate(model: Model, tokens: np.ndarray, cfg: Config, sep_id: int | None, per_token: bool = False,
                     ms: dict | None = None) -> dict:
    """Cross-entropy of `tokens` under dynamic evaluation (module docstring); the model's
    weights are restored before returning. `ms`: gradient_ms's result (needed by rms).
    Returns loss, bits, ppl, tokens, updates (and logp with per_token)."""
    de = cfg.evaluate
    if cfg.train.bptt == "full":
        raise ConfigError("evaluate --dynamic reads the text as one stream with the state carried, but this model "
                          "was trained with train.bptt=full (sentences from the zero state); use the static protocol")
    if de.dynamic_method == "rms" and ms is None:
        raise ValueError("the rms update needs the mean squared training gradients (gradient_ms)")
    _check_tokens(model, tokens)
    x, y, mask = eval_streams(tokens, sep_id, 1)                       # (N, 1): one stream, in order
    theta0 = {k: v.copy() for k, v in model.params.items()}
    if de.dynamic_method == "rms":
        rms = {k: np.sqrt(v) for k, v in ms.items()}
        mean_rms = float(np.mean(np.concatenate([v.ravel() for v in rms.values()])))
        step_div = {k: (v + de.dynamic_eps).astype(model.dtype) for k, v in rms.items()}
        pull = {k: np.minimum(1.0, de.dynamic_decay * v / mean_rms).astype(model.dtype) if mean_rms > 0 else
                np.full(v.shape, min(1.0, de.dynamic_decay), dtype=model.dtype) for k, v in rms.items()}
    lr = model.dtype.type(de.dynamic_lr)
    state = model.initial_state(1)
    total, updates = 0.0, 0
    logp = np.zeros(len(x), dtype=np.float64) if per_token else None
    c = de.dynamic_chunk
    def diverged(what):
        return DataError(f"dynamic evaluation diverged after {updates} updates ({what}); lower evaluate.dynamic_lr "
                         f"({de.dynamic_lr:g})" + ("" if de.dynamic_method == "sgd" else
                                                   f" or raise evaluate.dynamic_eps ({de.dynamic_eps:g}): weights "
                                                   f"whose training gradients were ~0 take steps of lr / eps"))

    try:
        with np.errstate(over="ignore", invalid="ignore"):   # divergence is reported below, as one error
            for s in range(0, len(x), c):
                fwd = model.forward(x[s:s + c], y[s:s + c], state, mask=mask[s:s + c])
                if updates and not math.isfinite(fwd.loss):
                    raise diverged("a non-finite loss")
                total += fwd.loss                                          # scored before the update
                if per_token:
                    logp[s:s + c] = -fwd.nll[:, 0]
                state = fwd.state
                if s + c >= len(x):
                    break                                                  # nothing left to score
                grads = model.backward(fwd, scale=1.0 / max(fwd.count, 1.0))
                for k, p in model.params.items():
                    g = grads.dense(k)
                    if de.dynamic_method == "sgd":
                        p -= lr * g
                        if de.dynamic_decay:
                            p += model.dtype.type(de.dynamic_decay) * (theta0[k] - p)
                    else:
                        p -= lr * g / step_div[k]
                        if de.dynamic_decay:
                            p += pull[k] * (theta0[k] - p)
                updates += 1
                if not all(np.isfinite(p).all() for p in model.params.values()):
                    raise diverged("non-finite weights")
    finally:
        for k, p in model.params.items():
            p[...] = theta0[k]
    count = float(mask.sum(dtype=np.float64))
    loss = total / count
    result = {"loss": loss, "bits": loss / LN2, "ppl": perplexity(loss), "tokens": int(count), "updates": updates}
    if per_token:
        result["logp"] = logp[mask[:, 0] > 0]
    return result


def dynamic_protocol(cfg: Config, updates: int) -> dict:
    """The settings that produced a dynamic figure, as the JSON outputs report them."""
    de = cfg.evaluate
    protocol = {"method": de.dynamic_method, "lr": de.dynamic_lr, "decay": de.dynamic_decay,
                "chunk": de.dynamic_chunk, "updates": updates}
    if de.dynamic_method == "rms":
        protocol.update(ms_batches=de.dynamic_ms_batches, eps=de.dynamic_eps)
    return protocol


def dynamic_splits(model: Model, splits: dict, train_tokens: np.ndarray, cfg: Config, sep_id: int | None,
                   per_token: bool = False) -> tuple[dict, dict]:
    """Dynamic evaluation of each split in `splits` (name -> tokens, each scored from the trained
    weights, independently of the others), with the rms normaliser from `train_tokens` when the
    method needs it: ({name: {loss, bits, ppl, tokens (, logp)}}, the protocol), the protocol's
    update count summed over the splits."""
    ms = gradient_ms(model, train_tokens, cfg) if cfg.evaluate.dynamic_method == "rms" else None
    results, updates = {}, 0
    for name, tokens in splits.items():
        results[name] = dynamic_evaluate(model, tokens, cfg, sep_id, per_token=per_token, ms=ms)
        updates += results[name].pop("updates")
    return results, dynamic_protocol(cfg, updates)
