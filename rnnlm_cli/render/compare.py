"""`rnnlm compare`: many training runs side by side, read from their folders.

find_runs(paths)    run folders: each path a run folder, or a folder searched (two levels deep)
                    for run folders, e.g. a sweep's or a tune study's
read_run(folder)    one run: its status, its configuration, its figures, its validation curve
compare(paths)      {"runs": [...], "differing_keys": [...]}: only the config keys that differ
                    between the runs are kept (train.out always differs and is left out)

A run's status, from what the trainer leaves behind (train/lock.py, trainer.py):
  finished     summary.json exists (written when training ends, however it stopped: epochs,
               max_steps, min_lr)
  running      a live process holds its train.lock
  crashed      train.lock is left by a process that is gone (killed: SIGKILL, out of memory, a
               lost machine), or, for a sweep's run, its log says it exited with an error
  unfinished   none of these: stopped by a signal (its checkpoint resumes it) or by an error
               the trainer reported (non-finite values), or pruned by `rnnlm tune`
"""

from __future__ import annotations

import glob
import json
import math
import os
import re
import statistics
from collections import Counter

import yaml

from rnnlm_cli.errors import ConfigError, DataError
from rnnlm_cli.paths import folder_kind, shown
from rnnlm_cli.render.report import csv_text, require_matplotlib, save_png, table
from rnnlm_cli.train.lock import LOCK_NAME, LockError, RunLock
from rnnlm_cli.train.metrics import read_metrics

FIGURES = ("best_valid_ppl", "valid_ppl", "test_ppl", "epochs", "steps", "wall_time_s", "tokens_per_sec", "clip_rate")
COLUMNS = ("run", "status") + FIGURES
LOWER_IS_BETTER = ("best_valid_ppl", "valid_ppl", "test_ppl")


def find_runs(paths) -> list[str]:
    """The run folders named by `paths` (a run folder, a folder of runs, or a glob pattern)."""
    found: list[str] = []
    for path in paths:
        matches = [path] if os.path.exists(path) else sorted(glob.glob(path))
        if not matches:
            raise DataError(f"{shown(path)} does not exist")
        for m in matches:
            if folder_kind(m) == "run":
                found.append(m)
            elif os.path.isdir(m):
                inner = [os.path.join(m, a) for a in sorted(os.listdir(m))]
                for sub in inner:
                    if folder_kind(sub) == "run":
                        found.append(sub)
                    elif os.path.isdir(sub):
                        found += [os.path.join(sub, b) for b in sorted(os.listdir(sub))
                                  if folder_kind(os.path.join(sub, b)) == "run"]
    unique = list(dict.fromkeys(os.path.normpath(f) for f in found))
    if not unique:
        raise DataError(f"no training runs in {', '.join(shown(p) for p in paths)} (a run folder holds "
                        f"metrics.jsonl, checkpoint.npz or summary.json)")
    return unique


def _read_json(path: str):
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
        return doc if isinstance(doc, dict) else None
    except (OSError, ValueError):
        return None


def _flat_config(folder: str) -> dict:
    try:
        with open(os.path.join(folder, "config.yaml"), encoding="utf-8") as fh:
            doc = yaml.safe_load(fh)
    except (OSError, yaml.YAMLError):
        return {}
    if not isinstance(doc, dict):
        return {}
    return {f"{s}.{k}": v for s, keys in doc.items() if isinstance(keys, dict) for k, v in keys.items()}


def _sweep_exit(folder: str) -> int | None:
    """The last exit code a sweep logged for this run (SWEEP/logs/NAME.log), if any."""
    log = os.path.join(os.path.dirname(os.path.abspath(folder)), "logs", os.path.basename(folder) + ".log")
    try:
        with open(log, encoding="utf-8", errors="replace") as fh:
            codes = re.findall(r"^# sweep exit (-?\d+)", fh.read(), re.M)
    except OSError:
        return None
    return int(codes[-1]) if codes else None


