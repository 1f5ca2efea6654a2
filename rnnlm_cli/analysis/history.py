"""Training history: gradient-norm statistics of a training run, from its metrics log.

`rnnlm train` appends one JSON line per logged update to OUT/metrics.jsonl (README: step,
epoch, grad_norm before clipping, clipped, nonfinite_skipped, param_grad_norms, ...) and one
line with "split" per evaluation. `history_report(OUT)` reads that log and summarises what the
gradient did during training: percentiles of the pre-clip norm, the clip rate, non-finite
events, the largest spikes against a running median, the trend by epoch and per-parameter
norms. `rnnlm diagnose-gradients --run OUT` prints it (report.diagnostics_text) and puts it
under "history" in the JSON.
"""

from __future__ import annotations

import math
import os
import re

import numpy as np

from rnnlm_cli.values import jsonable
from rnnlm_cli.errors import DataError
from rnnlm_cli.train.metrics import metrics_path, read_metrics

SPIKE_WINDOW = 50   # a spike is measured against the median of up to this many previous lines


def _read_metrics(run_dir: str) -> tuple[str, list[tuple[int, dict]], int]:
    """(path, [(line number, step line)], number of evaluation lines) of OUT/metrics.jsonl."""
    if not os.path.isdir(run_dir):
        raise DataError(f"run folder not found: {run_dir}")
    path = metrics_path(run_dir)
    if not os.path.isfile(path):
        raise DataError(f"{path} not found (is {run_dir} the output folder of 'rnnlm train'?)")
    steps, evals = [], 0
    for lineno, obj in read_metrics(run_dir, strict=True):
        if "split" in obj:
            evals += 1
            continue
        for key in ("step", "grad_norm"):
            value = obj.get(key)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise DataError(f"{path}, line {lineno}: a step line needs a number '{key}', got {value!r}")
        steps.append((lineno, obj))
    if not steps:
        raise DataError(f"{path} has no step lines (an empty or evaluation-only log)")
    return path, steps, evals


def _percentiles(v: np.ndarray) -> dict:
    if not v.size:
        return {k: None for k in ("p5", "p25", "p50", "p75", "p95", "max")}
    p = np.percentile(v, [5, 25, 50, 75, 95])
    return {"p5": p[0], "p25": p[1], "p50": p[2], "p75": p[3], "p95": p[4], "max": v.max()}


def history_report(run_dir: str, top: int = 5) -> dict:
    """Gradient-norm statistics of a training run from OUT/metrics.jsonl (one line per logged
    update; lines with "split" are evaluations and are skipped). JSON:

        file, step_lines, evaluation_lines, first_step, last_step
        grad_norm      {p5, p25, p50, p75, p95, max} of the pre-clip norms (finite ones)
        nonfinite      {grad_norm_lines: lines whose norm is NaN/inf,
                        skipped: the last cumulative nonfinite_skipped (null if never logged),
                        steps: the steps at which that count went up}
        clip_rate      fraction of the lines with "clipped": true (null if never logged)
        spikes         the `top` largest ratios norm / median of the previous SPIKE_WINDOW norms:
                       [{step, grad_norm, running_median, ratio}]
        by_epoch       [{epoch, lines, median_grad_norm, clip_rate}]
        param_grad_norms {name: {lines, p50, max}} from the lines that carry them
        layers         stacked models (logged names cell.<l>.<param>), one entry per layer,
                       bottom first: [{layer, params: [names], lines, p50, max,
                       by_epoch: [{epoch, lines, median}]}], the layer's norm on a line being
                       sqrt(sum of its parameters' squared norms) over the lines that carry
                       all of them; [] when no logged name has a layer index
    """
    path, lines, evals = _read_metrics(run_dir)
    objs = [o for _, o in lines]
    norms = np.array([float(o["grad_norm"]) for o in objs])             # (lines,) pre-clip norms
    finite = np.isfinite(norms)
    counts = [(o["step"], o["nonfinite_skipped"]) for o in objs if isinstance(o.get("nonfinite_skipped"), int)]
    clipped = [bool(o["clipped"]) for o in objs if "clipped" in o]
    return jsonable({
        "file": path, "step_lines": len(objs), "evaluation_lines": evals,
        "first_step": objs[0]["step"], "last_step": objs[-1]["step"],
        "grad_norm": _percentiles(norms[finite]),
        "nonfinite": {"grad_norm_lines": int((~finite).sum()),
                      "skipped": counts[-1][1] if counts else None, "steps": _skips_went_up(counts)},
        "clip_rate": sum(clipped) / len(clipped) if clipped else None,
        "spikes": _spikes(objs, norms)[:top], "by_epoch": _by_epoch(objs, norms),
        "param_grad_norms": _param_norms(objs), "layers": _layer_norms(objs)})


