"""Gradient diagnostics: what backpropagation through time does to the gradient, per time step.

dE_t/ds_k contains the product of step Jacobians ds_j/ds_{j-1}, j = k+1..t: with small weights
and saturating units it shrinks exponentially in the lag d = t - k (vanishing), with large
weights it can grow (exploding). `diagnose` measures this on real sequences (B contiguous
length-T windows of the validation split, or of the training split when there is none; the
state starts from zeros) or, with no prepared data, on random tokens. The model runs in
float64 (parameters cast) without dropout, and every number comes from the same BPTT code
that trains (`Model.backward`, `cells.Cell.backward_step`).

Definitions (s_k is the state after input k: h_k, or (h_k, c_k) for the LSTM; E_t is the
-log p of output t summed over the batch, i.e. the SUM loss with scale 1):

    g(t, k)            ||dE_t/ds_k||_2 per sequence, then the mean over all sequences
                       (from `Model.backward(fwd, truncation=T, on_lag=hook)`: window mode
                       with k = T is full BPTT and visits every (t, d))
    raw[d]             mean over t = d..T-1 of g(t, t-d)
    normalised[d]      mean over t = d..T-1 of g(t, t-d) / g(t, t): normalised per output t
                       first, then averaged, so every output weighs the same whatever its loss
    decay_rate         least-squares slope of ln normalised[d] against d, over the lags where
                       normalised[d] is finite and > 0 (per step; < 0 means decaying)
    half_life          ln 2 / -decay_rate when decay_rate < 0, else null (no decay)
    horizon            the largest lag d with normalised[d'] > threshold for every d' <= d;
                       horizon_is_lower_bound is true when it never fell below (d = T-1)
    max_norm_ratio     the largest g(t, t-d) / g(t, t) over all t, d (> 1: gradient grows)

Stacked layers (model.num_layers = L >= 2). s^l_k is layer l's state (l = 0 the bottom, L-1 the
top, which feeds the output); g^l(t, k) = ||dE_t/ds^l_k||, exact through depth and time (the
on_lag hook names the layer). Every definition above holds per layer with g^l, normalised by the
layer's own g^l(t, t). Beside them:

    attenuation[l]     mean over t of g^l(t, t) / g^{L-1}(t, t): what is left of the gradient
                       L-1-l layers down, at lag 0 (1 for the top layer)
    depth_time[l][d]   mean over t = d..T-1 of g^l(t, t-d) / g^{L-1}(t, t): every layer's lag
                       profile on the TOP layer's lag-0 scale, so attenuation through depth and
                       through time read on one scale (depth_time[L-1][0] = 1, [l][0] =
                       attenuation[l]); the heat map of --plot and of the text report

The model's top-level fields are its top layer's (with one layer: the only one), but the step
Jacobians, which are of the whole stacked state s_t = (s^0_t, ..., s^{L-1}_t) (jacobians.py), and
truncation_bias's cosine and norm_ratio, which are over all parameters.

JSON schema (`rnnlm diagnose-gradients --format json`; keys in this order):

    data          "random tokens", "valid" or "train" (the split the sequences come from),
                  "mixed" when the models differ
    steps         T (null when the models differ);  batches N, batch_size B, threshold
    models        one entry per model:
      label       name in tables ("defaults", a config file's stem, "cell=gru", a checkpoint)
      model       {cell, hidden_size, num_layers, embedding_size, vocab_size, init, recurrent_init,
                   init_scale, recurrent_scale, forget_bias, source}
      data, data_folder, data_note (random tokens only: why), steps, sequences (N*B)
      lag_profile {raw [T], normalised [T], matrix [T][T] g(t, k) with null for k > t;
                   LSTM only: h and c, each {raw, normalised, matrix} of ||dE_t/dh_k|| and
                   ||dE_t/dc_k|| (normalised by the state's g(t, t))}
      decay_rate, half_life, horizon, horizon_is_lower_bound, max_norm_ratio
      jacobian    {state_size P (H, or 2H for the LSTM; L times that with L layers),
                   sequences: how many sequences the Jacobians are measured on (the first
                     diagnose.jacobian_sequences in batch order; 0 = all N*B),
                   spectral_norm {mean [T], min [T], max [T]}: ||ds_j/ds_{j-1}||_2 per step j
                     over those sequences (j = 0 is the Jacobian w.r.t. the initial state),
                   overall {mean, min, max},
                   products [{span, mean, min, max}]: ||ds_{T-1}/ds_{T-1-span}||_2 for spans
                     1, 2, 4, ... and T (the product of the last `span` step Jacobians),
                   recurrent {blocks [{block, sigma_max, gamma, bound, below_bound}],
                     verdict, applies, note}: Pascanu et al. 2013: with |f'| <= gamma,
                     vanishing is certain when sigma_max(W_h) < bound = 1/gamma
                     (gamma 1 for tanh and relu, 1/4 for sigmoid); verdict
                     "vanishing guaranteed" or "not excluded"; the bound applies to the
                     tanh/relu cell only (`Cell.simple_recurrence`: the step Jacobian is
                     diag(f') W_h^T), gated cells are always "not excluded"; the blocks and
                     their gammas are the cell's `gate_names` and `gate_gammas`}
      saturation  {tanh | sigmoid | relu_zero: {units [names], criterion, per_step [T], mean,
                   by_unit {name: mean}}}: the fraction of units with |s| > 0.99 (tanh: h;
                   GRU n; LSTM g and tanh(c)), of sigmoid gates within 0.01 of 0 or 1, of
                   ReLU units exactly 0, read from the forward cache (which units: the
                   cell's `saturation_units`)
      lag_contribution {norm [T], fraction [T], total_norm}: ||C_d||_F where
                   C_d = h_prev^T recurrent_da(lag d) is what lag d adds to dE/dW_h
                   (sum over d of C_d = dW_h; fraction = norm / ||dW_h||_F)
      truncation_bias [{k, cosine, norm_ratio, W_h_cosine, W_h_norm_ratio}]: the gradient of
                   window truncation k (Model.backward(fwd, truncation=k)) against full BPTT,
                   over all parameters flattened and for the top layer's W_h alone; k from
                   diagnose.truncations below T, plus T (cosine 1 and ratio 1 by construction)
      layers      one entry per layer, bottom first (one entry with one layer, equal to the
                  model's fields): {layer (0 = bottom), lag_profile, decay_rate, half_life,
                   horizon, horizon_is_lower_bound, max_norm_ratio (from g^l, as above),
                   attenuation, recurrent (as jacobian.recurrent, for the layer's W_h; its
                   verdict "vanishing guaranteed" needs every layer from l to the top below
                   the bound, as a path from s^l_k climbs but never descends),
                   saturation, lag_contribution (the layer's W_h),
                   truncation_bias [{k, W_h_cosine, W_h_norm_ratio}] (the layer's W_h)}
      depth_time  [L][T] (see above)
    history       (with --run) see rnnlm_cli/analysis/history.py (`history_report`)

All gradients of several batches are summed before they are compared; norms are averaged
over all N*B sequences. Non-finite numbers are written as null. Spectral norms of Jacobians
and their products come from Lanczos on J^T J through the cell's backward step and its
transpose, without forming J (jacobians.py): within 1e-10 (relative) of the dense value.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shlex
from dataclasses import dataclass

import numpy as np

from rnnlm_cli.nn import kernels as blas
from rnnlm_cli.nn import lags
from rnnlm_cli.values import fmt_num, jsonable
from rnnlm_cli.grid import expand_sweeps
from rnnlm_cli.config import Config
from rnnlm_cli.errors import ConfigError, DataError
from rnnlm_cli.analysis.jacobians import StepMaps, top_singular_values
from rnnlm_cli.nn.model import Model
from rnnlm_cli.progress import ProgressFactory, no_progress

RANDOM = "random tokens"
# saturation by kind of nonlinearity, as text and as a test (the cells name their saturating
# units and the kind of each: Cell.saturation_units)
SATURATION = {"tanh": "|s| > 0.99", "sigmoid": "s < 0.01 or s > 0.99", "relu_zero": "s == 0"}
SATURATED = {"tanh": lambda v: np.abs(v) > 0.99,
             "sigmoid": lambda v: (v < 0.01) | (v > 0.99),
             "relu_zero": lambda v: v == 0}


# --------------------------------------------------------------------------- what to diagnose

@dataclass
class Spec:
    """One model to diagnose: a configuration, and the trained model when from a checkpoint."""

    label: str
    cfg: Config
    source: str = "defaults"
    model: Model | None = None          # float64, from a checkpoint; None: initialise from cfg
    meta: dict | None = None            # the checkpoint's meta


def checkpoint_spec(path: str, config_path: str | None, overrides, load) -> Spec:
    """A Spec from a training checkpoint (train.load_model, cast to float64). The configuration
    (data and diagnose sections) is the checkpoint's resolved one, or `config_path` when given,
    plus the --set overrides; the model is always the checkpoint's. load(path, overrides) -> Config.
    """
    from rnnlm_cli.runs import open_checkpoint

    run = open_checkpoint(path, config_path, overrides, dtype=np.float64, with_data=False)
    model, cfg, meta = run.model, run.cfg, run.meta
    label = os.path.basename(os.path.normpath(path))
    return Spec(label=label, cfg=cfg, source=f"checkpoint {path}", model=model, meta=meta)


def config_specs(config_paths, overrides, sweeps, load) -> list[Spec]:
    """Specs for configuration files (none: the built-in defaults) x sweep combinations.

    load(path, overrides) -> Config (the CLI passes config.load_config).
    """
    paths = list(config_paths) or [None]
    stems = [os.path.splitext(os.path.basename(p))[0] if p else "defaults" for p in paths]
    names = stems if len(set(stems)) == len(stems) else [p or "defaults" for p in paths]
    specs = []
    for path, name in zip(paths, names):
        for sweep_label, sweep_overrides in expand_sweeps(sweeps):
            try:
                cfg = load(path, list(overrides) + sweep_overrides)
            except ConfigError as exc:
                if not sweep_overrides:
                    raise
                raise ConfigError(f"--sweep {sweep_label}: {exc}") from None
            label = sweep_label if sweep_label and len(paths) == 1 else " ".join(filter(None, (name, sweep_label)))
            specs.append(Spec(label=label, cfg=cfg, source=f"config {path}" if path else "defaults"))
    return specs


# --------------------------------------------------------------------------- sequences

def _read_prepared(spec: Spec):
    """The Spec's prepared data, only read: with data.train set it must exist and be current
    (DataError naming the folder and the preprocess command otherwise); never (re)built here."""
    from rnnlm_cli.data.corpus import load_prepared, rebuild_reason

    data = spec.cfg.data
    reason = rebuild_reason(data) if data.train else None
    if reason is not None:
        config = spec.source[len("config "):] if spec.source.startswith("config ") else None
        command = "rnnlm preprocess" + (f" --config {shlex.quote(config)}" if config else "")
        state = "does not exist" if reason == "missing" else f"is out of date ({reason})"
        force = "" if reason == "missing" else " --force"
        raise DataError(f"prepared-data folder {data.prepared} for data.train={data.train} {state}; "
                        f"diagnose-gradients only reads data: run '{command}{force}' first")
    return load_prepared(data.prepared)


def _sequences(spec: Spec, steps: int, batches: int, batch_size: int, random_tokens: bool,
               rng: np.random.Generator):
    """([(x, y)] of (T, B) token ids, data info, vocabulary size) for one Spec."""
    from rnnlm_cli.data.batching import batchify

    cfg = spec.cfg
    if random_tokens or (cfg.data.train is None and not os.path.isdir(cfg.data.prepared)):
        V = spec.model.V if spec.model is not None else cfg.diagnose.random_vocab
        seqs = [(rng.integers(0, V, size=(steps, batch_size)), rng.integers(0, V, size=(steps, batch_size)))
                for _ in range(batches)]
        why = "--random-tokens" if random_tokens else f"no data.train and no prepared data at {cfg.data.prepared}"
        return seqs, {"data": RANDOM, "data_folder": None, "data_note": why}, V
    prepared = _read_prepared(spec)
    if spec.model is not None:
        from rnnlm_cli.runs import check_model_matches

        check_model_matches(spec.model, prepared, spec.meta or {}, spec.source)
    split = "valid" if prepared.meta["tokens"]["valid"] > 0 else "train"
    streams = batchify(np.asarray(prepared.split(split)), batch_size)          # (n, B)
    need = batches * steps + 1
    if streams.shape[0] < need:
        raise DataError(f"the {split} split of {prepared.folder} has {prepared.meta['tokens'][split]} tokens: "
                        f"{batch_size} streams of {streams.shape[0]} are too short for {batches} batch(es) of "
                        f"{steps} steps (need {need} per stream); lower --steps, --batches or diagnose.batch_size")
    seqs = [(streams[c * steps:(c + 1) * steps], streams[c * steps + 1:(c + 1) * steps + 1])
            for c in range(batches)]
    return seqs, {"data": split, "data_folder": prepared.folder, "data_note": None}, len(prepared.vocab)


# --------------------------------------------------------------------------- one model

class LagRecorder:
    """The on_lag hook: sums per-sequence norms of dE_{i+d}/ds_i into (t, k) matrices and the
    lag-d contributions to dE/dW_h. Set `cache` to the current forward's cache before use.
    With `layer` given it records only that layer's calls (one recorder per layer of a stacked
    model, `LayerRecorders`); None records every call (one layer)."""

    def __init__(self, cell, T: int, layer: int | None = None):
        H, GH = cell.H, cell.gates * cell.H
        self.cell, self.T, self.cache, self.layer = cell, T, None, layer
        self.h = np.zeros((T, T))                 # (t, k) sums of ||dE_t/dh_k||
        self.c = np.zeros((T, T)) if cell.has_c else None
        self.s = np.zeros((T, T)) if cell.has_c else self.h
        self.contrib = np.zeros((T, H, GH))        # (lag, H, GH)

    def __call__(self, layer, d, dh_lag, dc_lag, da_lag):
        if self.layer is not None and layer != self.layer:
            return
        n, B, H = dh_lag.shape
        i = np.arange(n)
        nh, nc, ns = lags.state_norms(dh_lag, dc_lag)                  # (n, B) each
        self.h[i + d, i] += nh.sum(axis=1)
        if self.c is not None:
            self.c[i + d, i] += (np.zeros_like(nh) if nc is None else nc).sum(axis=1)
            self.s[i + d, i] += ns.sum(axis=1)
        hprev = self.cache.arrays["h_prev"][:n].reshape(n * B, H)
        dah = self.cell.recurrent_da(self.cache[:n], da_lag).reshape(n * B, -1)
        self.contrib[d] += hprev.T @ dah                               # undoes h_{t-1} @ W_h, lag d only


class LayerRecorders:
    """One LagRecorder per layer of `model`, as one on_lag hook; `use(fwd)` points each at its
    layer's forward record."""

    def __init__(self, model: Model, T: int):
        self.recs = [LagRecorder(cell, T, layer if model.L > 1 else None) for layer, cell in enumerate(model.cells)]

    def use(self, fwd) -> None:
        for rec, cache in zip(self.recs, fwd.caches):
            rec.cache = cache

    def __call__(self, layer, d, dh_lag, dc_lag, da_lag):
        self.recs[layer](layer, d, dh_lag, dc_lag, da_lag)


