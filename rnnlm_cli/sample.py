"""Sampling text from a trained model."""

from __future__ import annotations

import numpy as np

from rnnlm_cli.config import Config
from rnnlm_cli.data.corpus import Prepared, separator_id, tokenize
from rnnlm_cli.nn.model import Model


def generate(model: Model, prepared: Prepared, cfg: Config, n: int, max_tokens: int, temperature: float,
             prime: str, seed: int, allow_unk: bool) -> list[str]:
    """Sample n texts: read the prime, then draw tokens from softmax(logits / temperature).

    Word level stops at <eos>; `<unk>` is never drawn unless allow_unk.
    """
    vocab = prepared.vocab
    rng = np.random.default_rng(seed)
    level = prepared.meta.get("level", cfg.data.level)
    prime_ids = [vocab.id(t) for t in tokenize(prime, cfg.data, final_eos=False)] if prime else []
    start = separator_id(prepared)
    context = ([start] if start is not None else []) + prime_ids
    if not context:
        context = [int(rng.integers(len(vocab)))]
    # read the context for all n samples at once
    state = model.initial_state(n)
    logits = None
    for tok in context:
        logits, state = model.step_logits(np.full(n, tok), state)
    banned = [] if allow_unk or vocab.unk_id is None else [vocab.unk_id]
    out = [[] for _ in range(n)]
    done = np.zeros(n, dtype=bool)
    for _ in range(max_tokens):
        z = logits.astype(np.float64)                        # (n, V)
        z[:, banned] = -np.inf
        z -= z.max(axis=1, keepdims=True)                    # <= 0, the most likely token at 0 ...
        with np.errstate(over="ignore", under="ignore"):
            z /= temperature                                 # ... so a tiny temperature gives -inf, never inf - inf
        prob = np.exp(z)
        prob /= prob.sum(axis=1, keepdims=True)
        u = rng.random(n)[:, None]
        nxt = np.minimum((prob.cumsum(axis=1) < u).sum(axis=1), len(vocab) - 1)   # (n,)
        for i, tok in enumerate(nxt):
            if not done[i]:
                if level == "word" and tok == vocab.eos_id:
                    done[i] = True
                else:
                    out[i].append(vocab.tokens[tok])
        if done.all():
            break
        logits, state = model.step_logits(nxt, state)
    joiner = "" if level == "char" else " "
    head = prime.rstrip("\n") if level == "char" else " ".join(prime.split())   # the prime as given
    return [joiner.join(([head] if head else []) + toks) for toks in out]
