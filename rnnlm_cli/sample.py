"""Sampling text from a trained model."""

from __future__ import annotations

import numpy as np

from rnnlm_cli.config import Config
from rnnlm_cli.data.corpus import Prepared, separator_id, tokenize
from rnnlm_cli.errors import ConfigError
from rnnlm_cli.nn.model import Model


STRATEGIES = ("sample", "greedy")   # generate.strategy


def _draw(prob: np.ndarray, rng: np.random.Generator, strategy: str, top_k: int) -> np.ndarray:
    """The next token of each row of prob (n, V): the most likely one (greedy; ties to the lowest
    id, no random number drawn), or a draw from prob restricted to its top_k most likely tokens
    (0 = all) and renormalised, by one uniform number per row."""
    if strategy == "greedy":
        return prob.argmax(axis=1)
    n, V = prob.shape
    if 0 < top_k < V:
        keep = np.argpartition(-prob, top_k - 1, axis=1)[:, :top_k]          # (n, k)
        kept = np.zeros_like(prob)
        rows = np.arange(n)[:, None]
        kept[rows, keep] = prob[rows, keep]
        prob = kept / kept.sum(axis=1, keepdims=True)
    u = rng.random(n)[:, None]
    return np.minimum((prob.cumsum(axis=1) < u).sum(axis=1), V - 1)             # (n,)


def generate(model: Model, prepared: Prepared, cfg: Config, n: int, max_tokens: int, temperature: float,
             prime: str, seed: int, allow_unk: bool, strategy: str = "sample", top_k: int = 0,
             log=None) -> list[str]:
    """Sample n texts: read the prime, then draw tokens from softmax(logits / temperature).

    strategy "sample" draws from that distribution (only its top_k most likely tokens when
    top_k > 0); "greedy" takes the most likely token (top_k must then be 0). Word level stops
    at <eos>; `<unk>` is never drawn unless allow_unk. The same seed gives the same samples.
    log(message): told when prime tokens are not in the vocabulary (they are read as <unk>).
    """
    if strategy not in STRATEGIES:
        raise ConfigError(f"generate.strategy: expected one of {', '.join(STRATEGIES)}, got {strategy!r}")
    if strategy == "greedy" and top_k:
        raise ConfigError(f"generate.top_k ({top_k}) restricts sampling; generate.strategy=greedy always takes "
                          f"the most likely token: set one of them")
    if "\0" in prime:
        raise ConfigError("generate.prime: a NUL character is not text")
    vocab = prepared.vocab
    rng = np.random.default_rng(seed)
    level = prepared.meta.get("level", cfg.data.level)
    prime_tokens = tokenize(prime, cfg.data, final_eos=False) if prime else []
    prime_ids = [vocab.id(t) for t in prime_tokens]
    unknown = list(dict.fromkeys(t for t in prime_tokens if t not in vocab))
    if unknown and log is not None:
        shown = ", ".join(repr(t) if len(t) <= 20 else repr(t[:17] + "...") for t in unknown[:5])
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        log(f"warning: the prime holds {len(unknown)} token type{'s' * (len(unknown) > 1)} not in the vocabulary, "
            f"read as <unk>: {shown}{more}")
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
        nxt = _draw(prob, rng, strategy, top_k)                                    # (n,)
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
