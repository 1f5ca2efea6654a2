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

from rnnlm_cli.config import resolved_k2
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
    score, info, _ = _open_scorer(path)
    return score, info


def _open_scorer(path: str):
    """(score, info, cfg): checkpoint_scorer's pair and the checkpoint's own Config."""
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
            "k2": resolved_k2(cfg) if tc.bptt == "stream" else None,
            "valid_ppl": summary.get("best_valid_ppl", summary.get("valid_ppl")),
            "oov_prefix_tokens": 0}
    return model_scorer(model, prepared.vocab, start, where=path, stats=info), info, cfg


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


def _probe_set(checkpoints: Sequence[str], data: str | None, edges: Sequence[int]) -> tuple[str, list]:
    """(shown path, items) of the probe set, after checking there is a checkpoint and the bins
    are valid; `data` None reads the probe set shipped with the package."""
    if not checkpoints:
        raise ConfigError("give at least one checkpoint")
    make_bins(edges)
    with contextlib.nullcontext(data) if data else resources.as_file(default_probe_file()) as source:
        path = _display_path(source)
        return path, load_items(path)


def probe_checkpoints(checkpoints: Sequence[str], data: str | None = None,
                      edges: Sequence[int] = DEFAULT_BINS) -> dict:
    """`run_probe` over checkpoint files; `data` None reads the probe set shipped with the package."""
    path, items = _probe_set(checkpoints, data, edges)
    scorers = []
    for label, ck in zip(checkpoint_labels(checkpoints), checkpoints):
        score, info = checkpoint_scorer(ck)
        scorers.append((label, score, info))
    return run_probe(items, scorers, edges, data=path)


# --------------------------------------------------------------------------- over seeds
#
# One number from one seed is not a finding: a model trained again with another seed (or the
# same seed after a change that only moves float rounding) can land elsewhere. With several
# runs of one configuration that differ only in train.seed, each statistic is reported as its
# mean over seeds, its range (lowest and highest seed) and the per-seed values. With 3-5 seeds
# the range is the honest summary: a standard deviation or a bootstrap over so few values
# would suggest a precision that is not there.

SEED_KEYS = ("seed", "out")          # train keys in which the runs of one model may differ
MODEL_FIELDS = ("cell", "recurrent_init", "hidden_size", "embedding_size", "bptt", "k1", "k2")


def spread(values: Sequence[float | None]) -> dict:
    """{"mean", "min", "max", "per_seed"} of one statistic over seeds; mean, min and max are
    None when any seed's value is None (a statistic missing for one seed has no spread)."""
    values = [None if v is None else float(v) for v in values]
    if not values or any(v is None for v in values):
        return {"mean": None, "min": None, "max": None, "per_seed": values}
    return {"mean": math.fsum(values) / len(values), "min": min(values), "max": max(values), "per_seed": values}


def model_key(cfg) -> str:
    """What makes two runs the same model: the data, model and train sections, train.seed
    and train.out set aside (JSON text, comparable with ==)."""
    import json

    doc = cfg.to_dict()
    train = {k: v for k, v in doc["train"].items() if k not in SEED_KEYS}
    return json.dumps({"data": doc["data"], "model": doc["model"], "train": train}, sort_keys=True, default=str)


def group_label(paths: Sequence[str]) -> str:
    """The name of the folder that holds a model's run folders (runs/probe/gru/seed2/best.npz
    -> gru), or the first run's label when the runs do not share one."""
    parents = {os.path.dirname(os.path.dirname(os.path.abspath(p))) for p in paths}
    if len(parents) == 1:
        return os.path.basename(parents.pop()) or checkpoint_labels(paths[:1])[0]
    return checkpoint_labels(paths[:1])[0]


def _spread_rows(runs: Sequence[dict], key: str, ident: tuple[str, ...]) -> list[dict]:
    """Row i of runs[*][key] (bins or distances) as one row: accuracy and margin over seeds."""
    first = runs[0][key]
    if any([tuple(r[k] for k in ident) for r in run[key]] != [tuple(r[k] for k in ident) for r in first]
           for run in runs):
        raise DataError(f"the runs of {runs[0].get('label')} were scored on different {key}")
    rows = []
    for i, row in enumerate(first):
        same = [run[key][i] for run in runs]
        rows.append({**{k: row[k] for k in ident}, "n": row["n"],
                     "accuracy": spread([r["accuracy"] for r in same]),
                     "mean_margin": spread([r["mean_margin"] for r in same])})
    return rows


