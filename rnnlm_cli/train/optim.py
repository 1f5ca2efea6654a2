"""Gradient clipping and optimizers.

Clipping works in place on a dict of gradient arrays and returns the norms, so training can
log the pre-clip norm (the quantity that explodes) without a second pass:

    pre, post = clip_gradients(grads, "norm", 5.0)   # Pascanu et al. 2013: global L2 rescale
    pre, post = clip_gradients(grads, "value", 1.0)  # element-wise to [-1, 1]
    pre, post = clip_gradients(grads, "none", 0.0)   # only measures

A non-finite gradient is never rescaled (that would spread NaN to every parameter); check
`find_nonfinite(grads)` and apply the `train.nonfinite` policy.

Compact gradients. `grads` may be a plain dict of arrays or a `grads.Gradients`, whose entries
can be compact (zero outside some rows: the embedding's token rows, the class softmax's word
rows). Clipping reads and scales only the stored values, and SGD without momentum or weight
decay updates only those rows (the "sparse update"); every other optimizer reads the dense
gradient, which is exactly the same numbers.
"""

from __future__ import annotations

import math

import numpy as np

from rnnlm_cli.nn.kernels import loop_threads
from rnnlm_cli.errors import CheckpointError
from rnnlm_cli.nn.gradients import Compact, block_product

# rows of a factored block applied at a time: the (rows, H) product stays in cache between
# being written and subtracted (~1.7x faster than whole classes of up to 1,600 words)
UPDATE_ROWS = 256
CLIP_MODES = ("norm", "value", "none")


# --------------------------------------------------------------------------- clipping

def _entries(grads) -> list:
    """Every stored gradient: dense arrays, and Compact entries of a grads.Gradients."""
    raw = getattr(grads, "raw", None)
    return list(grads.values()) if raw is None else [g for _, g in raw()]


def _arrays(grads) -> list[np.ndarray]:
    """Every stored gradient array, pending compact scales applied."""
    return [g.fold() if isinstance(g, Compact) else g for g in _entries(grads)]


def global_norm(grads: dict) -> float:
    """sqrt(sum of squares over every element of every array), as a Python float."""
    total = 0.0
    for g in _entries(grads):
        factor = 1.0
        if isinstance(g, Compact):
            if g.factored:
                total += g.factored_sq_norm() * g.scale * g.scale
                continue
            g, factor = g.values, g.scale * g.scale
        flat = g.reshape(-1)
        with np.errstate(over="ignore", invalid="ignore"):
            sq = float(np.dot(flat, flat))
        if not math.isfinite(sq) and np.isfinite(flat).all():
            # finite but the float32 squares overflow: rescale by the largest element
            big = float(np.abs(flat).max())
            scaled = flat.astype(np.float64) / big
            sq = big * big * float(np.dot(scaled, scaled))
        total += sq * factor
    return math.sqrt(total)


def clip_gradients(grads: dict, mode: str, threshold: float) -> tuple[float, float]:
    """Clip `grads` in place; returns (pre_clip_norm, post_clip_norm), both global L2 norms.

    norm: if the global norm exceeds `threshold`, scale every array by threshold / norm
    (the direction is kept). value: clamp every element to [-threshold, threshold].
    none: leave the gradients alone.
    """
    if mode not in CLIP_MODES:
        raise ValueError(f"unknown clip mode {mode!r}; expected one of {', '.join(CLIP_MODES)}")
    pre = global_norm(grads)
    if mode == "none" or not math.isfinite(pre):
        return pre, pre
    if mode == "norm":
        if pre <= threshold:
            return pre, pre
        factor = threshold / pre
        for g in _entries(grads):
            if isinstance(g, Compact):
                g.scale *= factor            # applied when the values are used
            else:
                g *= g.dtype.type(factor)
        return pre, pre * factor
    for g in _arrays(grads):
        np.clip(g, -threshold, threshold, out=g)
    return pre, global_norm(grads)


