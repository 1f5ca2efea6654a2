"""The time loop: forward over T steps and the three backpropagation-through-time modes.

Every mode's gradient is the EXACT gradient of the loss that mode defines, with the cut
states held constant:

full    whole sentences from the zero state, padded into a batch with a mask; one backward
        recursion over all T steps (`backward_full`). Padding sits after each sentence, so
        it contributes nothing and the state after it is irrelevant.
window  per-output truncation (the classic bptt_truncate): every output E_t backpropagates
        through at most k states s_t, s_{t-1}, ..., s_{t-k+1}; k = 1 means no recurrent path,
        k >= T equals full (`backward_window`, lag-batched, with the `on_lag` hook).
stream  TBPTT(k1, k2) over B parallel streams: each chunk of k1 outputs backpropagates k2
        steps. The forward runs over the k2 window that ends with the chunk, from the state
        saved k2-k1 steps before it (a constant), scoring only the last k1 outputs
        (`loss_start`); the full recursion over that window is then exact. The state to carry
        is the one after `batch.carry` inputs of the window (= the final state when k2 == k1).

Stacked layers. Layer l's input at step t is layer l-1's h_t (the embedding for l = 0). A full
recursion (full and stream modes) runs layer by layer, top first: `backward_full` on the top
layer, then the gradient w.r.t. its input (one GEMM over all positions) is the next layer's dhs.
Window mode runs every layer inside each lag (`backward_window`), so the window bounds the time
lag of every path, whichever layers it crosses. Stream mode carries every layer's state.

The model (model.py) calls these kernels; which one a batch uses, the state it starts from and
the state it carries are the business of the training step above it (train/step.py, `MODES`).
Nothing here knows a cell by name: the loops use only the cell's step methods.
"""

from __future__ import annotations

import numpy as np


# --------------------------------------------------------------------------- forward

def forward_sequence(cell, params: dict, xproj: np.ndarray, state: tuple):
    """Run the cell over xproj (T, B, GH) from `state`; returns the filled cells.Cache.

    params: the cell's parameters without the `cell.` prefix. The cache arrays are allocated
    once here; the loop itself allocates nothing per step. (The model runs it under
    kernels.loop_threads(): its small GEMMs on one BLAS thread.)
    """
    T, B, _ = xproj.shape
    cache = cell.new_cache(T, B, state, params)
    for t in range(T):
        cell.forward_step(cache, t, xproj[t])
    return cache


# --------------------------------------------------------------------------- backward

def backward_full(cell, cache, dhs: np.ndarray) -> np.ndarray:
    """One backward recursion over all T steps.

    dhs (T, B, H): dE/dh_t from the outputs at each position; it is updated IN PLACE into the
    total gradient dE/dh_t (outputs plus everything later). Returns da_all (T, B, GH); the
    initial state is a constant (its gradient is not propagated further).
    """
    T, B, H = dhs.shape
    da_all = np.empty((T, B, cell.gates * H), dtype=dhs.dtype)      # (T, B, GH)
    cell.prepare_backward(cache)                                      # factors of every position at once
    facs, wt = cell.step_factors(cache), cell.w_hT(cache)           # whole record; sliced per step
    dc = None
    dh_prev = None
    for t in range(T - 1, -1, -1):
        dh = dhs[t:t + 1]                                             # (1, B, H)
        if dh_prev is not None:
            dh += dh_prev
        # cell.backward_step(cache[t], ...) without building a sliced record per step
        _, dh_prev, dc = cell.backward_apply(tuple(f[t:t + 1] for f in facs), wt, dh, dc, da_all[t:t + 1])
    return da_all


def backward_window(cells, caches, dhs: np.ndarray, k: int, input_grad=None, on_lag=None) -> list:
    """Per-output truncation to k states, lag-batched: k backward steps per layer in all.

    cells, caches: one per layer, bottom first (one layer: lists of one). dhs (T, B, H): dE/dh_t
    of the top layer from the outputs (left unchanged). Every output E_t reaches the states
    s^l_t .. s^l_{t-k+1} of every layer l and no older one: a path from E_t to s^l_j has time
    lag t - j, however it moves through depth.

    Lag d = 0..min(k, T)-1 handles, at once, every output E_t with t >= d, top layer first:
    D^l[i] = dE_{i+d}/ds^l_i for i = 0..T-d-1 goes through layer l's step at position i (a cache
    slice of T-d positions); its pre-activation gradient is added to da_all[l][i]; dh_prev[1:]
    becomes layer l's recurrent part of lag d+1, and input_grad(l, da) (the gradient w.r.t.
    layer l's input, (T-d, B, H)) is added to layer l-1's D of the same lag d.

    on_lag(layer, d, dh_lag, dc_lag, da_lag), if given, is called for each layer and lag with
        dh_lag (T-d, B, H)   dh_lag[i] = dE_{i+d}/dh^l_i   (dc_lag likewise for LSTM, else None)
        da_lag (T-d, B, GH)  the pre-activation gradient lag d adds at positions i of that layer
    so the contribution of lag d to layer l's dW_h is h_prev[:T-d]^T cell.recurrent_da(cache[:T-d], da_lag).
    Returns da_all: one (T, B, GH) array per layer.
    """
    T, B, H = dhs.shape
    if k < 1:
        raise ValueError(f"window truncation must be >= 1, got {k}")
    L = len(cells)
    da_all = [np.zeros((T, B, cell.gates * H), dtype=dhs.dtype) for cell in cells]    # (T, B, GH) each
    for cell, cache in zip(cells, caches):
        cell.prepare_backward(cache)                                  # factors of every position at once
    rec = [None] * L                                                  # recurrent part of each layer's D
    rec_c = [None] * L
    rec[L - 1] = dhs
    for d in range(min(k, T)):
        n = T - d
        above = None                                                  # from the layer above, same lag
        for layer in range(L - 1, -1, -1):
            D = rec[layer]
            if above is not None:                                     # D is this step's own dh_prev[1:] (never dhs)
                D = above if D is None else np.add(D, above, out=D)
            Dc = rec_c[layer]
            da, dh_prev, dc_prev = cells[layer].backward_step(caches[layer][0:n], D, Dc)
            if on_lag is not None:
                on_lag(layer, d, D, Dc, da)
            da_all[layer][:n] += da
            rec[layer] = dh_prev[1:]
            rec_c[layer] = None if dc_prev is None else dc_prev[1:]
            above = input_grad(layer, da) if layer > 0 else None
    return da_all
