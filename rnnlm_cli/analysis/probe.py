"""Long-range agreement accuracy by distance (`rnnlm probe`).

For each probe item (by default the agreement corpus's probe set, shipped with the package as
`rnnlm_cli/data/agreement_probe.jsonl`; read with `agreement.read_probe_set`)
a model reads `prefix` and we compare, at the next position, log p(verb) with log p(wrong):
the item counts as correct when log p(verb) > log p(wrong) strictly (a tie counts as wrong).
`verb` agrees in number with the subject `distance` words back, `wrong` is the other form.

Scoring is a callable `score(items) -> (logp_correct, logp_wrong)`, two float arrays (N,), so
an oracle or a subject-blind model plugs in as easily as a checkpoint; `checkpoint_scorer`
builds the one for a trained checkpoint, and `summarize` turns the two arrays into accuracy
per distance bin with Wilson score intervals and the mean log-probability margin.

Reading convention. The model reads `<eos> + prefix` from the zero state: at word level,
what training fed at a sentence start is the previous sentence's `<eos>`. Full-BPTT models
are trained exactly so (every sentence starts from zeros). Stream-trained models (TBPTT)
normally see the state carried from the previous sentences at a sentence start; reading from
zeros after `<eos>` is the choice made here, the same for every model, so that an item's
score depends on the item alone.

Bins. `bins` are ascending upper edges: [1, 2, 4, 8, 16, 30] gives 1, 2, 3-4, 5-8, 9-16,
17-30. The first bin also takes any shorter distance in the data and the last any longer
one (their labels say so); bins with no items are left out.

Interval. The Wilson score interval for k correct out of n at z = 1.96 (95%):

    centre = (p + z^2 / 2n) / (1 + z^2 / n),  half = z / (1 + z^2 / n) * sqrt(p(1-p)/n + z^2 / 4n^2)

with p = k / n. Unlike the normal approximation it stays inside [0, 1] and is not zero-width
at p = 0 or 1, which matters with 30-120 items per bin.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections import defaultdict
from importlib import resources
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from rnnlm_cli.data.agreement import AgreementItem, read_probe_set
from rnnlm_cli.errors import ConfigError, DataError

Z95 = 1.959963984540054                   # two-sided 95% quantile of the standard normal
DEFAULT_BINS = (1, 2, 4, 8, 16, 30)
DEFAULT_DATA = "agreement_probe.jsonl"    # package data of rnnlm_cli.data: corpora/agreement's probe set

Scorer = Callable[[Sequence[AgreementItem]], tuple[np.ndarray, np.ndarray]]


# --------------------------------------------------------------------------- statistics

def wilson_interval(correct: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval (low, high) for `correct` successes in `n` trials; (nan, nan) if n = 0."""
    if n <= 0:
        return math.nan, math.nan
    p = correct / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    # k = 0 and k = n touch the ends exactly (rounding would leave 1e-17 off)
    return (0.0 if correct <= 0 else max(0.0, centre - half)), (1.0 if correct >= n else min(1.0, centre + half))


def make_bins(edges: Sequence[int], distances: Sequence[int] = ()) -> list[tuple[int, int]]:
    """Inclusive (lo, hi) bins from ascending upper `edges`, widened to cover `distances`."""
    edges = [int(e) for e in edges]
    if not edges or edges[0] < 0 or any(a >= b for a, b in zip(edges, edges[1:])):
        raise ConfigError(f"probe.bins: expected strictly increasing distances >= 0, got {edges}")
    bins = [(0 if edges[0] == 0 else 1, edges[0])]
    bins += [(a + 1, b) for a, b in zip(edges, edges[1:])]
    if len(distances):
        low, high = int(min(distances)), int(max(distances))
        bins[0] = (min(bins[0][0], low), bins[0][1])
        bins[-1] = (bins[-1][0], max(bins[-1][1], high))
    return bins


def bin_label(lo: int, hi: int) -> str:
    return str(lo) if lo == hi else f"{lo}-{hi}"


def _row(correct: np.ndarray, margin: np.ndarray) -> dict:
    """n, correct, accuracy, Wilson 95% interval and mean margin of one group of items."""
    n, k = int(correct.size), int(correct.sum())
    low, high = wilson_interval(k, n)
    return {"n": n, "correct": k, "accuracy": k / n if n else None,
            "ci_low": low if n else None, "ci_high": high if n else None,
            "mean_margin": float(margin.mean()) if n else None}


