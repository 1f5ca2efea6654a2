"""Gradients: a dict-like mapping name -> array, where some entries are held compactly.

Most of an embedding's gradient is zero (only the rows of the batch's tokens are not), and so
is most of the class-factorised output layer's word matrix (only the rows of the classes the
batch's targets fall in). `Gradients` keeps such an entry as a `Compact`:

    index   (n,) unique positions along `axis` of the parameter; everything else is zero
    values  the gradient at those positions, laid out like the parameter with `axis` cut
            down to n (rows of a (V, E) embedding: (n, E); columns of an (H, V) matrix would be (H, n))
    runs    optional [(start, stop, offset)]: `index` as contiguous ranges; the block of a run
            is values[offset:offset + stop - start] along `axis`
    factors optional [(start, k, offset, d, h)]: the values as products not yet formed, the
            block of rows start..start+k (at values[offset:offset + k]) being d^T h with d
            (r, k) and h (r, H) -- the class softmax's word matrix, whose blocks are outer-
            product sums over a few positions each. Its norm comes from the r x r Gram matrices
            and plain SGD applies each block straight to the parameter, so the (M, H) values
            are never written unless someone reads them (`values` forms them then).
    scale   a factor the values still have to be multiplied by (norm clipping sets it instead
            of rescaling every value; `fold()` applies it)

Reading `grads[name]` gives the dense array (built once, on first access; the compact form is
then dropped, so editing the dense array in place is safe). Code that knows about the compact
form asks `grads.compact(name)` first: clipping measures and scales only the stored values and
plain SGD updates only those rows (optim.py). Everything else sees an ordinary mapping of dense
arrays, exactly as before.
"""

from __future__ import annotations

import math
from collections.abc import MutableMapping

import numpy as np

from rnnlm_cli.nn.kernels import loop_threads


def block_product(d: np.ndarray, h: np.ndarray, out: np.ndarray) -> np.ndarray:
    """out = d^T h for d (r, k), h (r, H); one row is an outer product (numpy's matmul is ~10x
    slower with an inner dimension of 1)."""
    if d.shape[0] == 1:
        return np.multiply(d[0][:, None], h[0][None, :], out=out)
    return np.matmul(d.T, h, out=out)


class Compact:
    """A gradient that is zero outside `index` along `axis` (see the module docstring)."""

    __slots__ = ("shape", "dtype", "axis", "index", "_values", "runs", "scale", "factors")

    def __init__(self, shape, dtype, axis: int, index: np.ndarray, values: np.ndarray | None, runs=None,
                 factors=None):
        if values is None and (factors is None or axis != 0):
            raise ValueError("a Compact needs values, or factors along axis 0")
        self.shape, self.dtype, self.axis = tuple(shape), np.dtype(dtype), axis
        self.index, self._values, self.runs, self.factors = index, values, runs, factors
        self.scale = 1.0

    @property
    def values(self) -> np.ndarray:
        if self._values is None:
            self._values = self._form()
            self.factors = None
        return self._values

    @values.setter
    def values(self, array: np.ndarray) -> None:
        self._values, self.factors = array, None

    @property
    def factored(self) -> bool:
        """Whether the values are still held as factors (not yet formed)."""
        return self._values is None

    def _form(self) -> np.ndarray:
        size = sum(k for _, k, _, _, _ in self.factors)
        out = np.empty((size,) + self.shape[1:], dtype=self.dtype)
        for _, k, off, d, h in self.factors:
            block_product(d, h, out[off:off + k])
        return out

    def factored_sq_norm(self) -> float:
        """Sum of squares of the (unscaled) values from the factors: ||d^T h||^2 is the sum of
        the element-wise product of the Gram matrices d d^T and h h^T (in the gradient's dtype;
        a block whose float32 sum overflows is taken again in float64)."""
        total = 0.0
        with np.errstate(over="ignore", invalid="ignore"), loop_threads():
            for _, _, _, d, h in self.factors:
                sq = float(np.vdot(d @ d.T, h @ h.T))
                if not math.isfinite(sq):    # float32 overflowed (e.g. huge ReLU states): again in float64
                    d64, h64 = d.astype(np.float64), h.astype(np.float64)
                    sq = float(np.vdot(d64 @ d64.T, h64 @ h64.T))
                total += sq
        return total

    def fold(self) -> np.ndarray:
        """Apply the pending scale to the values; returns them."""
        if self.scale != 1.0:
            self.values *= self.values.dtype.type(self.scale)
            self.scale = 1.0
        return self.values

    def at(self, sel) -> tuple:
        """An index tuple selecting `sel` (a slice or an index array) along `axis`."""
        return (slice(None),) * self.axis + (sel,)

    def dense(self) -> np.ndarray:
        out = np.zeros(self.shape, dtype=self.dtype)
        if self.factored:                   # each block straight into its rows (no (M, H) copy)
            for start, k, _, d, h in self.factors:
                block_product(d, h, out[start:start + k])
                if self.scale != 1.0:
                    out[start:start + k] *= self.dtype.type(self.scale)
            return out
        self.fold()
        if self.runs is not None:
            for start, stop, off in self.runs:
                out[self.at(slice(start, stop))] = self.values[self.at(slice(off, off + stop - start))]
        else:
            out[self.at(self.index)] = self.values
        return out


class Gradients(MutableMapping):
    """name -> gradient; entries may be `Compact` until read (see the module docstring)."""

    def __init__(self, items=None):
        self._items: dict = dict(items or {})

    def __getitem__(self, name):
        g = self._items[name]
        if isinstance(g, Compact):
            g = self._items[name] = g.dense()
        return g

    def __setitem__(self, name, value):
        self._items[name] = value

    def __delitem__(self, name):
        del self._items[name]

    def __iter__(self):
        return iter(self._items)

    def __len__(self):
        return len(self._items)

    def compact(self, name) -> Compact | None:
        """The compact form of `name` while it has not been read densely, else None."""
        g = self._items.get(name)
        return g if isinstance(g, Compact) else None

    def set_compact(self, name, compact: Compact) -> None:
        self._items[name] = compact

    def raw_item(self, name):
        """The stored entry of `name`: a dense array or a Compact."""
        return self._items[name]

    def raw(self):
        """(name, dense array or Compact) pairs without building anything dense."""
        return self._items.items()

    def __repr__(self):
        kinds = {k: "compact" if isinstance(v, Compact) else "dense" for k, v in self._items.items()}
        return f"Gradients({kinds})"
