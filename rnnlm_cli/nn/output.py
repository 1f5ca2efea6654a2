"""Output layers: the full softmax and the class-factorised softmax (Mikolov et al. 2011).

Both take the hidden states of all N = T*B scored positions at once and share one interface:

    param_shapes() / init_params(cfg, rng, dtype)
    forward(params, h2 (N, H), y (N,), mask (N,) or None) -> (loss_sum, nll (N,), cache)
    backward(params, cache, scale, grads, dh_out=None) -> dE/dh2 (N, H); parameter gradients
        of scale * loss_sum go into `grads` (a gradients.Gradients); re-entrant: the forward's
        cache is never modified, so backward may run several times on one forward
    logits(params, h2 (N, H)) -> (N, V) scores whose softmax is the model's distribution
        (normalised log-probabilities for the class softmax)

Softmax gradient without a pass over the (N, V) buffer. The forward keeps E = exp(z - max)
(unnormalised) and the row sums s. The logit gradient is r_i E_i - coef_i onehot(y_i) with
r_i = scale mask_i / s_i and coef_i = scale mask_i = r_i s_i, i.e. r_i (E_i - s_i onehot(y_i)):
the backward subtracts s_i at the N target entries, lets every product take the row scale on
its small side (dW = (r h2)^T E', dh = r (E' W^T), db = r^T E'), and puts the N saved entries
back, so the forward's buffer is unchanged afterwards.

Class-factorised softmax. Words are assigned to C classes by `frequency_classes` (Mikolov's
frequency binning: words sorted by count, the cumulative unigram mass cut into C equal parts).
The vocabulary is sorted by count, so each class is a contiguous id range
bounds[c] .. bounds[c+1] and the class's words are a contiguous row block of output.W (V, H).

    P(w | h) = P(c(w) | h) P(w | c(w), h)
    P(c | h)     = softmax(h class_W + class_b)                      over the C classes
    P(w | c, h)  = softmax(h W[block c]^T + b[block c])              over the words of c

Parameters: output.class_W (H, C), output.class_b (C,), output.W (V, H) (absent when tied:
the word part then uses the embedding, the same layout), output.b (V,). Training groups the positions by their
target's class, so the word part is one small GEMM per class present in the batch; classes of
one word need nothing (P(w | c) = 1). The untied word-matrix gradient is returned as a
gradients.ClassFactored (per-class factors of the rows of the classes present).

How products are cut into pieces and how many BLAS threads run them is decided in kernels.py.
"""

from __future__ import annotations

import sys
from collections import OrderedDict

import numpy as np

from rnnlm_cli.errors import ConfigError
from rnnlm_cli.nn.cells import input_init
from rnnlm_cli.nn.gradients import ClassFactored
from rnnlm_cli.nn.kernels import (big_gemm, block_product, cache_row_blocks, matmul_column_pieces,
                                  matmul_inner_pieces)


class BufferPool:
    """Large scratch arrays reused across batches of the same shape.

    A buffer is handed out again only when nothing else refers to it (no forward record, no
    view of it is alive: `sys.getrefcount`), so reuse can never clobber data still in use.
    Keeps `per_shape` buffers for each of the last `shapes` shapes.
    """

    def __init__(self, per_shape: int = 2, shapes: int = 3):
        self.per_shape, self.shapes = per_shape, shapes
        self._bufs: OrderedDict = OrderedDict()

    def get(self, shape, dtype) -> np.ndarray:
        key = (tuple(shape), np.dtype(dtype).str)
        bufs = self._bufs.get(key)
        if bufs is None:
            bufs = self._bufs[key] = []
            while len(self._bufs) > self.shapes:
                self._bufs.popitem(last=False)
        self._bufs.move_to_end(key)
        for i in range(len(bufs)):
            if sys.getrefcount(bufs[i]) == 2:        # the list's reference and the argument's
                return bufs[i]
        buf = np.empty(shape, dtype=dtype)
        if len(bufs) < self.per_shape:
            bufs.append(buf)
        return buf