def summarize(items: Sequence[AgreementItem], logp_correct, logp_wrong,
              edges: Sequence[int] = DEFAULT_BINS) -> dict:
    """Accuracy per distance bin, per distance and overall, from the two log-probability arrays.

    Returns {"bins": [{"bin", "lo", "hi", "n", "correct", "accuracy", "ci_low", "ci_high",
    "mean_margin"}], "distances": [{"distance", ...same keys...}], "overall": {...}}.
    """
    lc = np.asarray(logp_correct, dtype=np.float64)    # (N,)
    lw = np.asarray(logp_wrong, dtype=np.float64)      # (N,)
    if lc.shape != (len(items),) or lw.shape != (len(items),):
        raise ValueError(f"score returned shapes {lc.shape} and {lw.shape} for {len(items)} items")
    dist = np.array([item.distance for item in items], dtype=np.int64)   # (N,)
    margin = lc - lw
    correct = margin > 0
    bins = []
    for lo, hi in make_bins(edges, dist):
        sel = (dist >= lo) & (dist <= hi)
        if sel.any():
            bins.append({"bin": bin_label(lo, hi), "lo": lo, "hi": hi, **_row(correct[sel], margin[sel])})
    per_distance = [{"distance": int(d), **_row(correct[dist == d], margin[dist == d])}
                    for d in np.unique(dist)]
    return {"bins": bins, "distances": per_distance, "overall": _row(correct, margin)}


# --------------------------------------------------------------------------- scoring a checkpoint

def _log_softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)            # (B, V)
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def model_scorer(model, vocab, start_id: int, where: str = "the model", stats: dict | None = None) -> Scorer:
    """A scorer for `model` (a model.Model) with `vocab`; `start_id` is the `<eos>` id.

    Items of equal prefix length form one batch: one forward over `<eos> + prefix[:-1]` from
    the zero state, then one step on the last prefix word gives the next-token distribution.
    Each call sets stats["oov_prefix_tokens"] (when `stats` is given) to the number of prefix
    words read as `<unk>`.
    """
    stats = {} if stats is None else stats

    def score(items: Sequence[AgreementItem]) -> tuple[np.ndarray, np.ndarray]:
        # check the two verb forms, encode the prefixes (unknown prefix words -> <unk>)
        for item in items:
            for form in (item.verb, item.wrong):
                if form not in vocab:
                    raise DataError(f"verb form '{form}' (probe item '{' '.join(item.prefix)} "
                                    f"{item.verb}') is not in the vocabulary of {where}")
            if vocab.unk_id is None:
                for word in item.prefix:
                    if word not in vocab:
                        raise DataError(f"word '{word}' (probe item '{' '.join(item.prefix)} {item.verb}') "
                                        f"is not in the vocabulary of {where}, which has no <unk>")
        stats["oov_prefix_tokens"] = sum(w not in vocab for item in items for w in item.prefix)
        lc = np.empty(len(items), dtype=np.float64)     # (N,)
        lw = np.empty(len(items), dtype=np.float64)     # (N,)
        groups = defaultdict(list)
        for i, item in enumerate(items):
            groups[len(item.prefix)].append(i)
        # one batch per prefix length: read <eos> + prefix, score the next token
        for length, idx in groups.items():
            if length == 0:
                raise DataError("a probe item has an empty prefix")
            ids = np.array([[start_id] + [vocab.id(w) for w in items[i].prefix] for i in idx],
                           dtype=np.int64).T                               # (L+1, B)
            head = ids[:-1]                                                 # (L, B)
            fwd = model.forward(head, np.zeros_like(head), None, loss_start=len(head) - 1)
            logits, _ = model.step_logits(ids[-1], fwd.state)               # (B, V)
            logp = _log_softmax(logits)                                     # (B, V)
            rows = np.arange(len(idx))
            lc[idx] = logp[rows, [vocab.index[items[i].verb] for i in idx]]
            lw[idx] = logp[rows, [vocab.index[items[i].wrong] for i in idx]]
        return lc, lw

    return score


def _run_summary(path: str) -> dict:
    """summary.json beside a checkpoint (written when training ends), or {}."""
    import json

    try:
        with open(os.path.join(os.path.dirname(os.path.abspath(path)), "summary.json"), encoding="utf-8") as fh:
            summary = json.load(fh)
        return summary if isinstance(summary, dict) else {}
    except (OSError, ValueError):
        return {}