def _profile(g: np.ndarray, diag: np.ndarray) -> dict:
    """raw and normalised lag profiles of a (t, k) matrix, normalised per t by diag[t]."""
    T = len(g)
    t = np.arange(T)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = g / diag[:, None]
    raw = [float(g[t[d:], t[d:] - d].mean()) for d in range(T)]
    normalised = [float(ratio[t[d:], t[d:] - d].mean()) for d in range(T)]
    matrix = np.where(t[None, :] <= t[:, None], g, np.nan)
    return {"raw": raw, "normalised": normalised, "matrix": matrix}, ratio


def decay_fit(normalised, threshold: float) -> dict:
    """decay_rate, half_life, horizon (see the module docstring) of a normalised lag profile."""
    v = np.asarray(normalised, dtype=float)
    d = np.arange(len(v))
    ok = np.isfinite(v) & (v > 0)
    rate = float(np.polyfit(d[ok], np.log(v[ok]), 1)[0]) if ok.sum() >= 2 else None
    half_life = math.log(2) / -rate if rate is not None and rate < 0 else None
    horizon, lower_bound = lags.horizon(v, threshold)
    return {"decay_rate": rate, "half_life": half_life, "horizon": horizon, "horizon_is_lower_bound": lower_bound}


def recurrent_bound(cell, W_h: np.ndarray) -> dict:
    """Largest singular value of W_h (per gate block) against 1/gamma (Pascanu et al. 2013);
    the blocks, their gammas and whether the bound applies come from the cell."""
    H = cell.H
    blocks = []
    for b, (name, gamma) in enumerate(zip(cell.gate_names, cell.gate_gammas)):
        block = W_h[:, b * H:(b + 1) * H]
        with blas.loop_threads(), np.errstate(over="ignore", invalid="ignore"):
            gram = block.T @ block                       # eigvalsh of the Gram matrix: 3x faster than the SVD
            if not np.all(np.isfinite(gram)):            # huge weights: scale first, so the Gram matrix stays finite
                top = float(np.max(np.abs(block)))
                gram = (block / top).T @ (block / top) if math.isfinite(top) and top > 0 else None
            else:
                top = 1.0
            sigma = (top * float(np.sqrt(max(np.linalg.eigvalsh(gram)[-1], 0.0)))
                     if gram is not None and np.all(np.isfinite(gram)) else math.inf)
        blocks.append({"block": name, "sigma_max": sigma, "gamma": gamma, "bound": 1.0 / gamma,
                       "below_bound": sigma < 1.0 / gamma})
    applies = cell.simple_recurrence
    verdict = "vanishing guaranteed" if applies and blocks[0]["below_bound"] else "not excluded"
    note = ("||ds_t/ds_{t-1}|| <= gamma sigma_max(W_h) < 1 when sigma_max < 1/gamma" if applies else
            "the bound covers tanh/relu cells only; the gated path (z * h or f * c) lies outside it")
    return {"blocks": blocks, "verdict": verdict, "applies": applies, "note": note}