def find_nonfinite(grads: dict) -> str | None:
    """Name of the first array holding a NaN or infinity, else None."""
    raw = getattr(grads, "raw", None)
    for name, g in (raw() if raw is not None else grads.items()):
        g = g.values if isinstance(g, Compact) else g
        with np.errstate(over="ignore", invalid="ignore"):
            quick = np.isfinite(g.sum())     # one fast pass; confirmed element-wise if it fails
        if not quick and not np.isfinite(g).all():
            return name
    return None


# --------------------------------------------------------------------------- optimizers

class Optimizer:
    """Updates parameters in place from gradients; its state is a dict of named arrays.

    State array names are `<slot>/<param>` (e.g. `m/cell.W_h`), saved as `optim/<slot>/<param>` in
    checkpoints; `t` counts the updates taken. Weight decay adds `weight_decay * p` to the gradient.
    """

    slots: tuple[str, ...] = ()

    def __init__(self, params: dict[str, np.ndarray], weight_decay: float = 0.0):
        self.weight_decay = weight_decay
        self.state = {f"{slot}/{name}": np.zeros_like(p) for slot in self.slots for name, p in params.items()}
        self.state["t"] = np.zeros((), dtype=np.int64)

    sparse_ok = False       # whether _update_compact may update only a compact gradient's rows

    def step(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray], lr: float) -> None:
        self.state["t"] += 1
        compact = getattr(grads, "compact", None) if self.sparse_ok and not self.weight_decay else None
        for name, p in params.items():
            c = compact(name) if compact is not None else None
            if c is not None:
                self._update_compact(p, c, lr)
                continue
            g = grads[name]
            if self.weight_decay:
                g = g + self.weight_decay * p
            self._update(name, p, g, lr)

    def _update(self, name, p, g, lr):
        raise NotImplementedError

    def _update_compact(self, p, c, lr):
        raise NotImplementedError

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        missing = set(self.state) - set(state)
        if missing:
            raise CheckpointError(f"optimizer state is missing {sorted(missing)[0]} (different optimizer?)")
        for key, value in state.items():
            if key in self.state:
                if self.state[key].shape != value.shape:
                    raise CheckpointError(f"optimizer state {key} has shape {value.shape}, "
                                          f"expected {self.state[key].shape}")
                self.state[key][...] = value


class SGD(Optimizer):
    """p -= lr * g; with momentum mu: v = mu v + g, p -= lr * v (Nesterov: p -= lr * (g + mu v))."""

    def __init__(self, params, momentum=0.0, nesterov=False, weight_decay=0.0):
        self.slots = ("v",) if momentum else ()
        self.momentum, self.nesterov = momentum, nesterov
        self.sparse_ok = not momentum
        super().__init__(params, weight_decay)

    def _update_compact(self, p, c, lr):
        """p -= lr * g on the rows the compact gradient c holds (the rest of g is zero)."""
        if c.factored:                       # block by block: p[rows] -= d^T (f h), never forming g
            f = p.dtype.type(lr * c.scale)
            rows = min(UPDATE_ROWS, max((k for _, k, _, _, _ in c.factors), default=0))
            tmp = np.empty((rows,) + p.shape[1:], dtype=p.dtype)
            with loop_threads():             # small products: one BLAS thread (blas.py)
                for start, k, _, d, h in c.factors:
                    hf = h * f
                    for lo in range(0, k, rows):
                        hi = min(k, lo + rows)
                        p[start + lo:start + hi] -= block_product(d[:, lo:hi], hf, tmp[:hi - lo])
            return
        step = c.values * p.dtype.type(lr * c.scale)
        if c.runs is not None:
            for start, stop, off in c.runs:
                p[c.at(slice(start, stop))] -= step[c.at(slice(off, off + stop - start))]
        else:
            p[c.at(c.index)] -= step         # index is unique: no repeated-row hazard

    def _update(self, name, p, g, lr):
        if not self.momentum:
            p -= lr * g
            return
        v = self.state[f"v/{name}"]
        v *= self.momentum
        v += g
        if self.nesterov:
            p -= lr * (g + self.momentum * v)
        else:
            p -= lr * v


