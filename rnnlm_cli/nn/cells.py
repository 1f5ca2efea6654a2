"""Recurrent cells: tanh, relu (Elman), GRU and LSTM, with gates stacked in one matrix, and
the registry of cells (`CELLS`, `register_cell`, `make_cell`).

Adding a cell is one `Cell` subclass plus one `register_cell(name, TheCell)` line: the model,
the time loop, training, gradcheck and the diagnostics use only what the class declares.

Parameters of every cell (the model stores them as `cell.<name>`):
    W_x (E, G*H)   input-to-gates, G = len(gate_names): 1 (tanh/relu), 3 (gru), 4 (lstm)
    W_h (H, G*H)   state-to-gates
    b   (G*H,)     gate bias (added once, to the input projection)
    b_h (H,)       GRU only: recurrent bias of the candidate block (inside the reset gate)

Gate blocks along the last axis: gru = [r, z, n]; lstm = [i, f, g, o].

Speed structure. The model computes the input projection of all steps as one GEMM,
`xproj = X @ W_x + b` (T, B, GH), before the time loop; a step only adds `h_{t-1} @ W_h`.

State. A tuple: (h,) for tanh/relu/gru, (h, c) for lstm, each (B, H).

Forward record. `new_cache` allocates, once per batch, every array the backward needs with a
leading time axis; `forward_step(cache, t, xp)` fills position t. A `Cache` can be sliced along
time (`cache[a:b]`, `cache[t]` keeps a length-1 axis), which is how the BPTT engine and the
diagnostics feed a backward step N positions at once.

Backward. `backward_step(cache_slice, dh, dc=None, out=None) -> (da, dh_prev, dc_prev)`:
    dh (N, B, H)    dE/dh_t of the N positions of the slice (plus dc for lstm; None = 0)
    da (N, B, GH)   dE/d(pre-activation) = gradient w.r.t. xproj_t; parameter gradients follow
                    from it after the time loop (see `param_grads`)
    dh_prev         dE/dh_{t-1} = da_h @ W_h^T (+ the direct GRU term), dc_prev for lstm
All operations broadcast over the leading axes, so a batch of P probe vectors dh (P, B, H)
against a slice of one position (1, B, ...) gives P rows of the step Jacobian
ds_t/ds_{t-1} (transposed product v^T J) in one call.

`da_h` (the gradient w.r.t. the recurrent product h_{t-1} W_h) equals `da` except for the GRU
candidate block, which is multiplied by the reset gate (`recurrent_da`).

Tangent. `tangent(fac, W_h, v)` is J v, the linearised forward step, written as the exact
transpose of `backward_apply` right under it (analysis/jacobians.py uses both, matrix-free);
`input_tangent(fac, a)` is the state's response to a change `a` of the input projection, the
transpose of the dh, dc -> da part of the same step (a stacked model's layer reads the h below).

Speed of the backward. Everything in a step's backward that does not depend on dh (the
derivatives of the nonlinearities, products of gates) is computed for all positions of a record
at once by `backward_factors(cache)` (a tuple of arrays with the record's leading time axis);
a step then costs a handful of element-wise products on (B, H) arrays and one GEMM with the
contiguous copy of W_h^T (`w_hT`, made once per record: with a transposed view the GEMM is 2-3x
slower at these shapes). The BPTT loops call `prepare_backward(cache)` once, which stores the
factors in the record, so every slice `cache[t]` carries its rows.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from rnnlm_cli.nn.kernels import big_gemm
from rnnlm_cli.errors import ConfigError


def sigmoid(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """1 / (1 + exp(-x)) written as 0.5 * (1 + tanh(x / 2)): cannot overflow, keeps the dtype,
    one transcendental per element; accurate to ~1 ulp of 1 in absolute terms (far in the
    negative tail the result is 0 rather than a tiny positive number)."""
    out = np.multiply(x, 0.5, out=out)
    np.tanh(out, out=out)
    out *= 0.5
    out += 0.5
    return out


def _column_sums(a: np.ndarray) -> np.ndarray:
    """a.sum(axis=0) of a 2-D array as a GEMV (ones @ a): 1.5x faster at (700, 800)."""
    return np.ones(a.shape[0], dtype=a.dtype) @ a


class Cache:
    """Per-batch forward record of a cell.

    arrays  per-position arrays with a leading time axis (sliced by `cache[a:b]`)
    weights the weights the step used (W_h, b_h): shared, never sliced
    seq     whole-sequence state arrays with T+1 rows (row 0 = the initial state), unsliced;
            present only on the full record
    work    scratch buffers of the forward loop
    """

    __slots__ = ("arrays", "weights", "seq", "work")

    def __init__(self, arrays: dict, weights: dict, seq: dict | None = None, work: dict | None = None):
        self.arrays = arrays
        self.weights = weights
        self.seq = seq
        self.work = work

    def __len__(self) -> int:
        return len(next(iter(self.arrays.values())))

    def __getitem__(self, idx) -> "Cache":
        if isinstance(idx, (int, np.integer)):
            idx = int(idx)
            if idx < 0:
                idx += len(self)
            idx = slice(idx, idx + 1)
        return Cache({k: v[idx] for k, v in self.arrays.items()}, self.weights)


def _uniform(rng, shape, bound, dtype):
    return rng.uniform(-bound, bound, size=shape).astype(dtype)


def input_init(rng, fan_in: int, fan_out: int, shape, init: str, scale: float, dtype) -> np.ndarray:
    """Input/output weights: uniform +-1/sqrt(fan_in), or xavier +-sqrt(6/(fan_in+fan_out))."""
    if init == "uniform":
        bound = 1.0 / np.sqrt(fan_in)
    elif init == "xavier":
        bound = np.sqrt(6.0 / (fan_in + fan_out))
    else:
        raise ConfigError(f"model.init: unknown initialisation '{init}'")
    return (_uniform(rng, shape, bound, np.float64) * scale).astype(dtype)


def recurrent_block_init(rng, H: int, init: str) -> np.ndarray:
    """One (H, H) recurrent block: uniform, xavier, orthogonal (QR of a Gaussian) or identity."""
    if init == "uniform":
        return rng.uniform(-1.0, 1.0, size=(H, H)) / np.sqrt(H)
    if init == "xavier":
        bound = np.sqrt(6.0 / (2 * H))
        return rng.uniform(-bound, bound, size=(H, H))
    if init == "orthogonal":
        q, r = np.linalg.qr(rng.standard_normal((H, H)))
        return q * np.where(np.diag(r) < 0, -1.0, 1.0)  # sign fix: uniform over O(H)
    if init == "identity":
        return np.eye(H)
    raise ConfigError(f"model.recurrent_init: unknown initialisation '{init}'")


class Cell:
    """Base of the cells; see the module docstring for the conventions.

    What a cell class declares beside its steps (the analysis asks these, never the name):
        name               the registry name (model.cell)
        gate_names         the blocks of W_h (and of W_x, b) along the last axis, in order; a
                           one-block cell calls its block "W_h"
        gate_gammas        per block, a bound gamma >= |f'| of the nonlinearity the block feeds
                           (1 for tanh and relu, 1/4 for the logistic sigmoid)
        simple_recurrence  True when the step Jacobian is diag(f'(a)) W_h^T (Elman cells), so
                           ||ds_t/ds_{t-1}|| <= gamma sigma_max(W_h) (Pascanu et al. 2013)
        has_c              the state carries a memory cell c beside h (lstm)
        n_factors          how many arrays `backward_factors` returns
        extra_params       parameters beyond W_x, W_h, b
        config_keys        model.* keys the cell reads beyond the shared ones (reported with it)
    and the methods `forward_step`, `backward_factors`, `backward_apply`, `tangent`,
    `input_tangent` (stacked models' Jacobians only) and `saturation_units` (plus `new_cache`
    for what its backward needs beyond h).
    """

    name = ""
    gate_names: tuple = ("W_h",)
    gate_gammas: tuple = (1.0,)
    simple_recurrence = False
    has_c = False
    n_factors = 0
    extra_params: tuple = ()
    config_keys: tuple = ()

    def __init__(self, hidden_size: int):
        self.H = hidden_size

    @property
    def gates(self) -> int:
        """G: the number of gate blocks of W_h."""
        return len(self.gate_names)

    @property
    def state_size(self) -> int:
        """P: numbers in the state, H (h) or 2H (h and c)."""
        return 2 * self.H if self.has_c else self.H

    # ------------------------------------------------------------------ parameters
    def param_shapes(self, input_size: int) -> dict:
        GH = self.gates * self.H
        return {"W_x": (input_size, GH), "W_h": (self.H, GH), "b": (GH,)}

    def init_params(self, input_size: int, cfg, rng: np.random.Generator, dtype) -> dict:
        """Initial W_x, W_h, b (and b_h) from `cfg` (a ModelConfig) and the generator."""
        H, G = self.H, self.gates
        W_x = input_init(rng, input_size, H, (input_size, G * H), cfg.init, cfg.init_scale, dtype)
        blocks = [recurrent_block_init(rng, H, cfg.recurrent_init) for _ in range(G)]
        W_h = (np.concatenate(blocks, axis=1) * (cfg.init_scale * cfg.recurrent_scale)).astype(dtype)
        return {"W_x": W_x, "W_h": W_h, "b": np.zeros(G * H, dtype=dtype)}

    def initial_state(self, batch: int, dtype) -> tuple:
        return tuple(np.zeros((batch, self.H), dtype=dtype) for _ in range(1 + self.has_c))

    # ------------------------------------------------------------------ forward
    def new_cache(self, T: int, B: int, state: tuple, params: dict) -> Cache:
        """Allocate the record of T steps and put the initial state in row 0."""
        dtype = params["W_h"].dtype
        h = np.empty((T + 1, B, self.H), dtype=dtype)  # (T+1, B, H)
        h[0] = state[0]
        arrays = {"h": h[1:], "h_prev": h[:-1]}
        return Cache(arrays, {"W_h": params["W_h"]}, seq={"h": h},
                     work={"a": np.empty((B, self.gates * self.H), dtype=dtype)})

    def forward_step(self, cache: Cache, t: int, xp: np.ndarray) -> None:
        """Fill position t of the record from the state in row t and xp = xproj_t (B, GH)."""
        raise NotImplementedError

    def state_at(self, cache: Cache, n: int) -> tuple:
        """The state after n steps (n = 0: the initial state), copied out of the record."""
        return tuple(cache.seq[k][n].copy() for k in (("h", "c") if self.has_c else ("h",)))

    # ------------------------------------------------------------------ backward
    def w_hT(self, cache: Cache) -> np.ndarray:
        """W_h^T as a C-contiguous (GH, H) array, made once per forward record (shared by slices)."""
        wt = cache.weights.get("W_hT")
        if wt is None:
            wt = cache.weights["W_hT"] = np.ascontiguousarray(cache.weights["W_h"].T)
        return wt

    def backward_factors(self, cache: Cache) -> tuple:
        """The dh-independent parts of the backward for every position of `cache` (leading axis)."""
        raise NotImplementedError

    def prepare_backward(self, cache: Cache) -> None:
        """Compute the factors of a whole record once and keep them in it (as arrays `_fac<i>`,
        so slices taken afterwards carry their rows), plus W_h^T; the BPTT loops call this."""
        if "_fac0" not in cache.arrays:
            for i, f in enumerate(self.backward_factors(cache)):
                cache.arrays[f"_fac{i}"] = f
        self.w_hT(cache)

    def step_factors(self, cache: Cache) -> tuple:
        """The backward factors of the positions of `cache`: from the record when
        `prepare_backward` stored them, else computed."""
        a = cache.arrays
        if "_fac0" in a:
            return tuple(a[f"_fac{i}"] for i in range(self.n_factors))
        return self.backward_factors(cache)

    def backward_step(self, cache: Cache, dh, dc=None, out=None):
        """One backward step over the positions of `cache` (see the module docstring)."""
        da = self._da_buffer(dh, cache, out)
        return self.backward_apply(self.step_factors(cache), self.w_hT(cache), dh, dc, da)

    def backward_apply(self, fac, wt, dh, dc, da):
        """The step itself: da (written in place), dh_prev, dc_prev from dh, dc and the factors."""
        raise NotImplementedError

    def tangent(self, fac, W_h: np.ndarray, v: np.ndarray) -> np.ndarray:
        """J v = ds_t/ds_{t-1} v for n positions: v (n, P) a change of s_{t-1}, fac the backward
        factors of those positions (leading axis n), W_h (H, GH). The exact transpose of
        `backward_apply` (the linearised forward step): (n, P)."""
        raise NotImplementedError

    def input_tangent(self, fac, a: np.ndarray) -> np.ndarray:
        """ds_t/dxproj_t a for n positions: the change of the state s_t (n, P) that a change
        `a` (n, GH) of the input projection xproj_t causes, with s_{t-1} held. The exact
        transpose of the input part of `backward_apply` (dh, dc -> da); a stacked model's step
        Jacobian needs it (a layer's input is the h of the layer below, analysis/jacobians.py)."""
        raise NotImplementedError

    def recurrent_da(self, cache: Cache, da: np.ndarray) -> np.ndarray:
        """Gradient w.r.t. the recurrent product h_{t-1} @ W_h, from da (same for all but GRU)."""
        return da

    def param_grads(self, cache: Cache, x2: np.ndarray, da_all: np.ndarray) -> dict:
        """W_x, W_h, b (b_h) gradients from all positions at once (one GEMM each).

        x2 (T*B, E) the cell inputs; da_all (T, B, GH) the collected pre-activation gradients.
        """
        T, B, GH = da_all.shape
        da2 = da_all.reshape(T * B, GH)
        hprev = cache.arrays["h_prev"].reshape(T * B, self.H)
        dah = self.recurrent_da(cache, da_all).reshape(T * B, GH)
        with big_gemm(T * B * GH * max(self.H, x2.shape[1])):
            grads = {"W_x": x2.T @ da2,          # undoes xproj = X @ W_x + b
                     "W_h": hprev.T @ dah}       # undoes h_{t-1} @ W_h
        grads["b"] = _column_sums(da2)
        return grads

    def _da_buffer(self, dh, cache, out):
        if out is not None:
            return out
        lead = np.broadcast_shapes(dh.shape, cache.arrays["h"].shape)[:-1]
        return np.empty(lead + (self.gates * self.H,), dtype=dh.dtype)

    # ------------------------------------------------------------------ for the diagnostics
    def saturation_units(self, cache: Cache) -> list[tuple[str, str, np.ndarray]]:
        """(unit name, kind, values (T, B, H)) of every saturating nonlinearity in the record;
        kind is "tanh" (saturated: |s| > 0.99), "sigmoid" (s < 0.01 or s > 0.99) or
        "relu_zero" (s == 0)."""
        raise NotImplementedError


class ElmanCell(Cell):
    """s_t = f(x_t W_x + s_{t-1} W_h + b), f element-wise (`activate`). Cache: h, h_prev."""

    n_factors = 1
    simple_recurrence = True
    saturation_kind = ""

    def activate(self, a: np.ndarray, out: np.ndarray) -> None:
        """out = f(a)."""
        raise NotImplementedError

    def derivative(self, h: np.ndarray) -> np.ndarray:
        """f'(a) from h = f(a)."""
        raise NotImplementedError

    def forward_step(self, cache: Cache, t: int, xp: np.ndarray) -> None:
        h, a = cache.seq["h"], cache.work["a"]
        np.matmul(h[t], cache.weights["W_h"], out=a)  # (B, H)
        a += xp
        self.activate(a, out=h[t + 1])

    def backward_factors(self, cache: Cache) -> tuple:
        return (self.derivative(cache.arrays["h"]),)  # undoes h = f(a): da = dh * f'(a)

    def backward_apply(self, fac, wt, dh, dc, da):
        np.multiply(dh, fac[0], out=da)
        dh_prev = np.matmul(da, wt)            # undoes a = ... + h_{t-1} @ W_h
        return da, dh_prev, None

    def tangent(self, fac, W_h, v):
        a = v[:, :self.H] @ W_h                # (n, H) change of h_{t-1} @ W_h
        return a * fac[0]                      # h = f(a): dh = f'(a) da

    def input_tangent(self, fac, a):
        return a * fac[0]                      # h = f(xproj + ...): dh = f'(.) dxproj

    def saturation_units(self, cache):
        return [("h", self.saturation_kind, cache.arrays["h"])]


class TanhCell(ElmanCell):
    """Elman cell with f = tanh."""

    name = "tanh"
    gate_gammas = (1.0,)                       # |tanh'| <= 1
    saturation_kind = "tanh"

    def activate(self, a, out):
        np.tanh(a, out=out)

    def derivative(self, h):
        return 1 - h * h                       # tanh' = 1 - tanh^2


class ReluCell(ElmanCell):
    """Elman cell with f = max(., 0) (with recurrent_init=identity: the IRNN)."""

    name = "relu"
    gate_gammas = (1.0,)                       # |relu'| <= 1
    saturation_kind = "relu_zero"

    def activate(self, a, out):
        np.maximum(a, 0, out=out)

    def derivative(self, h):
        return (h > 0).astype(h.dtype)         # relu' = [a > 0] = [h > 0]


class GRUCell(Cell):
    """GRU with the reset gate applied after the recurrent matmul (one stacked W_h GEMM):

        [r, z] = sigmoid(xproj_rz + h_{t-1} W_h[:, rz])
        hn     = h_{t-1} W_h[:, n] + b_h
        n      = tanh(xproj_n + r * hn)
        h_t    = (1 - z) * n + z * h_{t-1}

    Cache: rz (T, B, 2H), n, hn, h_prev (T, B, H).
    """

    name = "gru"
    gate_names = ("r", "z", "n")
    gate_gammas = (0.25, 0.25, 1.0)            # sigmoid, sigmoid, tanh
    n_factors = 3
    extra_params = ("b_h",)

    def param_shapes(self, input_size: int) -> dict:
        shapes = super().param_shapes(input_size)
        shapes["b_h"] = (self.H,)
        return shapes

    def init_params(self, input_size, cfg, rng, dtype):
        params = super().init_params(input_size, cfg, rng, dtype)
        params["b_h"] = np.zeros(self.H, dtype=dtype)
        return params

    def new_cache(self, T, B, state, params):
        cache = super().new_cache(T, B, state, params)
        dtype, H = params["W_h"].dtype, self.H
        cache.arrays.update(rz=np.empty((T, B, 2 * H), dtype=dtype),
                            n=np.empty((T, B, H), dtype=dtype),
                            hn=np.empty((T, B, H), dtype=dtype))
        cache.weights["b_h"] = params["b_h"]
        return cache

    def forward_step(self, cache, t, xp):
        H = self.H
        h, hr = cache.seq["h"], cache.work["a"]
        rz, n, hn = cache.arrays["rz"][t], cache.arrays["n"][t], cache.arrays["hn"][t]
        np.matmul(h[t], cache.weights["W_h"], out=hr)  # (B, 3H)
        np.add(xp[:, :2 * H], hr[:, :2 * H], out=rz)
        sigmoid(rz, out=rz)
        np.add(hr[:, 2 * H:], cache.weights["b_h"], out=hn)
        np.multiply(rz[:, :H], hn, out=n)
        n += xp[:, 2 * H:]
        np.tanh(n, out=n)
        out = h[t + 1]
        np.subtract(h[t], n, out=out)
        out *= rz[:, H:]
        out += n

    def backward_factors(self, cache) -> tuple:
        """F (N, B, 3, H): da = dh * F per block; Fh: the same with the n block times r (the
        gradient w.r.t. the recurrent product); z: the direct path h_prev -> h."""
        H = self.H
        rz, n, hn, h_prev = (cache.arrays[k] for k in ("rz", "n", "hn", "h_prev"))
        r, z = rz[..., :H], rz[..., H:]
        F = np.empty(n.shape[:-1] + (3, H), dtype=n.dtype)      # (N, B, 3, H)
        # undoes h = n + z * (h_prev - n), then n = tanh(xproj_n + r * hn)
        np.multiply(1 - z, 1 - n * n, out=F[..., 2, :])
        # undoes r = sigmoid(.) through r * hn, and z = sigmoid(.) through z * (h_prev - n)
        np.multiply(F[..., 2, :] * hn, r * (1 - r), out=F[..., 0, :])
        np.multiply(h_prev - n, z * (1 - z), out=F[..., 1, :])
        Fh = F.copy()
        Fh[..., 2, :] *= r                     # the n block sits behind r in the recurrent product
        return F, Fh, z

    def backward_apply(self, fac, wt, dh, dc, da):
        F, Fh, z = fac
        H = self.H
        d3 = dh[..., None, :]
        lead = da.shape[:-1]
        np.multiply(d3, F, out=da.reshape(lead + (3, H)))
        dah = d3 * Fh                          # (.., 3, H) gradient w.r.t. h_prev @ W_h
        dh_prev = np.matmul(dah.reshape(lead + (3 * H,)), wt)
        dh_prev += dh * z                      # undoes h = ... + z * h_prev
        return da, dh_prev, None

    def tangent(self, fac, W_h, v):
        _, Fh, z = fac
        H = self.H
        a = v[:, :H] @ W_h                                        # (n, 3H) change of h_prev @ W_h
        dh = np.einsum("nkh,nkh->nh", a.reshape(-1, 3, H), Fh)    # through r, z and r * hn
        dh += v * z                                               # h = ... + z * h_prev
        return dh

    def input_tangent(self, fac, a):
        F = fac[0]
        # xproj enters r, z and n directly (not behind r, as the recurrent product's n block)
        return np.einsum("nkh,nkh->nh", a.reshape(-1, 3, self.H), F)

    def recurrent_da(self, cache, da):
        H = self.H
        dah = da.copy()
        dah[..., 2 * H:] *= cache.arrays["rz"][..., :H]
        return dah

    def param_grads(self, cache, x2, da_all):
        T, B, GH = da_all.shape
        H = self.H
        da2 = da_all.reshape(T * B, GH)
        hprev = cache.arrays["h_prev"].reshape(T * B, H)
        dah = self.recurrent_da(cache, da_all).reshape(T * B, GH)
        with big_gemm(T * B * GH * max(H, x2.shape[1])):
            W_x, W_h = x2.T @ da2, hprev.T @ dah
        return {"W_x": W_x,
                "W_h": W_h,
                "b": _column_sums(da2),
                "b_h": _column_sums(dah[:, 2 * H:])}  # undoes hn = ... + b_h

    def saturation_units(self, cache):
        H, a = self.H, cache.arrays
        return [("r", "sigmoid", a["rz"][..., :H]), ("z", "sigmoid", a["rz"][..., H:]), ("n", "tanh", a["n"])]


class LSTMCell(Cell):
    """LSTM without peepholes:

        [i, f, g, o] = [sig, sig, tanh, sig](xproj + h_{t-1} W_h)
        c_t = f * c_{t-1} + i * g
        h_t = o * tanh(c_t)

    The forget block of b starts at `forget_bias`. Cache: ifgo (T, B, 4H) activated gates,
    tc = tanh(c_t), c_prev, h_prev (T, B, H).
    """

    name = "lstm"
    gate_names = ("i", "f", "g", "o")
    gate_gammas = (0.25, 0.25, 1.0, 0.25)      # sigmoid, sigmoid, tanh, sigmoid
    n_factors = 4
    has_c = True
    config_keys = ("forget_bias",)

    def init_params(self, input_size, cfg, rng, dtype):
        params = super().init_params(input_size, cfg, rng, dtype)
        params["b"][self.H:2 * self.H] = cfg.forget_bias
        return params

    def new_cache(self, T, B, state, params):
        cache = super().new_cache(T, B, state, params)
        dtype, H = params["W_h"].dtype, self.H
        c = np.empty((T + 1, B, H), dtype=dtype)  # (T+1, B, H)
        c[0] = state[1]
        cache.seq["c"] = c
        cache.arrays.update(c_prev=c[:-1],
                            ifgo=np.empty((T, B, 4 * H), dtype=dtype),
                            tc=np.empty((T, B, H), dtype=dtype))
        cache.work["ig"] = np.empty((B, H), dtype=dtype)
        # all four gates in one tanh: sigmoid(a) = 0.5 + 0.5 tanh(a / 2), tanh for the g block
        half = np.full(4 * H, 0.5, dtype=dtype)
        half[2 * H:3 * H] = 1.0
        shift = np.full(4 * H, 0.5, dtype=dtype)
        shift[2 * H:3 * H] = 0.0
        cache.work.update(scale=half, shift=shift)
        return cache

    def forward_step(self, cache, t, xp):
        H = self.H
        h, c, w = cache.seq["h"], cache.seq["c"], cache.work
        g, tc = cache.arrays["ifgo"][t], cache.arrays["tc"][t]
        np.matmul(h[t], cache.weights["W_h"], out=g)  # (B, 4H)
        g += xp
        # [i, f, g, o] = [sig, sig, tanh, sig]: one scale, one tanh, one affine map
        g *= w["scale"]
        np.tanh(g, out=g)
        g *= w["scale"]
        g += w["shift"]
        ig = w["ig"]
        np.multiply(g[:, :H], g[:, 2 * H:3 * H], out=ig)
        np.multiply(g[:, H:2 * H], c[t], out=c[t + 1])
        c[t + 1] += ig
        np.tanh(c[t + 1], out=tc)
        np.multiply(g[:, 3 * H:], tc, out=h[t + 1])

    def backward_factors(self, cache) -> tuple:
        """A = o (1 - tc^2) (dh -> dc), F (N, B, 3, H) (dc -> da of i, f, g), Fo (dh -> da_o), f."""
        H = self.H
        gates, tc, c_prev = cache.arrays["ifgo"], cache.arrays["tc"], cache.arrays["c_prev"]
        i, f, g, o = (gates[..., k * H:(k + 1) * H] for k in range(4))
        A = o * (1 - tc * tc)                   # undoes h = o * tanh(c) (the c path)
        F = np.empty(tc.shape[:-1] + (3, H), dtype=tc.dtype)     # (N, B, 3, H)
        # undoes c = f * c_prev + i * g and the gate nonlinearities
        np.multiply(g, i * (1 - i), out=F[..., 0, :])
        np.multiply(c_prev, f * (1 - f), out=F[..., 1, :])
        np.multiply(i, 1 - g * g, out=F[..., 2, :])
        Fo = tc * (o * (1 - o))                 # undoes h = o * tanh(c) (the o path)
        return A, F, Fo, f

    def backward_apply(self, fac, wt, dh, dc, da):
        A, F, Fo, f = fac
        H = self.H
        dct = dh * A
        if dc is not None:
            dct += dc
        lead = da.shape[:-1]
        np.multiply(dct[..., None, :], F, out=da.reshape(lead + (4, H))[..., :3, :])
        np.multiply(dh, Fo, out=da[..., 3 * H:])
        dc_prev = dct * f
        dh_prev = np.matmul(da, wt)
        return da, dh_prev, dc_prev

    def tangent(self, fac, W_h, v):
        A, F, Fo, f = fac
        H = self.H
        a4 = (v[:, :H] @ W_h).reshape(-1, 4, H)              # (n, 4, H) change of h_prev @ W_h
        dc = np.einsum("nkh,nkh->nh", a4[:, :3], F)          # c = f * c_prev + i * g through i, f, g
        dc += v[:, H:] * f                                   # ... and through c_prev
        dh = a4[:, 3] * Fo + dc * A                          # h = o * tanh(c) through o and c
        return np.concatenate([dh, dc], axis=1)

    def input_tangent(self, fac, a):
        A, F, Fo, _ = fac
        H = self.H
        a4 = a.reshape(-1, 4, H)                             # (n, 4, H) change of xproj
        dc = np.einsum("nkh,nkh->nh", a4[:, :3], F)          # c = f * c_prev + i * g, c_prev held
        dh = a4[:, 3] * Fo + dc * A                          # h = o * tanh(c) through o and c
        return np.concatenate([dh, dc], axis=1)

    def saturation_units(self, cache):
        H, a = self.H, cache.arrays
        gates = a["ifgo"]
        return [("i", "sigmoid", gates[..., :H]), ("f", "sigmoid", gates[..., H:2 * H]),
                ("g", "tanh", gates[..., 2 * H:3 * H]), ("o", "sigmoid", gates[..., 3 * H:]),
                ("tanh(c)", "tanh", a["tc"])]


# --------------------------------------------------------------------------- the registry

CELLS: dict[str, Callable[[int], Cell]] = {}


def register_cell(name: str, factory: Callable[[int], Cell]) -> None:
    """Make `name` a valid model.cell: factory(hidden_size) -> Cell (a Cell subclass will do).
    The configuration, gradcheck and the CLI read the registry when they need it, so a cell
    registered at run time is accepted everywhere (remove it again with `del CELLS[name]`)."""
    if name in CELLS:
        raise ValueError(f"cell {name!r} is already registered")
    CELLS[name] = factory


register_cell("tanh", TanhCell)
register_cell("relu", ReluCell)
register_cell("gru", GRUCell)
register_cell("lstm", LSTMCell)


def make_cell(name: str, hidden_size: int) -> Cell:
    """A registered cell by name (tanh, relu, gru, lstm, and any added by `register_cell`)."""
    factory = CELLS.get(name)
    if factory is None:
        raise ConfigError(f"model.cell: expected one of {', '.join(CELLS)}, got {name!r}")
    return factory(hidden_size)