def _softmax_stats(buf: np.ndarray, target: np.ndarray, bias: np.ndarray | None = None):
    """In place: buf (N, K) logits (plus `bias` (K,) when given) -> E = exp(z - rowmax);
    returns (s (N,), nll (N,)) with s the row sums of E and nll = log s - (z_target - max).

    Block by block of rows that fit in cache (kernels.cache_row_blocks)."""
    N, K = buf.shape
    s = np.empty(N, dtype=buf.dtype)
    zy = np.empty(N, dtype=buf.dtype)                    # target logit - max
    ones = np.ones(K, dtype=buf.dtype)
    blocks = cache_row_blocks(N, K * buf.itemsize)
    index = np.arange(max((hi - lo for lo, hi in blocks), default=0))
    for lo, hi in blocks:
        b = buf[lo:hi]
        if bias is not None:
            b += bias
        b -= b.max(axis=1)[:, None]
        zy[lo:hi] = b[index[:hi - lo], target[lo:hi]]
        np.exp(b, out=b)
        np.matmul(b, ones, out=s[lo:hi])                 # row sums (a GEMV: 2x a sum)
    nll = np.log(s)
    nll -= zy
    return s, nll


def _loss(nll: np.ndarray, mask) -> float:
    return float(nll.sum(dtype=np.float64) if mask is None else np.dot(nll, mask))


def _row_coefficients(s, mask, scale, dtype):
    """r = scale mask / s and coef = scale mask, both (N,)."""
    coef = np.full(s.shape[0], scale, dtype=dtype)
    if mask is not None:
        coef *= mask
    return coef / s, coef


def scatter_rows(target: np.ndarray, rows: np.ndarray, values: np.ndarray) -> None:
    """target[rows[i]] += values[i] with repeated rows summed (sort + reduceat; faster than np.add.at)."""
    uniq, summed = sum_rows(rows, values)
    target[uniq] += summed


def sum_rows(rows: np.ndarray, values: np.ndarray):
    """(unique rows (n,), values summed per row (n, ...)), rows sorted."""
    order = np.argsort(rows, kind="stable")
    srt = rows[order]
    starts = np.flatnonzero(np.concatenate(([True], srt[1:] != srt[:-1])))
    return srt[starts], np.add.reduceat(values[order], starts, axis=0)


# --------------------------------------------------------------------------- full softmax

class FullSoftmax:
    """Full softmax over V words: logits = h2 @ W + b, over all N positions at once.

    Memory: one (N, V) buffer per forward (from a pool: reused across batches once the forward
    that used it is gone); it holds the logits, then E = exp(logits - max).
    """

    kind = "full"

    def __init__(self, hidden_size: int, vocab_size: int, tied: bool):
        self.H, self.V, self.tied = hidden_size, vocab_size, tied
        self.param_names = ("output.b",) if tied else ("output.W", "output.b")
        self.pool = BufferPool()

    def param_shapes(self) -> dict:
        shapes = {"output.b": (self.V,)}
        if not self.tied:
            shapes["output.W"] = (self.H, self.V)
        return shapes

    def init_params(self, cfg, rng: np.random.Generator, dtype) -> dict:
        params = {"output.b": np.zeros(self.V, dtype=dtype)}
        if not self.tied:
            params["output.W"] = input_init(rng, self.H, self.V, (self.H, self.V), cfg.init, cfg.init_scale, dtype)
        return params

    def weight(self, params: dict) -> np.ndarray:
        """The (H, V) output matrix (a transposed view of the embedding when tied)."""
        return params["embedding"].T if self.tied else params["output.W"]

    def logits(self, params: dict, h2: np.ndarray, out: np.ndarray | None = None, bias: bool = True) -> np.ndarray:
        """(N, H) -> (N, V) unnormalised log-probabilities (without the bias when bias=False:
        the forward adds it block by block in _softmax_stats)."""
        with big_gemm(h2.shape[0] * self.H * self.V):
            z = np.matmul(h2, self.weight(params), out=out)
        if bias:
            z += params["output.b"]
        return z

    def forward(self, params: dict, h2: np.ndarray, y: np.ndarray, mask: np.ndarray | None):
        """h2 (N, H), y (N,), mask (N,) or None -> (loss_sum, nll (N,), cache dict)."""
        N = h2.shape[0]
        buf = self.logits(params, h2, out=self.pool.get((N, self.V), h2.dtype), bias=False)   # (N, V)
        s, nll = _softmax_stats(buf, y, params["output.b"])                       # buf = E now
        return _loss(nll, mask), nll, {"buf": buf, "s": s, "y": y, "mask": mask, "h2": h2}

    def backward(self, params: dict, cache: dict, scale: float, grads, dh_out: np.ndarray | None = None):
        """Accumulate output-parameter gradients into `grads`; return dE/dh2 (N, H).

        With tied weights the output-matrix gradient lands in grads["embedding"] (V, E).
        """
        E, y, h2, s = cache["buf"], cache["y"], cache["h2"], cache["s"]
        dtype = E.dtype
        r, _ = _row_coefficients(s, cache["mask"], scale, dtype)
        N, H = h2.shape
        # [r h2, r] (N, H + 1): untied, one product gives dW and db (db = r^T E' is its last row,
        # which saves a pass over the (N, V) buffer); tied, dW^T would be a strided view, so db
        # is a product of its own
        hr = np.empty((N, H if self.tied else H + 1), dtype=dtype)
        np.multiply(h2, r[:, None], out=hr[:, :H])
        W = self.weight(params)
        rows = np.arange(N)
        saved = E[rows, y]                                    # (N,) a copy
        E[rows, y] -= s                                       # E' = E - s onehot(y): r E' = dlogits
        try:
            # undoes logits = h2 @ W + b
            with big_gemm(E.size * self.H):
                if self.tied:
                    grads["output.b"] = r @ E                 # (V,)
                    grads["embedding"] = E.T @ hr             # (V, E)
                else:
                    hr[:, H] = r
                    both = hr.T @ E                           # (H + 1, V)
                    grads["output.W"], grads["output.b"] = both[:H], both[H]
                dh = np.matmul(E, W.T, out=dh_out)            # (N, H)
        finally:
            E[rows, y] = saved                                # the forward's buffer as it was
        dh *= r[:, None]
        return dh