class Adagrad(Optimizer):
    """G += g^2; p -= lr * g / (sqrt(G) + eps)."""

    slots = ("G",)

    def __init__(self, params, eps=1e-8, weight_decay=0.0):
        self.eps = eps
        super().__init__(params, weight_decay)

    def _update(self, name, p, g, lr):
        acc = self.state[f"G/{name}"]
        acc += g * g
        p -= lr * g / (np.sqrt(acc) + self.eps)


class RMSprop(Optimizer):
    """E = beta2 E + (1 - beta2) g^2; p -= lr * g / (sqrt(E) + eps)."""

    slots = ("E",)

    def __init__(self, params, beta2=0.99, eps=1e-8, weight_decay=0.0):
        self.beta2, self.eps = beta2, eps
        super().__init__(params, weight_decay)

    def _update(self, name, p, g, lr):
        avg = self.state[f"E/{name}"]
        avg *= self.beta2
        avg += (1 - self.beta2) * g * g
        p -= lr * g / (np.sqrt(avg) + self.eps)


class Adam(Optimizer):
    """Kingma & Ba 2015 with bias correction."""

    slots = ("m", "v")

    def __init__(self, params, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0):
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self._scratch: dict = {}
        super().__init__(params, weight_decay)

    # Elements per block: the update runs block by block so that its eleven passes read and
    # write the parameter, gradient and moments while they sit in the L2 cache (~2-3x faster
    # than whole-array passes on a 2M-element embedding; the arithmetic is unchanged).
    BLOCK = 32768

    def _update(self, name, p, g, lr):
        m, v = self.state[f"m/{name}"], self.state[f"v/{name}"]
        t = int(self.state["t"])
        step = float(lr * np.sqrt(1 - self.beta2 ** t) / (1 - self.beta1 ** t))   # a Python float:
        # float32 stays float32 (an np.float64 factor would promote the whole update)
        n = p.size
        blocked = n > self.BLOCK and p.flags.c_contiguous and m.flags.c_contiguous and v.flags.c_contiguous
        size = self.BLOCK if blocked else n
        key = p.dtype.str
        if key not in self._scratch or self._scratch[key][0].size < size:
            self._scratch[key] = (np.empty(size, dtype=p.dtype), np.empty(size, dtype=p.dtype))
        a, b = self._scratch[key]
        if not blocked:
            self._apply(p, np.asarray(g), m, v, step, a[:n].reshape(p.shape), b[:n].reshape(p.shape))
            return
        pf, gf, mf, vf = p.reshape(-1), np.asarray(g).reshape(-1), m.reshape(-1), v.reshape(-1)
        for lo in range(0, n, self.BLOCK):
            hi = min(lo + self.BLOCK, n)
            self._apply(pf[lo:hi], gf[lo:hi], mf[lo:hi], vf[lo:hi], step, a[:hi - lo], b[:hi - lo])

    def _apply(self, p, g, m, v, step, a, b):
        """The textbook lines (comments) as in-place operations on two scratch arrays a, b."""
        m *= self.beta1                                  # m = beta1 m + (1 - beta1) g
        np.multiply(g, 1 - self.beta1, out=a)
        m += a
        v *= self.beta2                                  # v = beta2 v + (1 - beta2) g g
        np.multiply(g, 1 - self.beta2, out=a)
        a *= g
        v += a
        np.multiply(m, step, out=b)                      # p -= step m / (sqrt(v) + eps)
        np.sqrt(v, out=a)
        a += self.eps
        b /= a
        p -= b


def make_optimizer(params: dict[str, np.ndarray], train_cfg) -> Optimizer:
    """The optimizer named by the `train` section of the configuration."""
    name, wd = train_cfg.optimizer, train_cfg.weight_decay
    if name == "sgd":
        return SGD(params, train_cfg.momentum, train_cfg.nesterov, wd)
    if name == "adagrad":
        return Adagrad(params, train_cfg.eps, wd)
    if name == "rmsprop":
        return RMSprop(params, train_cfg.beta2, train_cfg.eps, wd)
    return Adam(params, train_cfg.beta1, train_cfg.beta2, train_cfg.eps, wd)
