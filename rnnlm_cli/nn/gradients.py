"""Gradient types: what the backward returns for each parameter.

Most of an embedding's gradient is zero (only the rows of the batch's tokens are not), and so
is most of the class-factorised output layer's word matrix (only the rows of the classes the
batch's targets fall in). Each parameter's gradient is one of

    np.ndarray      dense, the parameter's shape
    RowSparse       zero outside `rows`: the untied embedding (the batch's token rows)
    ClassFactored   the class softmax's untied word matrix, kept as per-class factors: the
                    block of rows start..start+k is d^T h with d (r, k), h (r, H), over the r
                    positions whose target is in that class. Its norm comes from r x r Gram
                    matrices and plain SGD applies each block straight to the parameter, so
                    the (M, H) rows are never formed unless someone asks for them.

The two compact types carry a pending `scale` (norm clipping sets it instead of rescaling every
value) and answer, like a dense array does through the functions below:

    sq_norm(g)            sum of squares of every element (a float)
    scale_(g, c)          g *= c, in place
    clip_(g, t)           every element clamped to [-t, t]; returns the clipped gradient (a
                          ClassFactored becomes RowSparse: clamping needs the formed rows)
    nonfinite(g)          whether any element is NaN or infinite
    dense(g)              the dense array (allocates for the compact types; ask only when needed)
    g.sgd_apply(p, lr)    p -= lr * g on the rows it holds (compact types only)

`Gradients` maps parameter names to these; reading an entry returns the stored gradient as it
is, never a densified copy.
"""

from __future__ import annotations

import math

import numpy as np

from rnnlm_cli.nn.kernels import block_product, loop_threads, subtract_block_product, update_scratch


def array_sq_norm(a: np.ndarray) -> float:
    """Sum of squares of a dense array, as a Python float (a float32 sum that overflows while
    every element is finite is taken again after dividing by the largest element)."""
    flat = a.reshape(-1)
    with np.errstate(over="ignore", invalid="ignore"):
        sq = float(np.dot(flat, flat))
    if not math.isfinite(sq) and np.isfinite(flat).all():
        big = float(np.abs(flat).max())
        scaled = flat.astype(np.float64) / big
        sq = big * big * float(np.dot(scaled, scaled))
    return sq


def array_nonfinite(a: np.ndarray) -> bool:
    with np.errstate(over="ignore", invalid="ignore"):
        quick = np.isfinite(a.sum())     # one fast pass; confirmed element-wise if it fails
    return bool(not quick and not np.isfinite(a).all())


class CompactGradient:
    """A gradient held in less memory than its parameter (RowSparse, ClassFactored)."""

    shape: tuple
    dtype: np.dtype
    scale: float

    def sq_norm(self) -> float:
        raise NotImplementedError

    def scale_(self, c: float) -> None:
        self.scale *= c                  # applied when the values are used

    def clip_(self, threshold: float) -> CompactGradient:
        raise NotImplementedError

    def nonfinite(self) -> bool:
        raise NotImplementedError

    def dense(self) -> np.ndarray:
        raise NotImplementedError

    def sgd_apply(self, p: np.ndarray, lr: float) -> None:
        raise NotImplementedError


class RowSparse(CompactGradient):
    """A (V, ...) gradient that is zero outside `rows` (n,) (unique, ascending); its rows are
    scale * values (n, ...)."""

    def __init__(self, shape, rows: np.ndarray, values: np.ndarray, scale: float = 1.0):
        self.shape, self.dtype = tuple(shape), values.dtype
        self.rows, self.values, self.scale = rows, values, scale

    def _fold(self) -> np.ndarray:
        """Apply the pending scale to the values; returns them."""
        if self.scale != 1.0:
            self.values *= self.dtype.type(self.scale)
            self.scale = 1.0
        return self.values

    def sq_norm(self) -> float:
        return array_sq_norm(self.values) * (self.scale * self.scale)

    def clip_(self, threshold: float) -> RowSparse:
        np.clip(self._fold(), -threshold, threshold, out=self.values)
        return self

    def nonfinite(self) -> bool:
        return array_nonfinite(self.values)

    def dense(self) -> np.ndarray:
        out = np.zeros(self.shape, dtype=self.dtype)
        out[self.rows] = self._fold()
        return out

    def sgd_apply(self, p: np.ndarray, lr: float) -> None:
        p[self.rows] -= self.values * p.dtype.type(lr * self.scale)   # rows are unique: no repeats to sum