def stacked_bounds(model: Model, bounds: list[dict]) -> list[dict]:
    """Per-layer recurrent bounds of a stacked model, bottom first, with the verdicts made true for
    layer l's gradient: a path from s^l_k to E_t takes d = t - k recurrent steps, each in one of
    the layers l..L-1 (it can climb, never descend), so vanishing is certain only when every one of
    them is below its bound (the climbs add at most L-1-l factors that do not grow with d, over a
    number of paths polynomial in d). With one layer: as is."""
    if model.L == 1:
        return bounds
    out = []
    for layer, rb in enumerate(bounds):
        above = bounds[layer:]
        certain = rb["applies"] and all(b["blocks"][0]["below_bound"] for b in above)
        note = (f"{rb['note']}; layer {layer}'s gradient also runs through the recurrences of the layers above it, "
                "so every layer from it to the top must be below the bound"
                if rb["applies"] and layer < model.L - 1 else rb["note"])
        out.append({**rb, "verdict": "vanishing guaranteed" if certain else "not excluded", "note": note})
    return out


def _cosine(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    cos = float(a @ b) / (na * nb) if na > 0 and nb > 0 else float("nan")
    return cos, na / nb if nb > 0 else float("nan")


def _spans(T: int) -> list[int]:
    spans = [1 << i for i in range(T.bit_length()) if (1 << i) <= T]
    return spans if spans[-1] == T else spans + [T]


def first_sequences(seqs, n: int):
    """The first n sequences of the batches seqs [(x, y)] in batch order, as batches (0: all)."""
    if n <= 0:
        return seqs
    out, left = [], n
    for x, y in seqs:
        if left <= 0:
            break
        out.append((x[:, :left], y[:, :left]))
        left -= out[-1][0].shape[1]
    return out


def jacobian_norms(model: Model, seqs, rng: np.random.Generator, tick=lambda: None) -> dict:
    """The `jacobian` entry (module docstring) on the batches seqs [(x, y)]: spectral norms of
    every step Jacobian and of products of the last `span` ones, matrix-free (jacobians.py)."""
    cell = model.cells[-1]
    T = seqs[0][0].shape[0]
    P = model.L * cell.state_size
    norms, prods = [], {s: [] for s in _spans(T)}
    for x, y in seqs:
        maps = StepMaps.of_model(model, model.forward(x, y))
        B = maps.B
        with blas.loop_threads():                        # chains of small GEMMs (blas.py)
            norms.append(top_singular_values(maps.jvp, maps.vjp, T * B, P, rng).reshape(T, B))   # (T, B)
            tick()
            spans = list(prods)
            both = top_singular_values(*maps.products(spans), len(spans) * B, P, rng).reshape(len(spans), B)
            for span, values in zip(spans, both):
                prods[span].append(values)                                                    # (B,)
            tick()
    jac = np.concatenate(norms, axis=1)                                 # (T, sequences)
    return {
        "state_size": P,
        "sequences": jac.shape[1],
        "spectral_norm": {"mean": jac.mean(axis=1), "min": jac.min(axis=1), "max": jac.max(axis=1)},
        "overall": {"mean": float(jac.mean()), "min": float(jac.min()), "max": float(jac.max())},
        "products": [{"span": s, "mean": float(np.mean(v)), "min": float(np.min(v)), "max": float(np.max(v))}
                     for s, v in ((s, np.concatenate(v)) for s, v in prods.items())],
        "recurrent": recurrent_bound(cell, model.params[model.layer_prefix(model.L - 1) + "W_h"]),
    }


def _saturation_summary(sat: dict, units_total: int) -> dict:
    """The `saturation` entry from saturated counts {(unit name, kind): (T,)} over units_total."""
    saturation = {}
    for kind in SATURATION:
        names = [(n, k) for (n, k) in sat if k == kind]
        if not names:
            continue
        per_step = sum(sat[u] for u in names) / (units_total * len(names))
        saturation[kind] = {"units": [n for n, _ in names], "criterion": SATURATION[kind],
                            "per_step": per_step, "mean": float(per_step.mean()),
                            "by_unit": {n: float(sat[(n, kind)].mean() / units_total) for n, _ in names}}
    return saturation


def truncation_bias(model: Model, seqs, truncations, tick=lambda: None, per_layer: list | None = None) -> list[dict]:
    """The `truncation_bias` entry: window-k gradients against full BPTT, summed over seqs; the
    W_h fields are the top layer's. `per_layer`, when a list, receives one list per layer of
    {k, W_h_cosine, W_h_norm_ratio} for that layer's W_h."""
    T = seqs[0][0].shape[0]
    ks = sorted({k for k in truncations if k < T} | {T})
    sums = {k: None for k in [None] + ks}                               # None: full BPTT
    for x, y in seqs:
        for k in sums:
            # a fresh forward per backward (the output backward works in place)
            grads = model.backward(model.forward(x, y), **({} if k is None else {"truncation": k})).as_dense()
            sums[k] = {n: v.copy() for n, v in grads.items()} if sums[k] is None else \
                {n: sums[k][n] + v for n, v in grads.items()}
            tick()
    full = sums[None]
    flat_full = np.concatenate([v.ravel() for v in full.values()])
    bias = []
    top = model.layer_prefix(model.L - 1) + "W_h"
    for k in ks:
        cos, ratio = _cosine(np.concatenate([v.ravel() for v in sums[k].values()]), flat_full)
        wcos, wratio = _cosine(sums[k][top].ravel(), full[top].ravel())
        bias.append({"k": k, "cosine": cos, "norm_ratio": ratio, "W_h_cosine": wcos, "W_h_norm_ratio": wratio})
    if per_layer is not None:
        for layer in range(model.L):
            name = model.layer_prefix(layer) + "W_h"
            rows = []
            for k in ks:
                wcos, wratio = _cosine(sums[k][name].ravel(), full[name].ravel())
                rows.append({"k": k, "W_h_cosine": wcos, "W_h_norm_ratio": wratio})
            per_layer.append(rows)
    return bias


def work_units(T: int, batches: int, batch_size: int, truncations, jacobian_sequences: int) -> int:
    """How many times diagnose_model calls `tick` (the progress bar's total)."""
    ks = {k for k in truncations if k < T} | {T}
    jac_batches = batches if jacobian_sequences <= 0 else min(batches, -(-jacobian_sequences // batch_size))
    return batches * (2 + len(ks)) + 2 * jac_batches


def _lag_summary(rec: LagRecorder, n_seq: int, threshold: float) -> dict:
    """lag_profile, decay fit and max_norm_ratio of one layer's recorder (module docstring),
    normalised by the layer's own g(t, t); also "_g" and "_diag", g(t, k) and g(t, t)."""
    T = rec.T
    g_s = rec.s / n_seq
    diag = np.diag(g_s).copy()
    profile, ratio = _profile(g_s, diag)
    if rec.cell.has_c:
        profile["h"] = _profile(rec.h / n_seq, diag)[0]
        profile["c"] = _profile(rec.c / n_seq, diag)[0]
    below = np.tril(np.ones((T, T), dtype=bool))
    finite = ratio[below & np.isfinite(ratio)]
    return {"lag_profile": profile, **decay_fit(profile["normalised"], threshold),
            "max_norm_ratio": float(finite.max()) if finite.size else None, "_g": g_s, "_diag": diag}


def _lag_contribution(rec: LagRecorder, dW: np.ndarray) -> dict:
    total = float(np.linalg.norm(dW))
    contrib = np.linalg.norm(rec.contrib.reshape(rec.T, -1), axis=1)
    return {"norm": contrib, "fraction": contrib / total if total > 0 else contrib * np.nan, "total_norm": total}


def depth_time(g_layers: list, top_diag: np.ndarray) -> np.ndarray:
    """The (L, T) matrix M[l, d] = mean over t = d..T-1 of g^l(t, t-d) / g^top(t, t): every
    layer's lag profile on the top layer's lag-0 scale (M[top, 0] = 1 by construction)."""
    T = len(top_diag)
    t = np.arange(T)
    M = np.empty((len(g_layers), T))
    for layer, g in enumerate(g_layers):
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = g / top_diag[:, None]
        M[layer] = [ratio[t[d:], t[d:] - d].mean() for d in range(T)]
    return M


def diagnose_model(model: Model, seqs, threshold: float, truncations, jacobian_sequences: int = 0,
                   rng: np.random.Generator | None = None, tick=lambda: None) -> dict:
    """Every per-model measurement of the module docstring on batches `seqs` [(x, y)]; the step
    Jacobians on the first `jacobian_sequences` of them (0: all) with Lanczos starts from rng;
    tick() after each pass over a batch (work_units of them). The top-level fields are the top
    layer's (the Jacobians: the whole stacked state's); `layers` holds every layer's."""
    L = model.L
    T, B = seqs[0][0].shape
    rng = rng if rng is not None else np.random.default_rng(0)
    recs = LayerRecorders(model, T)
    names = [model.layer_prefix(layer) + "W_h" for layer in range(L)]
    dW_sum = [np.zeros_like(model.params[n]) for n in names]
    sat = [{} for _ in range(L)]                                        # per layer: (name, kind) -> count (T,)
    for x, y in seqs:
        # lag profile and lag contributions: window mode with k = T is full BPTT, every (t, d)
        fwd = model.forward(x, y)
        recs.use(fwd)
        grads = model.backward(fwd, truncation=T, on_lag=recs)
        for layer, name in enumerate(names):
            dW_sum[layer] += grads[name]
            # saturation, read from the forward cache
            for unit, kind, v in model.cells[layer].saturation_units(fwd.caches[layer]):
                count = SATURATED[kind](v).sum(axis=(1, 2))              # (T,)
                sat[layer][(unit, kind)] = sat[layer].get((unit, kind), 0) + count
        tick()

    # lag profiles and their fit, per layer; the top layer's are the model's
    n_seq = len(seqs) * B
    summaries = [_lag_summary(rec, n_seq, threshold) for rec in recs.recs]
    top = summaries[-1]
    out = {k: v for k, v in top.items() if not k.startswith("_")}

    # step Jacobians, saturation, lag contributions, truncation bias
    out["jacobian"] = jacobian_norms(model, first_sequences(seqs, jacobian_sequences), rng, tick)
    H = model.cells[-1].H
    saturation = [_saturation_summary(sat[layer], n_seq * H) for layer in range(L)]
    contribution = [_lag_contribution(rec, dW) for rec, dW in zip(recs.recs, dW_sum)]
    out["saturation"] = saturation[-1]
    out["lag_contribution"] = contribution[-1]
    per_layer_bias: list = []
    out["truncation_bias"] = truncation_bias(model, seqs, truncations, tick, per_layer=per_layer_bias)

    # every layer, and the depth x time matrix on the top layer's lag-0 scale
    M = depth_time([s["_g"] for s in summaries], top["_diag"])
    bounds = stacked_bounds(model, [recurrent_bound(model.cells[layer], model.params[names[layer]])
                                    for layer in range(L)])
    out["layers"] = [{"layer": layer, **{k: v for k, v in summ.items() if not k.startswith("_")},
                      "attenuation": float(M[layer, 0]),
                      "recurrent": bounds[layer],
                      "saturation": saturation[layer], "lag_contribution": contribution[layer],
                      "truncation_bias": per_layer_bias[layer]}
                     for layer, summ in enumerate(summaries)]
    out["depth_time"] = M
    return out


# --------------------------------------------------------------------------- several models

def _model_info(model: Model, spec: Spec) -> dict:
    m = model.cfg
    info = {"cell": m.cell, "hidden_size": m.hidden_size, "num_layers": model.L, "embedding_size": m.embedding_size,
            "vocab_size": model.V, "init": m.init, "recurrent_init": m.recurrent_init,
            "init_scale": m.init_scale, "recurrent_scale": m.recurrent_scale}
    for key in model.cell.config_keys:                                  # e.g. the LSTM's forget_bias
        info[key] = getattr(m, key)
    info["source"] = spec.source
    return info


def _progress_bar(progress: ProgressFactory, label: str, total: int):
    """A bar counting one model's passes, closed when the `with` block ends."""
    return contextlib.closing(progress(total=total, desc=label, unit="pass"))


def diagnose(specs: list[Spec], steps: int | None = None, batches: int | None = None,
             batch_size: int | None = None, threshold: float | None = None, random_tokens: bool = False,
             progress: ProgressFactory | None = None) -> dict:
    """Diagnose every Spec; None arguments fall back to each config's diagnose section.
    `progress` makes a bar per model (default: none)."""
    progress = progress or no_progress
    entries = []
    for spec in specs:
        d = spec.cfg.diagnose
        T, N, B = steps or d.steps, batches or d.batches, batch_size or d.batch_size
        thr = threshold if threshold is not None else d.threshold
        rng = np.random.default_rng(spec.cfg.train.seed)
        data_rng, lanczos_rng = rng.spawn(2)                            # spawning draws nothing from rng
        seqs, data, V = _sequences(spec, T, N, B, random_tokens, data_rng)
        model = spec.model or Model(spec.cfg.model, V, dtype=np.float64, rng=rng)
        entry = {"label": spec.label, "model": _model_info(model, spec), **data, "steps": T,
                 "batches": N, "batch_size": B, "threshold": thr, "sequences": N * B}
        with _progress_bar(progress, spec.label, work_units(T, N, B, d.truncations, d.jacobian_sequences)) as bar, \
                np.errstate(all="ignore"):                               # NaN/inf are reported (null), not warned
            entry.update(diagnose_model(model, seqs, thr, d.truncations, d.jacobian_sequences, lanczos_rng,
                                        tick=lambda: bar.update(1)))
        entries.append(entry)

    def common(key):
        values = {json.dumps(e[key]) for e in entries}
        return entries[0][key] if len(values) == 1 else None

    data = common("data")
    return jsonable({"data": data if data is not None else "mixed", "steps": common("steps"),
                            "batches": common("batches"), "batch_size": common("batch_size"),
                            "threshold": common("threshold"), "models": entries})


def gate_failures(result: dict, min_horizon: int | None = None, max_ratio: float | None = None) -> list[str]:
    """One message per model that fails --fail-if-vanishing / --fail-if-exploding.

    A gate passes only on a measurement: a model whose lag profile holds NaN or inf (null in
    the result: the model overflows, or g(t, t) is 0) fails every gate it is given, saying so,
    and a gate with no model to measure fails too.
    """
    if min_horizon is None and max_ratio is None:
        return []
    models = result.get("models", [])
    if not models:
        return ["no model was measured, so the gradient gates check nothing"]
    failures = []
    for m in models:
        profile = m["lag_profile"]
        measured = all(v is not None and math.isfinite(v) for key in ("raw", "normalised") for v in profile[key])
        if not measured:
            gates = " and ".join(g for g, on in (("--fail-if-vanishing", min_horizon is not None),
                                                 ("--fail-if-exploding", max_ratio is not None)) if on)
            failures.append(f"{m['label']}: cannot measure the gradient: its lag profile holds NaN or inf "
                            f"(the model overflows, or dE_t/ds_t is 0), so {gates} cannot pass")
            continue
        if min_horizon is not None and m["horizon"] < min_horizon:
            failures.append(f"{m['label']}: vanishing gradient: horizon {m['horizon']} < {min_horizon}")
        ratio = m["max_norm_ratio"]
        if max_ratio is not None and (ratio is None or ratio > max_ratio):
            failures.append(f"{m['label']}: exploding gradient: max norm ratio "
                            f"{fmt_num(ratio)} > {fmt_num(max_ratio)}")
    return failures
