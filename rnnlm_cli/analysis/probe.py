"""Long-range agreement accuracy by distance (`rnnlm probe`).

For each probe item (`corpora/agreement/probe.jsonl`, read with `agreement.read_probe_set`)
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

import importlib
import csv
import io
import math
import os
from collections import defaultdict
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from rnnlm_cli.data.agreement import AgreementItem, read_probe_set
from rnnlm_cli.errors import ConfigError, DataError, RnnlmError

Z95 = 1.959963984540054                   # two-sided 95% quantile of the standard normal
DEFAULT_BINS = (1, 2, 4, 8, 16, 30)
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "corpora" / "agreement" / "probe.jsonl"

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


def probe_checkpoints(checkpoints: Sequence[str], data: str | None = None,
                      edges: Sequence[int] = DEFAULT_BINS) -> dict:
    """`run_probe` over checkpoint files; `data` None reads the repository's probe.jsonl."""
    if not checkpoints:
        raise ConfigError("give at least one checkpoint")
    make_bins(edges)
    path = _display_path(data if data else DEFAULT_DATA)
    items = load_items(path)
    scorers = []
    for label, ck in zip(checkpoint_labels(checkpoints), checkpoints):
        score, info = checkpoint_scorer(ck)
        scorers.append((label, score, info))
    return run_probe(items, scorers, edges, data=path)


# --------------------------------------------------------------------------- rendering

def _fmt(value, spec: str, empty: str = "-") -> str:
    return empty if value is None else format(value, spec)


def render_table(result: dict) -> str:
    """Rows = distance bins (and all), one column group per model: accuracy, 95% CI, margin."""
    models = result["models"]
    lo, hi = result["distance_range"]
    lines = [f"probe: {result['data']}, {result['items']} items, distance {lo}-{hi}",
             "acc: share of items with log p(verb) > log p(wrong); 95% CI: Wilson score interval; "
             "margin: mean log p(verb) - log p(wrong) in nats"]
    width = 26                                   # "  " + acc 5 + " " + CI 11 + " " + margin 6
    labels = [m["label"] if len(m["label"]) <= width - 2 else "..." + m["label"][5 - width:] for m in models]
    lines.append("".ljust(13) + "".join(f"  {label:<{width - 2}}" for label in labels).rstrip())
    lines.append(f"{'distance':<8}{'n':>5}" + f"  {'acc':>5} {'95% CI':<11} {'margin':>6}" * len(models))
    rows = [(b["bin"], [m["bins"][i] for m in models]) for i, b in enumerate(models[0]["bins"])] if models else []
    rows.append(("all", [m["overall"] for m in models]))
    for name, cells in rows:
        line = f"{name:<8}{cells[0]['n']:>5}"
        for c in cells:
            ci = "-" if c["ci_low"] is None else f"[{c['ci_low']:.2f},{c['ci_high']:.2f}]"
            line += f"  {_fmt(c['accuracy'], '.3f'):>5} {ci:<11} {_fmt(c['mean_margin'], '+.2f'):>6}"
        lines.append(line)
    ppl = [m.get("valid_ppl") for m in models]
    if any(p is not None for p in ppl):
        lines.append(f"{'valid ppl':<13}" + "".join(f"  {_fmt(p, '.2f'):>5}{'':<{width - 7}}" for p in ppl).rstrip())
    return "\n".join(lines)


CSV_FIELDS = ("label", "bin", "lo", "hi", "n", "correct", "accuracy", "ci_low", "ci_high", "mean_margin")