def checkpoint_scorer(path: str) -> tuple[Scorer, dict]:
    """(score, info) for a checkpoint written by training.

    info describes the model (cell, sizes, bptt, k1, k2, validation perplexity when the run's
    summary.json is beside it; oov_prefix_tokens once scored); the model's prepared-data
    folder gives the vocabulary.
    """
    from rnnlm_cli.data.corpus import separator_id
    from rnnlm_cli.runs import open_checkpoint

    if not os.path.isfile(path):
        raise DataError(f"checkpoint not found: {path}")
    run = open_checkpoint(path)
    model, cfg, prepared = run.model, run.cfg, run.prepared
    start = separator_id(prepared)
    if prepared.level != "word" or start is None:
        raise DataError(f"{path}: the probe needs a word-level model with an <eos> token "
                        f"(this one is {prepared.level} level)")
    tc = cfg.train
    summary = _run_summary(path)
    info = {"path": path, "cell": cfg.model.cell, "recurrent_init": cfg.model.recurrent_init,
            "hidden_size": cfg.model.hidden_size, "embedding_size": cfg.model.embedding_size,
            "bptt": tc.bptt, "k1": tc.k1 if tc.bptt != "full" else None,
            "k2": (tc.k2 or tc.k1) if tc.bptt == "stream" else None,
            "valid_ppl": summary.get("best_valid_ppl", summary.get("valid_ppl")),
            "oov_prefix_tokens": 0}
    return model_scorer(model, prepared.vocab, start, where=path, stats=info), info


def checkpoint_labels(paths: Sequence[str]) -> list[str]:
    """The run folder's name of each checkpoint (runs/probe/gru/best.npz -> gru); the path
    itself where two would share a name."""
    names = [Path(os.path.abspath(p)).parent.name or p for p in paths]
    return [p if names.count(n) > 1 else n for n, p in zip(names, paths)]


# --------------------------------------------------------------------------- the probe

def _display_path(path: str | os.PathLike) -> str:
    """The path relative to the current folder when it lies inside it, else as given."""
    rel = os.path.relpath(os.path.abspath(path))
    return str(path) if rel.startswith("..") else rel


def load_items(path: str | os.PathLike) -> list[AgreementItem]:
    """Probe items from a JSON-lines file; DataError when missing or empty."""
    if not os.path.isfile(path):
        raise DataError(f"probe file not found: {path}")
    items = read_probe_set(path)
    if not items:
        raise DataError(f"probe file {path} holds no items")
    return items


def run_probe(items: Sequence[AgreementItem], scorers: Sequence[tuple[str, Scorer, dict]],
              edges: Sequence[int] = DEFAULT_BINS, data: str | None = None) -> dict:
    """The probe result for several models; `scorers` is a list of (label, score, info).

    Result (the JSON schema of `rnnlm probe --format json`):
      {"data", "items", "distance_range": [lo, hi], "bin_edges", "confidence": 0.95,
       "interval": "wilson", "rule", "models": [{"label", **info, "bins": [...],
       "distances": [...], "overall": {...}}]}
    """
    make_bins(edges)   # validate before any scoring
    distances = [item.distance for item in items]
    models = []
    for label, score, info in scorers:
        lc, lw = score(items)
        models.append({"label": label, **info, **summarize(items, lc, lw, edges)})
    return {"data": None if data is None else str(data), "items": len(items),
            "distance_range": [min(distances), max(distances)], "bin_edges": [int(e) for e in edges],
            "confidence": 0.95, "interval": "wilson",
            "rule": "correct when log p(verb) > log p(wrong) after reading <eos> + prefix from the zero state",
            "models": models}


def default_probe_file():
    """The probe set shipped with the package (an importlib.resources Traversable)."""
    return resources.files("rnnlm_cli.data").joinpath(DEFAULT_DATA)


def probe_checkpoints(checkpoints: Sequence[str], data: str | None = None,
                      edges: Sequence[int] = DEFAULT_BINS) -> dict:
    """`run_probe` over checkpoint files; `data` None reads the probe set shipped with the package."""
    if not checkpoints:
        raise ConfigError("give at least one checkpoint")
    make_bins(edges)
    with contextlib.nullcontext(data) if data else resources.as_file(default_probe_file()) as source:
        path = _display_path(source)
        items = load_items(path)
    scorers = []
    for label, ck in zip(checkpoint_labels(checkpoints), checkpoints):
        score, info = checkpoint_scorer(ck)
        scorers.append((label, score, info))
    return run_probe(items, scorers, edges, data=path)