def aggregate_seeds(label: str, runs: Sequence[dict]) -> dict:
    """One model over seeds from the probe entries of its runs (`run_probe` model dicts, each
    with its "seed"): {"label", cell, ..., "seeds", "valid_ppl": spread, "bins": [{"bin", "lo",
    "hi", "n", "accuracy": spread, "mean_margin": spread}], "distances": [...], "overall":
    {"n", "accuracy", "mean_margin"}, "runs": the per-seed entries, by seed}."""
    runs = sorted(runs, key=lambda r: r["seed"])
    seeds = [r["seed"] for r in runs]
    for a, b in zip(runs, runs[1:]):
        if a["seed"] == b["seed"]:
            raise ConfigError(f"{a.get('path', a['label'])} and {b.get('path', b['label'])} are the same model "
                              f"with the same train.seed ({a['seed']}): give each seed once")
    overall = {"n": runs[0]["overall"]["n"], "accuracy": spread([r["overall"]["accuracy"] for r in runs]),
               "mean_margin": spread([r["overall"]["mean_margin"] for r in runs])}
    return {"label": label, **{k: runs[0].get(k) for k in MODEL_FIELDS}, "seeds": seeds,
            "valid_ppl": spread([r.get("valid_ppl") for r in runs]),
            "bins": _spread_rows(runs, "bins", ("bin", "lo", "hi")),
            "distances": _spread_rows(runs, "distances", ("distance",)),
            "overall": overall, "runs": list(runs)}


def probe_over_seeds(checkpoints: Sequence[str], data: str | None = None,
                     edges: Sequence[int] = DEFAULT_BINS) -> dict:
    """`rnnlm probe --over-seeds`: checkpoints whose configurations differ only in train.seed
    (and train.out) form one model, reported over its seeds (`aggregate_seeds`); models keep
    the order of their first checkpoint. The result has run_probe's top-level fields,
    "over_seeds": true, and one aggregated entry per model."""
    path, items = _probe_set(checkpoints, data, edges)
    scorers, groups = [], {}
    for label, ck in zip(checkpoint_labels(checkpoints), checkpoints):
        score, info, cfg = _open_scorer(ck)
        scorers.append((label, score, {**info, "seed": cfg.train.seed}))
        groups.setdefault(model_key(cfg), []).append(len(scorers) - 1)
    result = run_probe(items, scorers, edges, data=path)
    members = list(groups.values())
    labels = [group_label([checkpoints[i] for i in idx]) for idx in members]
    labels = [lab if labels.count(lab) == 1 else _display_path(os.path.dirname(checkpoints[idx[0]]))
              for lab, idx in zip(labels, members)]
    models = [aggregate_seeds(lab, [result["models"][i] for i in idx]) for lab, idx in zip(labels, members)]
    return {**result, "over_seeds": True, "models": models}


# --------------------------------------------------------------------------- gradient horizons

def _diagnosis_for(entry: dict, diagnoses: dict[str, dict]) -> dict:
    """The diagnose-gradients model entry of one probed run: the diagnosis saved in the
    checkpoint's folder, or, for a result without paths, the one whose folder is named like
    the run's label; {} when there is none."""
    diag = diagnoses.get(os.path.dirname(os.path.abspath(entry["path"]))) if entry.get("path") else None
    if diag is None:
        diag = next((d for folder, d in diagnoses.items() if os.path.basename(folder) == entry["label"]), None)
    return diag["models"][0] if diag and diag.get("models") else {}


def add_horizons(result: dict, diagnoses: dict[str, dict]) -> dict:
    """A copy of a probe result with each run's gradient horizon from `rnnlm diagnose-gradients
    --checkpoint RUN/best.npz --format json` (`diagnoses`: RUN folder, absolute -> that JSON).

    Each run gets "horizon", "horizon_is_lower_bound" and "half_life" (None without a
    diagnosis); over seeds, the model gets "horizon" and "half_life" as spreads and
    "horizon_is_lower_bound" per seed. Top level: "horizon_steps" and "horizon_threshold"."""
    import copy

    out = copy.deepcopy(result)
    diagnoses = {os.path.abspath(folder): d for folder, d in diagnoses.items()}
    for model in out["models"]:
        runs = model["runs"] if out.get("over_seeds") else [model]
        for run in runs:
            entry = _diagnosis_for(run, diagnoses)
            run.update({"horizon": entry.get("horizon"), "horizon_is_lower_bound": entry.get("horizon_is_lower_bound"),
                        "half_life": entry.get("half_life")})
        if out.get("over_seeds"):
            model.update({"horizon": spread([r["horizon"] for r in runs]),
                          "horizon_is_lower_bound": [r["horizon_is_lower_bound"] for r in runs],
                          "half_life": spread([r["half_life"] for r in runs])})
    present = [d for d in diagnoses.values() if d]
    out["horizon_steps"] = next((d.get("steps") for d in present), None)
    out["horizon_threshold"] = next((d.get("threshold") for d in present), None)
    return out