def run_status(folder: str) -> str:
    if os.path.isfile(os.path.join(folder, "summary.json")):
        return "finished"
    try:
        RunLock(folder).check()
    except LockError:
        return "running"
    if os.path.exists(os.path.join(folder, LOCK_NAME)):
        return "crashed"
    code = _sweep_exit(folder)
    if code is not None and code not in (0, 130, 143, -2, -15):
        return "crashed"
    return "unfinished"


def _ppl(loss):
    return math.exp(loss) if isinstance(loss, (int, float)) and math.isfinite(loss) and loss < 700 else None


def read_run(folder: str) -> dict:
    """One run's status, configuration (flat keys) and figures; the curve is its validation
    evaluations during training: [{"step", "elapsed", "ppl"}]."""
    status = run_status(folder)
    metrics = [entry for _, entry in read_metrics(folder)] if os.path.isfile(os.path.join(folder, "metrics.jsonl")) \
        else []
    curve = [{"step": m.get("step"), "elapsed": m.get("elapsed"), "ppl": m.get("ppl")}
             for m in metrics if m.get("split") == "valid" and not m.get("final")]
    summary = _read_json(os.path.join(folder, "summary.json")) if status == "finished" else None
    figures = dict.fromkeys(FIGURES)
    if summary is not None:
        for key in FIGURES:
            figures[key] = summary.get(key)
        if figures["best_valid_ppl"] is None:
            figures["best_valid_ppl"] = figures["valid_ppl"]
    else:                                   # what the log says so far
        ppls = [c["ppl"] for c in curve if isinstance(c["ppl"], (int, float))]
        steps = [m for m in metrics if "split" not in m]
        figures["best_valid_ppl"] = min(ppls) if ppls else None
        figures["steps"] = steps[-1].get("step") if steps else None
        figures["epochs"] = max((m.get("epoch", 0) for m in metrics if m.get("split") == "valid"), default=None)
        figures["wall_time_s"] = curve[-1]["elapsed"] if curve else None
        rates = [m["tokens_per_sec"] for m in steps if isinstance(m.get("tokens_per_sec"), (int, float))]
        figures["tokens_per_sec"] = sum(rates) / len(rates) if rates else None
        flags = [bool(m.get("clipped")) for m in steps]
        figures["clip_rate"] = sum(flags) / len(flags) if flags else None     # of the logged updates only
    return {"run": folder, "status": status, "config": _flat_config(folder), **figures, "curve": curve}


def compare(paths, sort: str | None = None) -> dict:
    runs = [read_run(f) for f in find_runs(paths)]
    keys = sorted({k for r in runs for k in r["config"]} - {"train.out"})
    differing = [k for k in keys
                 if len({json.dumps(r["config"].get(k, "<absent>"), sort_keys=True, default=str) for r in runs}) > 1]
    for r in runs:
        r["config"] = {k: r["config"].get(k) for k in differing}
    prefix = os.path.commonpath([os.path.abspath(r["run"]) for r in runs]) if len(runs) > 1 else None
    for r in runs:
        r["name"] = os.path.relpath(os.path.abspath(r["run"]), prefix) if prefix else os.path.basename(
            os.path.normpath(r["run"]))
    if sort is not None:
        runs = sort_runs(runs, sort, differing)
    return {"runs": runs, "differing_keys": differing}


def sort_runs(runs: list[dict], column: str, keys: list[str]) -> list[dict]:
    """Sorted by a figure (lowest first; tokens/s highest first), `run`, `status` or a differing
    config key; runs without a value come last."""
    if column not in COLUMNS and column not in keys:
        raise ConfigError(f"--sort {column!r}: not a column; choose one of {', '.join(COLUMNS + tuple(keys))}")

    def value(r):
        v = r["config"].get(column) if column in keys else r.get(column)
        if column == "run":
            v = r["name"]
        return v

    present = [r for r in runs if value(r) is not None]
    absent = [r for r in runs if value(r) is None]
    reverse = column == "tokens_per_sec"
    try:
        present.sort(key=value, reverse=reverse)
    except TypeError:
        present.sort(key=lambda r: str(value(r)), reverse=reverse)
    return present + absent


