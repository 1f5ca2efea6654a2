"""Gradient clipping and optimizers.

Clipping works in place on a mapping of gradients and returns the norms, so training can log
the pre-clip norm (the quantity that explodes) without a second pass:

    pre, post = clip_gradients(grads, "norm", 5.0)   # Pascanu et al. 2013: global L2 rescale
    pre, post = clip_gradients(grads, "value", 1.0)  # element-wise to [-1, 1]
    pre, post = clip_gradients(grads, "none", 0.0)   # only measures

A non-finite gradient is never rescaled (that would spread NaN to every parameter); check
`find_nonfinite(grads)` and apply the `train.nonfinite` policy.

Gradients may be dense arrays or the compact types of rnnlm_cli.nn.gradients (RowSparse: the
embedding's token rows; ClassFactored: the class softmax's word rows as factors). Clipping
measures and scales them without forming them; SGD without momentum or weight decay updates
only their rows (the "sparse update"); every other optimizer asks for the dense gradient,
which holds exactly the same numbers.
"""

from __future__ import annotations

import math

import numpy as np

from rnnlm_cli.errors import CheckpointError
from rnnlm_cli.nn import gradients as G
from rnnlm_cli.nn.kernels import ELEMENTWISE_BLOCK, elementwise_blocks

CLIP_MODES = ("norm", "value", "none")


# --------------------------------------------------------------------------- clipping

def global_norm(grads: dict) -> float:
    """sqrt(sum of squares over every element of every gradient), as a Python float."""
    total = 0.0
    for g in grads.values():
        total += G.sq_norm(g)
    return math.sqrt(total)


def clip_gradients(grads: dict, mode: str, threshold: float) -> tuple[float, float]:
    """Clip `grads` in place; returns (pre_clip_norm, post_clip_norm), both global L2 norms.

    norm: if the global norm exceeds `threshold`, scale every gradient by threshold / norm
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
        for g in grads.values():
            G.scale_(g, factor)
        return pre, pre * factor
    for name in list(grads):
        grads[name] = G.clip_(grads[name], threshold)
    return pre, global_norm(grads)


def find_nonfinite(grads: dict) -> str | None:
    """Name of the first gradient holding a NaN or infinity, else None."""
    for name, g in grads.items():
        if G.nonfinite(g):
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

    sparse_ok = False       # whether a compact gradient may update only its rows (p -= lr * g)

    def step(self, params: dict[str, np.ndarray], grads: dict, lr: float) -> None:
        self.state["t"] += 1
        for name, p in params.items():
            g = grads[name]
            if isinstance(g, G.CompactGradient):
                if self.sparse_ok and not self.weight_decay:
                    g.sgd_apply(p, lr)           # p -= lr * g on the rows g holds
                    continue
                g = g.dense()
            if self.weight_decay:
                g = g + self.weight_decay * p
            self._update(name, p, g, lr)

    def _update(self, name, p, g, lr):
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

    BLOCK = ELEMENTWISE_BLOCK    # the update runs in cache-sized pieces (kernels.py); same numbers

    def _update(self, name, p, g, lr):
        m, v = self.state[f"m/{name}"], self.state[f"v/{name}"]
        t = int(self.state["t"])
        step = float(lr * np.sqrt(1 - self.beta2 ** t) / (1 - self.beta1 ** t))   # a Python float:
        # float32 stays float32 (an np.float64 factor would promote the whole update)
        size, key = min(p.size, self.BLOCK), p.dtype.str
        if key not in self._scratch or self._scratch[key][0].size < size:
            self._scratch[key] = (np.empty(size, dtype=p.dtype), np.empty(size, dtype=p.dtype))
        elementwise_blocks(lambda p, g, m, v, a, b: self._apply(p, g, m, v, step, a, b),
                           (p, np.asarray(g), m, v), self._scratch[key], self.BLOCK)

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
