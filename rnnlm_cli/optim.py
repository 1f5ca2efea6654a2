"""Gradient clipping and optimizers.

Clipping works in place on a dict of gradient arrays and returns the norms, so training can
log the pre-clip norm (the quantity that explodes) without a second pass:

    pre, post = clip_gradients(grads, "norm", 5.0)   # Pascanu et al. 2013: global L2 rescale
    pre, post = clip_gradients(grads, "value", 1.0)  # element-wise to [-1, 1]
    pre, post = clip_gradients(grads, "none", 0.0)   # only measures

A non-finite gradient is never rescaled (that would spread NaN to every parameter); check
`find_nonfinite(grads)` and apply the `train.nonfinite` policy.
"""

from __future__ import annotations

import math

import numpy as np

CLIP_MODES = ("norm", "value", "none")


# --------------------------------------------------------------------------- clipping

def global_norm(grads: dict) -> float:
    """sqrt(sum of squares over every element of every array), as a Python float."""
    total = 0.0
    for g in grads.values():
        flat = g.reshape(-1)
        with np.errstate(over="ignore", invalid="ignore"):
            sq = float(np.dot(flat, flat))
        if not math.isfinite(sq) and np.isfinite(flat).all():
            # finite but the float32 squares overflow: rescale by the largest element
            big = float(np.abs(flat).max())
            scaled = flat.astype(np.float64) / big
            sq = big * big * float(np.dot(scaled, scaled))
        total += sq
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
        for g in grads.values():
            g *= g.dtype.type(factor)
        return pre, pre * factor
    for g in grads.values():
        np.clip(g, -threshold, threshold, out=g)
    return pre, global_norm(grads)


def find_nonfinite(grads: dict) -> str | None:
    """Name of the first array holding a NaN or infinity, else None."""
    for name, g in grads.items():
        with np.errstate(over="ignore", invalid="ignore"):
            quick = np.isfinite(g.sum())     # one fast pass; confirmed element-wise if it fails
        if not quick and not np.isfinite(g).all():
            return name
    return None