# --------------------------------------------------------------------------- rendering

def _cell(v, digits: int = 4):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v)


def compare_text(result: dict) -> str:
    keys = result["differing_keys"]
    headers = ["run", "status", *keys, "best valid ppl", "valid ppl", "test ppl", "epochs", "steps", "wall s",
               "tokens/s", "clip rate"]
    rows = [[r["name"], r["status"], *[_cell(r["config"].get(k)) for k in keys],
             _cell(r["best_valid_ppl"]), _cell(r["valid_ppl"]), _cell(r["test_ppl"]), _cell(r["epochs"]),
             _cell(r["steps"]), _cell(r["wall_time_s"], 3), _cell(r["tokens_per_sec"], 3), _cell(r["clip_rate"], 3)]
            for r in result["runs"]]
    return table(headers, rows)


def compare_csv(result: dict) -> str:
    keys = result["differing_keys"]
    rows = [[r["name"], r["status"], *[r["config"].get(k) for k in keys], *[r[f] for f in FIGURES]]
            for r in result["runs"]]
    return csv_text(["run", "status", *keys, *FIGURES], rows)


def compare_json(result: dict) -> dict:
    return {"differing_keys": result["differing_keys"],
            "runs": [{"run": r["run"], "name": r["name"], "status": r["status"], "config": r["config"],
                      **{f: r[f] for f in FIGURES}, "curve": r["curve"]} for r in result["runs"]]}


def plot_compare(result: dict, path: str, x: str = "updates") -> None:
    """Validation perplexity (log axis) of every run against updates or wall time."""
    plt = require_matplotlib()
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for r in result["runs"]:
        points = [c for c in r["curve"] if isinstance(c["ppl"], (int, float)) and c["ppl"] > 0
                  and c["step" if x == "updates" else "elapsed"] is not None]
        if not points:
            continue
        xs = [c["step"] if x == "updates" else c["elapsed"] for c in points]
        label = r["name"] if r["status"] == "finished" else f"{r['name']} ({r['status']})"
        ax.plot(xs, [c["ppl"] for c in points], marker="o", markersize=3, label=label)
    ax.set_yscale("log")
    ax.set_xlabel("updates" if x == "updates" else "wall time (s)")
    ax.set_ylabel("validation perplexity")
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    save_png(fig, path, dpi=110)


def changed_text(changed: dict) -> str:
    """An ablation run's changed keys as Markdown, values as YAML writes them; "(the base)" for none."""
    return ", ".join(f"`{k}: {str(v).lower() if isinstance(v, bool) else _cell(v)}`"
                     for k, v in changed.items()) or "(the base)"


def ablation_rows(result: dict) -> list[dict]:
    """An ablation read from compare's result (its runs from `rnnlm sweep --ablate`): the base run
    (named base-HASH) first, then every other run with the keys it changes against the base and its
    test and validation perplexity relative to the base's. ValueError without exactly one base run."""
    runs = result["runs"]
    bases = [r for r in runs if r["name"].startswith("base-")]
    if len(bases) != 1:
        raise ValueError(f"an ablation has one run named base-HASH; found {len(bases)}")
    base = bases[0]
    rows = []
    for r in [base] + [r for r in runs if r is not base]:
        changed = {k: r["config"].get(k) for k in result["differing_keys"]
                   if r["config"].get(k) != base["config"].get(k)}
        rows.append({"name": r["name"], "status": r["status"], "changed": changed,
                     **{f: r[f] for f in ("valid_ppl", "test_ppl", "epochs", "wall_time_s")},
                     "test_change": (None if r is base or r["test_ppl"] is None or base["test_ppl"] is None
                                     else r["test_ppl"] - base["test_ppl"])})
    return rows