class ClassFactored(CompactGradient):
    """The class softmax's (V, H) word-matrix gradient as blocks (start, d (r, k), h (r, H)):
    rows start..start+k are scale * d^T h, every other row is zero. Blocks ascend by start
    and do not overlap."""

    def __init__(self, shape, dtype, blocks: list, scale: float = 1.0):
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)
        self.blocks, self.scale = blocks, scale

    def rows(self) -> np.ndarray:
        """(M,) the rows the blocks cover, ascending."""
        if not self.blocks:
            return np.zeros(0, dtype=np.int64)
        return np.concatenate([np.arange(start, start + d.shape[1]) for start, d, _ in self.blocks])

    def _formed(self) -> np.ndarray:
        """(M, H) the unscaled rows, block after block."""
        out = np.empty((sum(d.shape[1] for _, d, _ in self.blocks),) + self.shape[1:], dtype=self.dtype)
        off = 0
        for _, d, h in self.blocks:
            k = d.shape[1]
            block_product(d, h, out[off:off + k])
            off += k
        return out

    def sq_norm(self) -> float:
        """||d^T h||^2 of each block is the sum of the element-wise product of the r x r Gram
        matrices d d^T and h h^T (in the gradient's dtype; a block whose float32 sum overflows
        is taken again in float64)."""
        total = 0.0
        with np.errstate(over="ignore", invalid="ignore"), loop_threads():      # small products
            for _, d, h in self.blocks:
                sq = float(np.vdot(d @ d.T, h @ h.T))
                if not math.isfinite(sq):    # float32 overflowed (e.g. huge ReLU states): again in float64
                    d64, h64 = d.astype(np.float64), h.astype(np.float64)
                    sq = float(np.vdot(d64 @ d64.T, h64 @ h64.T))
                total += sq
        return total * self.scale * self.scale

    def clip_(self, threshold: float) -> RowSparse:
        rows = RowSparse(self.shape, self.rows(), self._formed(), self.scale)
        return rows.clip_(threshold)

    def nonfinite(self) -> bool:
        return array_nonfinite(self._formed())

    def dense(self) -> np.ndarray:
        out = np.zeros(self.shape, dtype=self.dtype)
        for start, d, h in self.blocks:                  # each block straight into its rows
            k = d.shape[1]
            block_product(d, h, out[start:start + k])
            if self.scale != 1.0:
                out[start:start + k] *= self.dtype.type(self.scale)
        return out

    def sgd_apply(self, p: np.ndarray, lr: float) -> None:
        """p[rows] -= d^T (f h) block by block with f = lr * scale, never forming the gradient."""
        f = p.dtype.type(lr * self.scale)
        scratch = update_scratch(max((d.shape[1] for _, d, _ in self.blocks), default=0), p.shape[1], p.dtype)
        with loop_threads():                                               # small products
            for start, d, h in self.blocks:
                subtract_block_product(p[start:start + d.shape[1]], d, h * f, scratch)


# --------------------------------------------------------------------------- any gradient

def sq_norm(g) -> float:
    return g.sq_norm() if isinstance(g, CompactGradient) else array_sq_norm(g)


def scale_(g, c: float) -> None:
    if isinstance(g, CompactGradient):
        g.scale_(c)
    else:
        g *= g.dtype.type(c)


def clip_(g, threshold: float):
    if isinstance(g, CompactGradient):
        return g.clip_(threshold)
    return np.clip(g, -threshold, threshold, out=g)


def nonfinite(g) -> bool:
    return g.nonfinite() if isinstance(g, CompactGradient) else array_nonfinite(g)


def dense(g) -> np.ndarray:
    return g.dense() if isinstance(g, CompactGradient) else g


class Gradients(dict):
    """name -> gradient (a dense array, RowSparse or ClassFactored; see the module docstring).
    Reading an entry gives the stored gradient; `dense(name)` asks for a dense array."""

    def dense(self, name) -> np.ndarray:
        """The gradient of `name` as a dense array (the stored array itself when it is dense)."""
        return dense(self[name])

    def as_dense(self) -> dict:
        """A plain dict of dense arrays (dense entries are shared, compact ones formed)."""
        return {name: dense(g) for name, g in self.items()}

    def norms(self) -> dict:
        """name -> L2 norm of that parameter's gradient, without forming anything dense."""
        return {name: math.sqrt(sq_norm(g)) for name, g in self.items()}

    def __repr__(self):
        return "Gradients({" + ", ".join(f"{k!r}: {type(g).__name__}" for k, g in self.items()) + "})"
