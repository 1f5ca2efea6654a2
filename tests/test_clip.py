"""Clipping: global norm (exact rescale, pre-clip norm returned), value, none, non-finite."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rnnlm_cli.train.optim import clip_gradients, find_nonfinite, global_norm


def grads(scale=1.0, dtype=np.float32):
    rng = np.random.default_rng(0)
    return {"a": (rng.standard_normal((3, 4)) * scale).astype(dtype),
            "b": (rng.standard_normal(5) * scale).astype(dtype)}


def test_global_norm_over_all_arrays():
    g = grads(dtype=np.float64)
    expected = math.sqrt(sum((v ** 2).sum() for v in g.values()))
    assert global_norm(g) == pytest.approx(expected, rel=1e-12)


def test_norm_clipping_scales_exactly_and_keeps_direction():
    g = grads(10.0, np.float64)
    before = {k: v.copy() for k, v in g.items()}
    norm = global_norm(g)
    pre, post = clip_gradients(g, "norm", 2.0)
    assert pre == pytest.approx(norm, rel=1e-12)
    assert post == pytest.approx(2.0, rel=1e-12)
    assert global_norm(g) == pytest.approx(2.0, rel=1e-12)
    for k in g:
        np.testing.assert_allclose(g[k], before[k] * (2.0 / norm), rtol=1e-12)


def test_norm_clipping_below_threshold_changes_nothing():
    g = grads(0.01)
    before = {k: v.copy() for k, v in g.items()}
    pre, post = clip_gradients(g, "norm", 5.0)
    assert pre == post
    for k in g:
        np.testing.assert_array_equal(g[k], before[k])


def test_norm_clipping_keeps_float32():
    g = grads(100.0)
    clip_gradients(g, "norm", 1.0)
    assert all(v.dtype == np.float32 for v in g.values())
    assert global_norm(g) == pytest.approx(1.0, rel=1e-5)


def test_value_clipping_is_element_wise():
    g = grads(3.0, np.float64)
    before = {k: v.copy() for k, v in g.items()}
    pre, post = clip_gradients(g, "value", 1.0)
    assert pre == pytest.approx(global_norm(before))
    for k in g:
        np.testing.assert_array_equal(g[k], np.clip(before[k], -1, 1))
    assert post == pytest.approx(global_norm(g))


def test_none_only_measures():
    g = grads(50.0)
    before = {k: v.copy() for k, v in g.items()}
    pre, post = clip_gradients(g, "none", 1.0)
    assert pre == post == pytest.approx(global_norm(before))
    for k in g:
        np.testing.assert_array_equal(g[k], before[k])
    with pytest.raises(ValueError):
        clip_gradients(g, "max", 1.0)


def test_huge_finite_float32_gradients_have_a_finite_norm():
    g = {"a": np.full(10, 1e30, dtype=np.float32)}
    assert global_norm(g) == pytest.approx(1e30 * math.sqrt(10), rel=1e-6)
    assert find_nonfinite(g) is None
    pre, post = clip_gradients(g, "norm", 5.0)
    assert post == pytest.approx(5.0) and global_norm(g) == pytest.approx(5.0, rel=1e-5)


def test_nonfinite_detection_and_no_rescale():
    g = grads()
    assert find_nonfinite(g) is None
    g["b"][2] = np.nan
    assert find_nonfinite(g) == "b"
    a_before = g["a"].copy()
    pre, _ = clip_gradients(g, "norm", 1e-3)
    assert math.isnan(pre)
    np.testing.assert_array_equal(g["a"], a_before)     # not spread to the finite arrays
    g = grads()
    g["a"][0, 0] = -np.inf
    assert find_nonfinite(g) == "a"