def unigram_perplexity(train: list[str], heldout: list[str]) -> float:
    """The perplexity on `heldout` of the unigram model of `train` (each token's relative frequency
    there): what a language model scores when its prediction ignores the context. ValueError when
    a held-out token never occurs in train (its probability would be zero)."""
    counts = Counter(train)
    unseen = next((t for t in heldout if t not in counts), None)
    if unseen is not None:
        raise ValueError(f"the held-out token {unseen!r} does not occur in the training tokens")
    if not heldout:
        raise ValueError("no held-out tokens")
    log_total = math.log(len(train))
    return math.exp(sum(log_total - math.log(counts[t]) for t in heldout) / len(heldout))


STUCK_FRACTION = 0.9   # a run is stuck when its test perplexity is above this fraction of the unigram model's


def ablation_seed_rows(results: dict[int, dict]) -> list[dict]:
    """An ablation repeated once per seed ({seed: compare's result of that seed's sweep}): one row per
    change against the base, the base first, each with its test perplexity per seed (None where that
    seed has no finished run of it) and their median; each change also with its difference from the
    base of the same seed, per seed (None where either is missing), their median, lowest and highest.
    The changes come in the order of that median."""
    rows: dict[str, dict] = {}
    seeds = sorted(results)
    for seed in seeds:
        for row in ablation_rows(results[seed]):
            key = json.dumps(row["changed"], sort_keys=True)
            entry = rows.setdefault(key, {"changed": row["changed"], "test_ppl": {s: None for s in seeds}})
            entry["test_ppl"][seed] = row["test_ppl"] if row["status"] == "finished" else None
    ordered = sorted(rows.values(), key=lambda r: bool(r["changed"]))          # the base ({}) first
    base = ordered[0]["test_ppl"]
    for row in ordered:
        values = [v for v in row["test_ppl"].values() if v is not None]
        row["median"] = statistics.median(values) if values else None
        row["change"] = {s: None if not row["changed"] or v is None or base[s] is None else v - base[s]
                         for s, v in row["test_ppl"].items()}
        changes = [c for c in row["change"].values() if c is not None]
        row["change_median"] = statistics.median(changes) if changes else None
        row["change_range"] = (min(changes), max(changes)) if changes else None
    ordered[1:] = sorted(ordered[1:], key=lambda r: math.inf if r["change_median"] is None else r["change_median"])
    return ordered


def ablation_seeds_markdown(results: dict[int, dict], unigram_ppl: float | None = None) -> str:
    """A Markdown table of an ablation over seeds (ablation_seed_rows): per change its test perplexity
    for each seed and their median, and its change against the base of the same seed: the median over
    the seeds and the range (+: the removed part helped). With the unigram model's test perplexity,
    runs above STUCK_FRACTION of it are marked †."""
    rows = ablation_seed_rows(results)
    seeds = sorted(results)

    def ppl(v):
        if v is None:
            return "-"
        stuck = unigram_ppl is not None and v > STUCK_FRACTION * unigram_ppl
        return f"{v:.1f}{' †' if stuck else ''}"

    def change(row):
        if row["change_median"] is None:
            return ""
        low, high = row["change_range"]
        return f"{row['change_median']:+.1f} ({low:+.1f} to {high:+.1f})" if low != high else f"{low:+.1f}"

    lines = ["| changed against the base | " + " | ".join(f"seed {s}" for s in seeds)
             + " | median | change against the same seed's base: median (range) |",
             "|---|" + "---|" * len(seeds) + "---|---|"]
    for row in rows:
        lines.append(f"| {changed_text(row['changed'])} | " + " | ".join(ppl(row["test_ppl"][s]) for s in seeds)
                     + f" | {'-' if row['median'] is None else format(row['median'], '.1f')} | {change(row)} |")
    return "\n".join(lines)
