"""Finite differences vs analytic gradients, for every cell and BPTT mode.

Each check builds a small float64 model (GradcheckConfig sizes; embedding size = hidden size,
dropout off, no clipping) on random tokens and compares `Model.backward` with centred
differences (f(theta + eps) - f(theta - eps)) / 2 eps of THE LOSS THE MODE DEFINES:

full    padded sentences from the zero state (one column is shortened by the mask)
window  sum_t E_t with s_{t-k} held at its forward value (k = min(train.window, T-1)):
        evaluated as T windows stacked along the batch axis, each from its saved state
stream  a k2 = T window from a random constant state, scoring the last k1 = T // 2 outputs

Error per element: |a - n| / max(|a| + |n|, floor). The floor is 1e6 times the
finite-difference noise level (rounding of the loss, ~1e-15 |f| / eps; about 4e-3 at the
default sizes), so elements whose gradient is too small for differences to resolve are
compared absolutely (pure noise there reads at most ~1e-6) instead of producing a
meaningless relative error. The floor does not depend on the tolerance. Each (cell, mode, tying, softmax) also gets a
directional check v . grad vs (f(theta + eps v) - f(theta - eps v)) / 2 eps for a random
unit vector v over all parameters (param "direction").

softmax=class is checked with C = model.num_classes (round(sqrt(V)) when 0) classes of equal
id ranges over the random vocabulary (no word counts there), so every class has two or more
words at the default sizes and every word of the word matrix is exercised.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from rnnlm_cli.nn.cells import CELLS
from rnnlm_cli.nn.model import Model
from rnnlm_cli.train.step import MODES

SOFTMAXES = ("full", "class")

NOISE = 1e-15       # relative rounding error of a float64 loss summed over a few dozen terms
FLOOR_FACTOR = 1e6  # floor of the relative-error denominator = FLOOR_FACTOR * noise


def _problem(model: Model, mode: str, cfg, rng: np.random.Generator):
    """(loss_fn, grad_fn, setting) for one mode: the loss that mode defines and its gradient."""
    gc = cfg.gradcheck
    T, B, V = gc.steps, gc.batch_size, model.V
    x = rng.integers(0, V, size=(T, B))
    y = rng.integers(0, V, size=(T, B))

    def random_state(batch):
        return tuple(rng.uniform(-0.8, 0.8, size=(batch, model.H)) for _ in model.initial_state(batch))

    if mode == "full":
        mask = np.ones((T, B))
        if B > 1 and T > 1:
            mask[rng.integers(1, T):, B - 1] = 0.0           # one padded sentence
        return (lambda: model.forward(x, y, None, mask=mask).loss,
                lambda: model.backward(model.forward(x, y, None, mask=mask)),
                "padded")
    if mode == "stream":
        k1 = max(1, T // 2)
        state = random_state(B)
        return (lambda: model.forward(x, y, state, loss_start=T - k1).loss,
                lambda: model.backward(model.forward(x, y, state, loss_start=T - k1)),
                f"k1={k1},k2={T}")
    # window: E_t from the saved s_{t-k} (a constant), all t stacked along the batch axis
    k = max(1, min(cfg.train.window, T - 1))
    state = random_state(B)
    base = model.forward(x, y, state)
    L = min(k, T)
    xs, ys, states, masks = [], [], [], []
    for t in range(T):
        start = max(0, t - L + 1)
        xs.append(x[start:start + L])
        ys.append(y[start:start + L])
        m = np.zeros((L, B))
        m[t - start] = 1.0
        masks.append(m)
        states.append(base.state_after(start))
    xw, yw, mw = (np.concatenate(a, axis=1) for a in (xs, ys, masks))
    sw = tuple(np.concatenate([s[j] for s in states], axis=0) for j in range(len(state)))
    return (lambda: model.forward(xw, yw, sw, mask=mw).loss,
            lambda: model.backward(model.forward(x, y, state), truncation=k),
            f"k={k}")


def _check_one(model, loss_fn, grad_fn, eps, samples, rng):
    """Rows (param, max_rel_error, checked) for every parameter plus the directional check."""
    grads = grad_fn().as_dense()
    f0 = loss_fn()
    floor = FLOOR_FACTOR * NOISE * max(abs(f0), 1.0) / eps
    rows = []
    for name, p in model.params.items():
        flat, g = p.reshape(-1), grads[name].reshape(-1)
        idx = np.arange(flat.size) if not samples or samples >= flat.size else \
            rng.choice(flat.size, size=samples, replace=False)
        worst = 0.0
        for i in idx:
            keep = flat[i]
            flat[i] = keep + eps
            fp = loss_fn()
            flat[i] = keep - eps
            fm = loss_fn()
            flat[i] = keep
            num = (fp - fm) / (2 * eps)
            worst = max(worst, abs(g[i] - num) / max(abs(g[i]) + abs(num), floor))
        rows.append((name, worst, int(len(idx))))
    # directional: a random unit vector over all parameters
    vs = {k: rng.standard_normal(p.shape) for k, p in model.params.items()}
    norm = np.sqrt(sum(float((v * v).sum()) for v in vs.values()))
    analytic = sum(float((vs[k] * grads[k]).sum()) for k in vs) / norm
    saved = {k: p.copy() for k, p in model.params.items()}
    for k, p in model.params.items():
        p += eps * vs[k] / norm
    fp = loss_fn()
    for k, p in model.params.items():
        p[...] = saved[k] - eps * vs[k] / norm
    fm = loss_fn()
    for k, p in model.params.items():
        p[...] = saved[k]
    num = (fp - fm) / (2 * eps)
    rows.append(("direction", abs(analytic - num) / max(abs(analytic) + abs(num), floor), 1))
    return rows


def run_gradcheck(cfg, cells=None, modes=None, tying=None, samples=None, tolerance=None,
                  rng: np.random.Generator | None = None, softmaxes=None) -> dict:
    """Check analytic gradients against finite differences.

    cells / modes / tying / softmaxes: lists to combine (None = the config's model.cell,
    train.bptt, model.tie_weights, model.softmax). samples: elements checked per parameter
    (None = gradcheck.samples; 0 = all). tolerance: None = gradcheck.tolerance. rng: None =
    seeded from train.seed. Returns {"passed", "tolerance", "checks": [{"cell", "bptt",
    "tie_weights", "softmax", "setting", "param", "max_rel_error", "checked", "passed"}, ...]}.
    """
    gc = cfg.gradcheck
    cells = list(cells) if cells else [cfg.model.cell]
    modes = list(modes) if modes else [cfg.train.bptt]
    tying = list(tying) if tying is not None else [cfg.model.tie_weights]
    softmaxes = list(softmaxes) if softmaxes else [cfg.model.softmax]
    samples = gc.samples if samples is None else samples
    tolerance = gc.tolerance if tolerance is None else tolerance
    rng = rng if rng is not None else np.random.default_rng(cfg.train.seed)
    for c in cells:
        if c not in CELLS:
            raise ValueError(f"unknown cell {c!r}")
    for m in modes:
        if m not in MODES:
            raise ValueError(f"unknown bptt mode {m!r}")
    for sm in softmaxes:
        if sm not in SOFTMAXES:
            raise ValueError(f"unknown softmax {sm!r}")
    checks = []
    for softmax in softmaxes:
        for cell in cells:
            for mode in modes:
                for tie in tying:
                    mcfg = dataclasses.replace(cfg.model, cell=cell, embedding_size=gc.hidden_size,
                                               hidden_size=gc.hidden_size, tie_weights=bool(tie),
                                               dropout_embedding=0.0, dropout_output=0.0, softmax=softmax)
                    model = Model(mcfg, gc.vocab_size, dtype=np.float64, rng=rng)
                    for name, p in model.params.items():             # move biases off zero
                        if p.ndim == 1:
                            p += rng.uniform(-0.5, 0.5, size=p.shape)
                    loss_fn, grad_fn, setting = _problem(model, mode, cfg, rng)
                    for name, err, n in _check_one(model, loss_fn, grad_fn, gc.eps, samples, rng):
                        checks.append({"cell": cell, "bptt": mode, "tie_weights": bool(tie), "softmax": softmax,
                                       "setting": setting, "param": name, "max_rel_error": float(err),
                                       "checked": n, "passed": bool(err <= tolerance)})
    return {"passed": all(c["passed"] for c in checks), "tolerance": float(tolerance), "checks": checks}


def all_combinations() -> dict:
    """Keyword arguments of run_gradcheck for `--all`: every cell x every mode x tying on/off x
    full and class-factorised softmax."""
    return {"cells": list(CELLS), "modes": list(MODES), "tying": [False, True], "softmaxes": list(SOFTMAXES)}

