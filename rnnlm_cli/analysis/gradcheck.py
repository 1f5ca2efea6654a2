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

A kink of the loss (a ReLU unit whose pre-activation lies within eps of 0) bends a difference
quotient that straddles it. When a parameter fails and eps is found too coarse for it (the
quotients at eps and 2 eps disagree), its failing elements are measured again with eps / 10 and
eps / 100, which straddle no kink farther away than themselves; the row passes only if every
element then agrees within the tolerance (a wrong gradient disagrees at every step).

softmax=class is checked with C = model.num_classes (round(sqrt(V)) when 0) classes of equal
id ranges over the random vocabulary (no word counts there), so every class has two or more
words at the default sizes and every word of the word matrix is exercised.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from rnnlm_cli.errors import ConfigError
from rnnlm_cli.nn.cells import CELLS
from rnnlm_cli.nn.gradients import dense
from rnnlm_cli.nn.model import Model
from rnnlm_cli.train.step import MODES

SOFTMAXES = ("full", "class")

NOISE = 1e-15       # relative rounding error of a float64 loss summed over a few dozen terms
FLOOR_FACTOR = 1e6  # floor of the relative-error denominator = FLOOR_FACTOR * noise


# the regularisers gradcheck turns on for its `regularised` checks (masks fixed: every evaluation
# of the loss draws them from the same seed)
REGULARISED = {"dropout_embedding": 0.3, "dropout_between": 0.3, "dropout_output": 0.3, "dropout_locked": True,
               "dropout_words": 0.2, "weight_drop": 0.3, "ar": 0.7, "tar": 0.9}
REGULARISED_MODES = ("full", "stream")