def render_csv(result: dict) -> str:
    """One row per (model, bin), then an `all` row per model; columns CSV_FIELDS."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for m in result["models"]:
        lo, hi = result["distance_range"]
        for row in m["bins"] + [{"bin": "all", "lo": lo, "hi": hi, **m["overall"]}]:
            writer.writerow([m["label"]] + [("" if row[k] is None else row[k]) for k in CSV_FIELDS[1:]])
    return out.getvalue()


def check_plotting() -> None:
    """Raise RnnlmError unless matplotlib can be imported (call before any work)."""
    try:
        importlib.import_module("matplotlib")
    except ImportError:
        raise RnnlmError("--plot needs matplotlib, which is not installed "
                         "(pip install 'rnnlm[plot]')") from None


def plot(result: dict, path: str) -> None:
    """Accuracy against distance, one line per model: bins with their Wilson intervals, and
    per-distance accuracy as faint dots; chance (0.5) dashed."""
    check_plotting()
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for m in result["models"]:
        mid = [(b["lo"] + b["hi"]) / 2 for b in m["bins"]]
        acc = [b["accuracy"] for b in m["bins"]]
        err = [[a - b["ci_low"] for a, b in zip(acc, m["bins"])], [b["ci_high"] - a for a, b in zip(acc, m["bins"])]]
        line = ax.errorbar(mid, acc, yerr=err, marker="o", capsize=3, label=m["label"])
        ax.plot([d["distance"] for d in m["distances"]], [d["accuracy"] for d in m["distances"]],
                ".", alpha=0.25, color=line[0].get_color())
    ax.axhline(0.5, color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel("distance (words between subject and verb)")
    ax.set_ylabel("agreement accuracy")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize="small")
    ax.set_title(f"{result['items']} probe items; bins with Wilson 95% intervals")
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=120)
    except OSError as exc:
        raise DataError(f"cannot write plot {path}: {exc.strerror}") from None
    finally:
        plt.close(fig)


# --------------------------------------------------------------------------- horizons

def horizon_table(result: dict, diagnoses: dict[str, dict]) -> str:
    """Each model's gradient horizon (from `rnnlm diagnose-gradients --format json`, keyed by
    the probe label) next to its accuracy in the two longest distance bins."""
    lines = []
    for m in result["models"]:
        diag = diagnoses.get(m["label"])
        entry = diag["models"][0] if diag and diag.get("models") else {}
        horizon = entry.get("horizon")
        shown = "-" if horizon is None else f"{'>=' if entry.get('horizon_is_lower_bound') else ''}{horizon}"
        half = entry.get("half_life")
        cells = []
        for b in m["bins"][-2:]:
            cells.append(f"{b['accuracy']:.3f} [{b['ci_low']:.2f},{b['ci_high']:.2f}]")
        lines.append((m["label"], shown, "-" if half is None else f"{half:.1f}", cells))
    bins = [b["bin"] for b in result["models"][0]["bins"][-2:]] if result["models"] else []
    steps = next((d.get("steps") for d in diagnoses.values() if d), None)
    threshold = next((d.get("threshold") for d in diagnoses.values() if d), None)
    head = (f"{'model':<12}{'horizon':>8}{'half-life':>10}" + "".join(f"  {'acc ' + b:<19}" for b in bins)).rstrip()
    out = [f"gradient horizon (largest lag whose normalised gradient norm stays above {threshold}, "
           f"T = {steps}) against agreement accuracy at long distances", head]
    out += [f"{label:<12}{shown:>8}{half:>10}" + "".join(f"  {c:<19}" for c in cells).rstrip()
            for label, shown, half, cells in lines]
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    """python -m rnnlm_cli.analysis.probe PROBE.json DIAG.json...: the horizon table of `make probe`.

    PROBE.json is `rnnlm probe --format json`; each DIAG.json is `rnnlm diagnose-gradients
    --checkpoint RUN/best.npz --format json` saved in RUN/, matched to the probe model of the
    same run-folder name.
    """
    import argparse
    import json
    import sys

    parser = argparse.ArgumentParser(prog="python -m rnnlm_cli.analysis.probe", description=main.__doc__.split("\n")[0])
    parser.add_argument("probe_json")
    parser.add_argument("diagnose_json", nargs="+")
    args = parser.parse_args(argv)
    try:
        docs = {}
        for path in [args.probe_json, *args.diagnose_json]:
            try:
                with open(path, encoding="utf-8") as fh:
                    docs[path] = json.load(fh)
            except (OSError, ValueError) as exc:
                raise DataError(f"cannot read {path}: {exc}") from None
        diagnoses = {Path(os.path.abspath(p)).parent.name: docs[p] for p in args.diagnose_json}
        print(horizon_table(docs[args.probe_json], diagnoses))
    except (RnnlmError, KeyError, TypeError, IndexError) as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
