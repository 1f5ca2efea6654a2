"""The lag profile: how much gradient an output still sends d steps back, measured once here.

For a batch of sequences (x, y), E_t the -log p of output t and s_k the state after input k
(h_k, or (h_k, c_k) for the LSTM):

    g(t, k)          ||dE_t/ds_k||_2 per sequence, summed over the sequences (`LagMatrix`,
                     filled by the `on_lag` hook of `Model.backward(fwd, truncation=T)`: window
                     mode with k = T is full BPTT and visits every (t, d))
    normalised[d]    mean over t = d..T-1 of g(t, t-d) / g(t, t)
    horizon          the largest lag d with normalised[d'] > threshold for every d' <= d
                     (lower_bound: it never fell below, d = T-1)

The trainer's `train.k2: auto` (train/trainer.py) and the gradient diagnostics
(analysis/diagnostics.py) both use these definitions.
"""

from __future__ import annotations

import numpy as np


def state_norms(dh: np.ndarray, dc: np.ndarray | None):
    """(||dh||, ||dc|| or None, ||(dh, dc)||) over the last axis: (n, B) each."""
    nh = np.linalg.norm(dh, axis=-1)                                    # (n, B)
    if dc is None:
        return nh, None, nh
    nc = np.linalg.norm(dc, axis=-1)
    return nh, nc, np.sqrt(nh * nh + nc * nc)


class LagMatrix:
    """on_lag hook: g[t, k] += sum over the batch of ||dE_t/ds^l_k|| for one layer l (of a
    stacked model; 0 for one layer)."""

    def __init__(self, T: int, layer: int = 0):
        self.g = np.zeros((T, T))                                       # (t, k)
        self.layer = layer

    def __call__(self, layer, d, dh_lag, dc_lag, da_lag):
        if layer != self.layer:
            return
        _, _, ns = state_norms(dh_lag, dc_lag)
        i = np.arange(ns.shape[0])
        self.g[i + d, i] += ns.sum(axis=1)


def normalised_profile(g: np.ndarray) -> np.ndarray:
    """normalised[d] (T,) of a (t, k) matrix g (NaN where g(t, t) is 0 for every t >= d)."""
    T = len(g)
    t = np.arange(T)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = g / np.diag(g)[:, None]
        return np.array([ratio[t[d:], t[d:] - d].mean() for d in range(T)])


def horizon(normalised, threshold: float) -> tuple[int, bool]:
    """(horizon, whether it is only a lower bound) of a normalised lag profile."""
    v = np.asarray(normalised, dtype=float)
    below = np.flatnonzero(~(v > threshold))
    if not below.size:
        return len(v) - 1, True
    return max(int(below[0]) - 1, 0), False


def measure(model, x: np.ndarray, y: np.ndarray, state=None) -> np.ndarray:
    """The normalised lag profile (T,) of `model` on x, y (T, B) from `state` (None: zeros),
    without dropout; draws no random numbers and changes no parameter. A stacked model's is
    its top layer's (the one the outputs read)."""
    T = x.shape[0]
    fwd = model.forward(x, y, state, train=False)
    lags = LagMatrix(T, layer=model.L - 1)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        model.backward(fwd, truncation=T, on_lag=lags)
    return normalised_profile(lags.g)