# --------------------------------------------------------------------------- class softmax

def frequency_classes(counts, num_classes: int) -> np.ndarray:
    """Mikolov's frequency binning -> class boundaries (C'+1,) over word ids 0..V-1.

    Words in id order (the vocabulary is sorted by count, descending) accumulate their unigram
    mass; a word goes to the current class a, and a moves on to a+1 once the mass passed
    (a+1)/C (rnnlm toolkit 0.3e). So a frequent word may have a class of its own and the rare
    tail shares one class of many words. Classes are contiguous id ranges; an empty class
    cannot occur (C' <= C classes are returned, C' < C only for tiny vocabularies).
    """
    counts = np.asarray(counts, dtype=np.float64)
    V = len(counts)
    C = max(1, min(int(num_classes), V))
    total = counts.sum()
    if total <= 0:
        return even_classes(V, C)
    cum = np.minimum(np.cumsum(counts) / total, 1.0)
    cls = np.empty(V, dtype=np.int64)
    a = 0
    for i in range(V):
        cls[i] = a
        if cum[i] > (a + 1) / C and a < C - 1:
            a += 1
    return np.concatenate(([0], np.flatnonzero(np.diff(cls)) + 1, [V])).astype(np.int64)


def even_classes(vocab_size: int, num_classes: int) -> np.ndarray:
    """C contiguous classes of (nearly) equal size: the fallback without word counts."""
    C = max(1, min(int(num_classes), vocab_size))
    return np.round(np.linspace(0, vocab_size, C + 1)).astype(np.int64)


def default_num_classes(cfg, vocab_size: int) -> int:
    return cfg.num_classes if cfg.num_classes > 0 else max(1, int(round(np.sqrt(vocab_size))))