def _skips_went_up(counts: list[tuple[int, int]]) -> list[int]:
    """The steps at which the cumulative count of skipped non-finite updates went up."""
    return [s for (s, c), (_, prev) in zip(counts, [(None, 0)] + counts) if c > prev]


def _spikes(objs: list[dict], norms: np.ndarray) -> list[dict]:
    """Every finite norm against the running median of the previous SPIKE_WINDOW finite norms,
    largest ratio first."""
    spikes = []
    for i in range(1, len(norms)):
        window = norms[max(0, i - SPIKE_WINDOW):i]
        window = window[np.isfinite(window)]
        if np.isfinite(norms[i]) and window.size:
            med = float(np.median(window))
            if med > 0:
                spikes.append({"step": objs[i]["step"], "grad_norm": norms[i], "running_median": med,
                               "ratio": norms[i] / med})
    spikes.sort(key=lambda r: -r["ratio"])
    return spikes


def _by_epoch(objs: list[dict], norms: np.ndarray) -> list[dict]:
    """Lines, median finite norm and clip rate of each epoch."""
    finite = np.isfinite(norms)
    rows = []
    for e in sorted({o["epoch"] for o in objs if isinstance(o.get("epoch"), (int, float))}):
        idx = [i for i, o in enumerate(objs) if o.get("epoch") == e]
        v = norms[idx][finite[idx]]
        clip = [bool(objs[i]["clipped"]) for i in idx if "clipped" in objs[i]]
        rows.append({"epoch": e, "lines": len(idx), "median_grad_norm": float(np.median(v)) if v.size else None,
                     "clip_rate": sum(clip) / len(clip) if clip else None})
    return rows


def _param_norms(objs: list[dict]) -> dict:
    """{name: {lines, p50, max}} of the per-parameter norms, from the lines that carry them."""
    per_param: dict[str, list[float]] = {}
    for o in objs:
        if isinstance(o.get("param_grad_norms"), dict):
            for name, value in o["param_grad_norms"].items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    per_param.setdefault(name, []).append(float(value))
    stats = {}
    for name, values in per_param.items():
        v = np.array(values)
        v = v[np.isfinite(v)]
        stats[name] = {"lines": len(values), "p50": float(np.median(v)) if v.size else None,
                       "max": float(v.max()) if v.size else None}
    return stats


LAYER_NAME = re.compile(r"^cell\.(\d+)\.")


def _layer_norms(objs: list[dict]) -> list[dict]:
    """Per-layer gradient norms from lines whose param_grad_norms name cell.<l>.* parameters."""
    names: dict[int, set] = {}
    for o in objs:
        if isinstance(o.get("param_grad_norms"), dict):
            for name in o["param_grad_norms"]:
                match = LAYER_NAME.match(name)
                if match:
                    names.setdefault(int(match.group(1)), set()).add(name)
    out = []
    for layer in sorted(names):
        params = sorted(names[layer])
        values, epochs = [], []
        for o in objs:
            logged = o.get("param_grad_norms")
            if not isinstance(logged, dict) or not all(_number(logged.get(n)) for n in params):
                continue
            values.append(math.sqrt(sum(float(logged[n]) ** 2 for n in params)))
            epochs.append(o.get("epoch"))
        v = np.array(values)
        finite = np.isfinite(v)
        by_epoch = []
        for e in sorted({e for e in epochs if _number(e)}):
            ve = v[[i for i, x in enumerate(epochs) if x == e]]
            ve = ve[np.isfinite(ve)]
            by_epoch.append({"epoch": e, "lines": int(sum(x == e for x in epochs)),
                             "median": float(np.median(ve)) if ve.size else None})
        out.append({"layer": layer, "params": params, "lines": len(values),
                    "p50": float(np.median(v[finite])) if finite.any() else None,
                    "max": float(v[finite].max()) if finite.any() else None, "by_epoch": by_epoch})
    return out


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