def _problem(model: Model, mode: str, cfg, rng: np.random.Generator, mask_seed: int | None = None):
    """(loss_fn, grad_fn, setting) for one mode: the loss that mode defines and its gradient.

    mask_seed: None evaluates without dropout; an int trains (dropout, weight drop, AR/TAR) with
    masks drawn from that seed at every evaluation, so the loss is a fixed function of the weights
    whose value includes the activation regularisers (count * R, see Forward)."""
    gc = cfg.gradcheck
    T, B, V = gc.steps, gc.batch_size, model.V
    x = rng.integers(0, V, size=(T, B))
    y = rng.integers(0, V, size=(T, B))
    plain = mask_seed is None

    def run(*args, **kw):
        if plain:
            return model.forward(*args, **kw)
        return model.forward(*args, train=True, rng=np.random.default_rng(mask_seed), **kw)

    def total(fwd):
        return fwd.loss if plain else fwd.loss + fwd.count * fwd.reg

    def random_state(batch):
        return tuple(rng.uniform(-0.8, 0.8, size=(batch, model.H)) for _ in model.initial_state(batch))

    if mode == "full":
        mask = np.ones((T, B))
        if plain and B > 1 and T > 1:
            mask[rng.integers(1, T):, B - 1] = 0.0           # one padded sentence
        return (lambda: total(run(x, y, None, mask=mask)),
                lambda: model.backward(run(x, y, None, mask=mask)),
                "padded" if plain else "regularised")
    if mode == "stream":
        k1 = max(1, T // 2)
        state = random_state(B)
        return (lambda: total(run(x, y, state, loss_start=T - k1)),
                lambda: model.backward(run(x, y, state, loss_start=T - k1)),
                ("" if plain else "regularised,") + f"k1={k1},k2={T}")
    if not plain:
        raise ValueError(f"no regularised check for mode {mode!r}")
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


def resolution(f0: float, eps: float) -> float:
    """Rounding error of one difference quotient (f(theta + eps) - f(theta - eps)) / 2 eps: the
    loss's rounding, NOISE |f|, divided by eps."""
    return NOISE * max(abs(f0), 1.0) / eps


def suggested_eps(f0: float) -> float:
    """The eps where rounding (NOISE |f| / eps) meets truncation (eps^2 for a curvature of order 1)."""
    return (NOISE * max(abs(f0), 1.0)) ** (1.0 / 3.0)


class _Probe:
    """Difference quotients of one model's loss: along one element, or along a direction.

    Every loss evaluation runs with numpy's floating-point warnings off: NaN and inf are
    looked for by name (`nonfinite`), never printed.
    """

    def __init__(self, model, loss_fn, eps: float):
        self.model, self.loss_fn, self.eps = model, loss_fn, eps
        with np.errstate(all="ignore"):
            self.f0 = loss_fn()
        self.r = resolution(self.f0, eps)
        self.floor = FLOOR_FACTOR * self.r
        self.scale = max(float(np.max(np.abs(p))) for p in model.params.values())

    def element(self, flat: np.ndarray, i: int, step: float) -> tuple[float, float, float]:
        """(f(theta_i + step), f(theta_i - step), the difference quotient)."""
        keep = flat[i]
        self.moved = keep + step != keep and keep - step != keep      # the perturbation is representable
        with np.errstate(all="ignore"):
            flat[i] = keep + step
            fp = self.loss_fn()
            flat[i] = keep - step
            fm = self.loss_fn()
        flat[i] = keep
        return fp, fm, (fp - fm) / (2 * step)

    def direction(self, vs: dict, norm: float, step: float) -> tuple[float, float, float]:
        """The same along the unit vector vs / norm over all parameters."""
        saved = {k: p.copy() for k, p in self.model.params.items()}
        values = []
        with np.errstate(all="ignore"):
            for sign in (1.0, -1.0):
                for k, p in self.model.params.items():
                    p[...] = saved[k] + sign * step * vs[k] / norm
                values.append(self.loss_fn())
        for k, p in self.model.params.items():
            p[...] = saved[k]
        return values[0], values[1], (values[0] - values[1]) / (2 * step)

    def error(self, a: float, n: float) -> float:
        """The relative error |a - n| / max(|a| + |n|, floor) (NaN where a or n is)."""
        with np.errstate(all="ignore"):
            return abs(a - n) / max(abs(a) + abs(n), self.floor)

    def unmeasurable(self, analytic, fps, fms, largest: float, tolerance: float, flat: bool = False) -> str | None:
        """Why a row cannot measure anything, or None. In order: NaN/inf met; eps not small next to
        the parameters; the smallest error the check would catch, tolerance * floor, not below
        the largest difference measured (an analytic gradient of zero would pass), unless the
        row is `flat`: every analytic value 0 and every perturbed loss exactly unchanged
        although the parameter moved (a zero gradient, measured exactly)."""
        eps = self.eps
        if not np.all(np.isfinite(analytic)):
            return "the analytic gradient holds NaN or inf"
        if not (np.all(np.isfinite(fps)) and np.all(np.isfinite(fms)) and np.isfinite(self.f0)):
            return "the loss at theta +- eps is NaN or inf (eps too large, or the model overflows)"
        if eps >= self.scale:
            return (f"eps {eps:.3g} is too large: it is not small next to the parameters (largest |theta| "
                    f"{self.scale:.3g}), so the difference is no derivative (use eps near {suggested_eps(self.f0):.0e})")
        catchable = tolerance * self.floor
        if not largest > catchable and not flat:
            return (f"eps {eps:.3g} is below the loss's resolution: a difference quotient rounds to ~{self.r:.1e} "
                    f"(loss {self.f0:.3g}), so errors below {catchable:.1e} go unseen, and the largest difference "
                    f"measured is {largest:.1e} (use eps near {suggested_eps(self.f0):.0e})")
        return None

    def too_coarse(self, a: float, n: float, n2: float, tolerance: float) -> str | None:
        """Whether eps is too large: central differences err by ~c eps^2, and the quotients at
        eps and 2 eps estimate it (Richardson: |n(2 eps) - n(eps)| / 3). Too large when that
        error, above rounding, exceeds what the tolerance allows, or when removing it turns a
        failing comparison into a passing one."""
        truncation = abs(n2 - n) / 3.0
        allowed = tolerance * max(abs(a) + abs(n), self.floor)
        extrapolated = (4.0 * n - n2) / 3.0                # the quotient with the eps^2 term removed
        explained = self.error(a, n) > tolerance >= self.error(a, extrapolated)
        if np.isfinite(truncation) and ((truncation > allowed and truncation > 10 * self.r)
                                        or (explained and truncation > self.r)):
            return (f"eps {self.eps:.3g} is too large for the loss's curvature: the difference quotient's "
                    f"truncation error (~{truncation:.1e}, from eps and 2 eps) exceeds the {allowed:.1e} the "
                    f"tolerance allows (use eps near {suggested_eps(self.f0):.0e})")
        return None


REFINE_STEPS = (10.0, 100.0)     # eps divided by these when eps was found too coarse


def _refine(probe, flat, g, idx, errs, eps, tolerance) -> float:
    """The largest error after re-measuring each failing element with smaller steps (eps / 10,
    eps / 100), keeping the smallest error each reaches. A kink of the loss (a ReLU unit whose
    pre-activation lies within eps of 0) bends a difference quotient that straddles it, however
    right the gradient is; a step shorter than the distance to the kink does not straddle it.
    A wrong gradient stays wrong at every step, so this cannot pass a wrong gradient (the
    smaller steps' larger rounding only makes the comparison stricter)."""
    worst = 0.0
    for i, err in zip(idx, errs):
        for div in REFINE_STEPS:
            if err <= tolerance:
                break
            err = min(err, probe.error(g[i], probe.element(flat, i, eps / div)[2]))
        worst = max(worst, err)
    return worst


def _check_one(model, loss_fn, grad_fn, eps, samples, rng, tolerance=1e-6):
    """Rows (param, max_rel_error, checked, passed, reason) for every parameter plus the
    directional check. max_rel_error is None where NaN/inf made it unmeasurable; reason says
    why a check could not measure (None otherwise)."""
    with np.errstate(all="ignore"):
        grads = {name: dense(g) for name, g in grad_fn().items()}      # every gradient type as an array
    probe = _Probe(model, loss_fn, eps)
    rows = []
    for name, p in model.params.items():
        flat, g = p.reshape(-1), grads[name].reshape(-1)
        idx = np.arange(flat.size) if not samples or samples >= flat.size else \
            rng.choice(flat.size, size=samples, replace=False)
        worst, at, fps, fms, nums, errs = 0.0, None, [], [], [], []
        exact_zero = True                                   # every element: a = 0, and f did not move though theta did
        for i in idx:
            fp, fm, num = probe.element(flat, i, eps)
            exact_zero = exact_zero and probe.moved and fp == fm and g[i] == 0
            fps.append(fp)
            fms.append(fm)
            nums.append(num)
            err = probe.error(g[i], num)
            errs.append(err)
            if at is None or err > worst:
                worst, at = err, (i, num)
        largest = max((abs(n) for n in nums), default=0.0)
        reason = (probe.unmeasurable(g[idx], fps, fms, largest, tolerance, flat=exact_zero) if len(idx)
                  else "no element was checked")
        if reason is None and worst > tolerance:          # a failure: is it the gradient, or eps?
            i, num = at
            reason = probe.too_coarse(g[i], num, probe.element(flat, i, 2 * eps)[2], tolerance)
            if reason is not None:                         # eps too large here: look closer
                refined = _refine(probe, flat, g, idx, errs, eps, tolerance)
                if refined <= tolerance:
                    worst, reason = refined, None
        rows.append(_row(name, worst, int(len(idx)), tolerance, reason))
    # directional: a random unit vector over all parameters; its truncation error is always estimated
    vs = {k: rng.standard_normal(p.shape) for k, p in model.params.items()}
    norm = np.sqrt(sum(float((v * v).sum()) for v in vs.values()))
    analytic = sum(float((vs[k] * grads[k]).sum()) for k in vs) / norm
    fp, fm, num = probe.direction(vs, norm, eps)
    reason = probe.unmeasurable(analytic, fp, fm, abs(num), tolerance)
    if reason is None:
        reason = probe.too_coarse(analytic, num, probe.direction(vs, norm, 2 * eps)[2], tolerance)
        if reason is not None:                             # the element rows that failed fail for the same reason
            rows = [r if r[3] or r[4] else (*r[:4], reason) for r in rows]
    rows.append(_row("direction", probe.error(analytic, num), 1, tolerance, reason))
    return rows


def _row(name, worst, checked, tolerance, reason):
    """(name, max_rel_error or None, checked, passed, reason): a row with a reason fails."""
    error = float(worst) if np.isfinite(worst) and not (reason and "NaN" in reason) else None
    return name, error, checked, reason is None and worst <= tolerance, reason


def run_gradcheck(cfg, cells=None, modes=None, tying=None, samples=None, tolerance=None,
                  rng: np.random.Generator | None = None, softmaxes=None, layers=None,
                  regularised=(False,)) -> dict:
    """Check analytic gradients against finite differences.

    cells / modes / tying / softmaxes / layers: lists to combine (None = the config's model.cell,
    train.bptt, model.tie_weights, model.softmax, model.num_layers). regularised: False checks
    the model without dropout; True with every regulariser of REGULARISED on, masks fixed
    (full and stream modes; a window-mode loss is evaluated as windows stacked along the
    batch, which would draw other masks). samples: elements checked per parameter
    (None = gradcheck.samples; 0 = all). tolerance: None = gradcheck.tolerance. rng: None =
    seeded from train.seed. Returns {"passed", "tolerance", "checks": [{"cell", "bptt",
    "tie_weights", "softmax", "num_layers", "setting", "param", "max_rel_error", "checked",
    "passed"}, ...]}. With two or more layers the parameters are named cell.<layer>.W_x, ...
    """
    gc = cfg.gradcheck
    cells = list(cells) if cells else [cfg.model.cell]
    modes = list(modes) if modes else [cfg.train.bptt]
    tying = list(tying) if tying is not None else [cfg.model.tie_weights]
    softmaxes = list(softmaxes) if softmaxes else [cfg.model.softmax]
    layers = list(layers) if layers else [cfg.model.num_layers]
    samples = gc.samples if samples is None else samples
    tolerance = gc.tolerance if tolerance is None else tolerance
    rng = rng if rng is not None else np.random.default_rng(cfg.train.seed)
    if not 0 < tolerance < 1:
        raise ConfigError(f"gradcheck.tolerance: a relative error |a - n| / (|a| + |n|) is at most 1, so a "
                          f"tolerance of {tolerance:.3g} would pass every check; expected a value in (0, 1)")
    for c in cells:
        if c not in CELLS:
            raise ValueError(f"unknown cell {c!r}")
    for m in modes:
        if m not in MODES:
            raise ValueError(f"unknown bptt mode {m!r}")
    for sm in softmaxes:
        if sm not in SOFTMAXES:
            raise ValueError(f"unknown softmax {sm!r}")
    for n in layers:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"layer counts must be positive integers, got {n!r}")
    checks = []
    plain = {"dropout_embedding": 0.0, "dropout_output": 0.0, "dropout_between": 0.0, "dropout_words": 0.0,
             "weight_drop": 0.0, "ar": 0.0, "tar": 0.0}
    for reg in regularised:
        for num_layers in layers:
            for softmax in softmaxes:
                for cell in cells:
                    for mode in modes:
                        if reg and mode not in REGULARISED_MODES:
                            continue
                        for tie in tying:
                            mcfg = dataclasses.replace(cfg.model, cell=cell, embedding_size=gc.hidden_size,
                                                       hidden_size=gc.hidden_size, tie_weights=bool(tie),
                                                       softmax=softmax, num_layers=int(num_layers),
                                                       **(REGULARISED if reg else plain))
                            model = Model(mcfg, gc.vocab_size, dtype=np.float64, rng=rng)
                            for name, p in model.params.items():             # move biases off zero
                                if p.ndim == 1:
                                    p += rng.uniform(-0.5, 0.5, size=p.shape)
                            seed = int(rng.integers(2 ** 31)) if reg else None
                            loss_fn, grad_fn, setting = _problem(model, mode, cfg, rng, mask_seed=seed)
                            for name, err, n, ok, reason in _check_one(model, loss_fn, grad_fn, gc.eps, samples,
                                                                       rng, tolerance):
                                checks.append({"cell": cell, "bptt": mode, "tie_weights": bool(tie),
                                               "softmax": softmax, "num_layers": int(num_layers),
                                               "setting": setting, "param": name, "max_rel_error": err,
                                               "checked": n, "passed": bool(ok)})
                                if reason:
                                    checks[-1]["reason"] = reason
    return {"passed": bool(checks) and all(c["passed"] for c in checks), "tolerance": float(tolerance),
            "checks": checks}


def all_combinations() -> dict:
    """Keyword arguments of run_gradcheck for `--all`: one and two layers x every cell x every
    mode x tying on/off x full and class-factorised softmax, then the same with the regularisers
    on (full and stream modes)."""
    return {"cells": list(CELLS), "modes": list(MODES), "tying": [False, True], "softmaxes": list(SOFTMAXES),
            "layers": [1, 2], "regularised": [False, True]}