class ClassSoftmax:
    """Class-factorised softmax (see the module docstring). `bounds` (C+1,): class c holds the
    word ids bounds[c] .. bounds[c+1]-1."""

    kind = "class"

    def __init__(self, hidden_size: int, vocab_size: int, tied: bool, bounds):
        bounds = np.asarray(bounds, dtype=np.int64)
        if (bounds.ndim != 1 or len(bounds) < 2 or bounds[0] != 0 or bounds[-1] != vocab_size
                or np.any(np.diff(bounds) <= 0)):
            raise ConfigError(f"class boundaries must rise strictly from 0 to the vocabulary size {vocab_size}")
        self.H, self.V, self.tied = hidden_size, vocab_size, tied
        self.bounds = bounds
        self.C = len(bounds) - 1
        self.size = np.diff(bounds)                                   # (C,)
        self.class_of = np.repeat(np.arange(self.C), self.size)       # (V,)
        self.local = np.arange(vocab_size) - bounds[self.class_of]    # (V,) index within the class
        self.param_names = ("output.class_W", "output.class_b") + (() if tied else ("output.W",)) + ("output.b",)

    def param_shapes(self) -> dict:
        shapes = {"output.class_W": (self.H, self.C), "output.class_b": (self.C,), "output.b": (self.V,)}
        if not self.tied:
            shapes["output.W"] = (self.V, self.H)      # word-major, like the embedding (see weight)
        return shapes

    def init_params(self, cfg, rng: np.random.Generator, dtype) -> dict:
        params = {"output.class_W": input_init(rng, self.H, self.C, (self.H, self.C), cfg.init, cfg.init_scale, dtype),
                  "output.class_b": np.zeros(self.C, dtype=dtype)}
        if not self.tied:
            params["output.W"] = input_init(rng, self.H, self.V, (self.V, self.H), cfg.init, cfg.init_scale, dtype)
        params["output.b"] = np.zeros(self.V, dtype=dtype)
        return params

    def weight(self, params: dict) -> np.ndarray:
        """The (H, V) word matrix as a view. It is stored (V, H), like the embedding it is with
        tie_weights, so a class's words are a contiguous row block: their gradient is written by
        one GEMM per class and SGD updates contiguous rows (~20% faster than an (H, V) layout's
        strided column blocks)."""
        return params["embedding"].T if self.tied else params["output.W"].T

    # ------------------------------------------------------------------ full distribution
    def logits(self, params: dict, h2: np.ndarray) -> np.ndarray:
        """(N, H) -> (N, V) log P(w | h) for every word (normalised; generation, tests)."""
        zc = h2 @ params["output.class_W"] + params["output.class_b"]     # (N, C)
        zc -= zc.max(axis=1, keepdims=True)
        zc -= np.log(np.exp(zc).sum(axis=1, keepdims=True))                # log P(c | h)
        z = h2 @ self.weight(params) + params["output.b"]                  # (N, V)
        starts = self.bounds[:-1]
        m = np.maximum.reduceat(z, starts, axis=1)                         # (N, C) per-class max
        z -= m[:, self.class_of]
        lse = np.log(np.add.reduceat(np.exp(z), starts, axis=1))           # (N, C)
        z += (zc - lse)[:, self.class_of]
        return z

    # ------------------------------------------------------------------ training / scoring
    def forward(self, params: dict, h2: np.ndarray, y: np.ndarray, mask: np.ndarray | None):
        """h2 (N, H), y (N,), mask (N,) or None -> (loss_sum, nll (N,), cache dict)."""
        dtype = h2.dtype
        y = np.asarray(y)
        cls = self.class_of[y]                                             # (N,)
        # class part: softmax over the C classes
        Ec = h2 @ params["output.class_W"]                                 # (N, C)
        Ec += params["output.class_b"]
        sc, nll = _softmax_stats(Ec, cls)
        # word part: the positions whose class has 2+ words, grouped by class (a stable sort)
        order = np.argsort(cls, kind="stable")
        order = order[self.size[cls[order]] > 1]                           # (R,) rows that need it
        cs = cls[order]
        n = self.size[cs]                                                  # (R,) words in each row's class
        R = len(order)
        first = np.flatnonzero(np.concatenate(([True], cs[1:] != cs[:-1]))) if R else np.zeros(0, np.int64)
        last = np.append(first[1:], R)
        row_off = np.concatenate(([0], np.cumsum(n)[:-1])).astype(np.int64)  # (R,) row starts in Z
        L = int(n.sum())
        # Z (L,): row r holds the n[r] logits of its class; a group of rows is one GEMM output
        Z = np.empty(L, dtype=dtype)
        hs = h2[order]                                                     # (R, H)
        W, bias = self.weight(params), params["output.b"]
        groups = []
        for a, b, c, off in zip(first.tolist(), last.tolist(), cs[first].tolist(), row_off[first].tolist()):
            lo, k = int(self.bounds[c]), int(self.size[c])
            block = Z[off:off + (b - a) * k].reshape(b - a, k)
            matmul_column_pieces(hs[a:b], W[:, lo:lo + k], out=block)      # hs @ W[:, block]
            block += bias[lo:lo + k]
            groups.append((lo, k, a, b, off))
        # row-wise log-softmax over the ragged rows
        tpos = row_off + self.local[y[order]]                              # (R,) target entries
        nll_w = np.zeros(0, dtype=dtype)
        sw = np.zeros(0, dtype=dtype)
        if R:
            m = np.maximum.reduceat(Z, row_off)
            Z -= np.repeat(m, n)
            zy = Z[tpos]
            np.exp(Z, out=Z)
            sw = np.add.reduceat(Z, row_off)
            nll_w = np.log(sw)
            nll_w -= zy
            nll[order] += nll_w
        cache = {"h2": h2, "cls": cls, "mask": mask, "Ec": Ec, "sc": sc, "order": order, "n": n, "hs": hs,
                 "groups": groups, "Z": Z, "sw": sw, "tpos": tpos}
        return _loss(nll, mask), nll, cache

    def backward(self, params: dict, cache: dict, scale: float, grads, dh_out: np.ndarray | None = None):
        """Accumulate output-parameter gradients into `grads`; return dE/dh2 (N, H)."""
        h2, mask, order = cache["h2"], cache["mask"], cache["order"]
        N, dtype = h2.shape[0], h2.dtype
        # class part: dzc = r E - coef onehot(class)   (undoes zc = h2 class_W + class_b)
        r, coef = _row_coefficients(cache["sc"], mask, scale, dtype)
        dzc = cache["Ec"] * r[:, None]                                     # (N, C)
        dzc[np.arange(N), cache["cls"]] -= coef
        grads["output.class_W"] = h2.T @ dzc
        grads["output.class_b"] = np.ones(N, dtype=dtype) @ dzc
        dh = np.matmul(dzc, params["output.class_W"].T, out=dh_out)        # (N, H)
        # word part: dZ = r E - coef onehot(word within class), row by row
        rw, cw = _row_coefficients(cache["sw"], None if mask is None else mask[order], scale, dtype)
        dZ = cache["Z"] * np.repeat(rw, cache["n"])                        # (L,)
        dZ[cache["tpos"]] -= cw
        db = np.zeros(self.V, dtype=dtype)                                 # 0 for one-word classes
        hs, W = cache["hs"], self.weight(params)
        dhs = np.empty_like(hs)                                            # (R, H)
        # each class's gradient block is a contiguous row range of the (V, H) matrix, d^T hs:
        # with tie_weights written straight into the dense embedding gradient (the input side
        # adds its rows to it); untied kept as factors (gradients.ClassFactored): clipping takes
        # its norm from r x r Gram matrices and plain SGD applies each block, so the (M, H) rows
        # are only formed for an optimizer that needs them
        target = np.zeros((self.V, self.H), dtype=dtype) if self.tied else None
        blocks = []
        part = np.empty((max((b - a for _, _, a, b, _ in cache["groups"]), default=0), self.H), dtype=dtype)
        for lo, k, a, b, off in cache["groups"]:
            d = dZ[off:off + (b - a) * k].reshape(b - a, k)                # (rows, k) one class's block
            d.sum(axis=0, out=db[lo:lo + k])
            if self.tied:
                block_product(d, hs[a:b], target[lo:lo + k])               # undoes hs @ W[:, block]
            else:
                blocks.append((lo, d, hs[a:b]))
            matmul_inner_pieces(d, W[:, lo:lo + k].T, out=dhs[a:b], scratch=part)   # d W[:, block]^T
        grads["output.b"] = db
        if self.tied:
            grads["embedding"] = target
        else:
            grads["output.W"] = ClassFactored((self.V, self.H), dtype, blocks)
        dh[order] += dhs
        return dh


def make_output(cfg, hidden_size: int, vocab_size: int, class_bounds=None, class_counts=None):
    """The output layer named by `cfg.softmax` (a ModelConfig).

    softmax=class: the classes are `class_bounds` when given (e.g. from a checkpoint), else
    Mikolov's frequency binning of `class_counts` (the vocabulary's training counts), else C
    equal id ranges; C = model.num_classes, or round(sqrt(V)) when that is 0.
    """
    if cfg.softmax == "full":
        return FullSoftmax(hidden_size, vocab_size, cfg.tie_weights)
    if cfg.softmax == "class":
        if class_bounds is None:
            C = default_num_classes(cfg, vocab_size)
            if class_counts is not None:
                if len(class_counts) != vocab_size:
                    raise ConfigError(f"class counts cover {len(class_counts)} words, the vocabulary has {vocab_size}")
                class_bounds = frequency_classes(class_counts, C)
            else:
                class_bounds = even_classes(vocab_size, C)
        return ClassSoftmax(hidden_size, vocab_size, cfg.tie_weights, class_bounds)
    raise ConfigError(f"model.softmax: '{cfg.softmax}' is not available in this build")
