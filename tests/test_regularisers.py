"""The training regularisers: locked (variational) dropout, embedding dropout over word types,
weight drop on W_h, activation and temporal activation regularisation. What each mask looks
like, what AR/TAR add (by hand), that evaluation sees none of them, and that gradcheck's
regularised checks can fail."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from rnnlm_cli.analysis.gradcheck import run_gradcheck
from rnnlm_cli.config import load_config
from rnnlm_cli.nn.model import Model

V = 11


def model_of(layers=2, cell="lstm", **opts):
    cfg = dataclasses.replace(load_config(None).model, cell=cell, num_layers=layers, embedding_size=5,
                              hidden_size=6, **opts)
    return Model(cfg, V, dtype=np.float64, rng=np.random.default_rng(0))


def tokens(T=7, B=4, seed=1):
    rng = np.random.default_rng(seed)
    return rng.integers(0, V, size=(T, B)), rng.integers(0, V, size=(T, B))


def test_locked_masks_are_shared_over_time():
    m = model_of(dropout_locked=True, dropout_embedding=0.4, dropout_between=0.4, dropout_output=0.4)
    x, y = tokens()
    fwd = m.forward(x, y, train=True, rng=np.random.default_rng(2))
    assert fwd.emb_mask.shape == (1, 4, 5) and fwd.between_masks[1].shape == (1, 4, 6)
    assert fwd.out_mask.shape == (1, 4, 6)
    # a dropped embedding unit is zero at every step of its sequence
    dropped = fwd.emb_mask[0] == 0
    assert dropped.any() and np.all(fwd.emb[:, dropped] == 0)


def test_word_dropout_drops_word_types_not_positions():
    m = model_of(dropout_words=0.5)
    x = np.tile(np.arange(V)[:, None], (2, 3))[:8]               # every word at several positions
    fwd = m.forward(x, x, train=True, rng=np.random.default_rng(5))
    zero = np.all(fwd.emb == 0, axis=-1)                           # (T, B) positions whose embedding is gone
    for w in np.unique(x):
        assert len(set(zero[x == w])) == 1                         # a word is dropped everywhere or nowhere
    assert zero.any() and not zero.all()


def test_weight_drop_masks_w_h_for_the_batch_and_evaluation_uses_it_whole():
    m = model_of(weight_drop=0.5)
    x, y = tokens()
    fwd = m.forward(x, y, train=True, rng=np.random.default_rng(3))
    for layer in range(2):
        mask = fwd.weight_masks[layer]
        np.testing.assert_array_equal(fwd.caches[layer].weights["W_h"], m.params[f"cell.{layer}.W_h"] * mask)
        assert set(np.unique(mask)) == {0.0, 2.0}
    plain = m.forward(x, y)
    assert all(w is None for w in plain.weight_masks) and plain.reg == 0.0


def test_ar_and_tar_by_hand():
    ar, tar = 0.7, 0.3
    m = model_of(ar=ar, tar=tar, dropout_output=0.5)
    x, y = tokens()
    fwd = m.forward(x, y, train=True, rng=np.random.default_rng(4))
    h = fwd.hs
    hout = h * fwd.out_mask
    T, B, H = h.shape
    want = ar * np.sum(hout ** 2) / (T * B * H) + tar * np.sum((h[1:] - h[:-1]) ** 2) / ((T - 1) * B * H)
    assert fwd.reg == pytest.approx(want, rel=1e-12)
    # the gradient of count * R alone: the loss's part is removed by comparing two scales
    g = fwd.reg_grad
    i = (2, 1, 3)
    eps = 1e-6
    hp, hm = h.copy(), h.copy()
    hp[i] += eps
    hm[i] -= eps

    def R(hh):
        return (ar * np.sum((hh * fwd.out_mask) ** 2) / (T * B * H)
                + tar * np.sum((hh[1:] - hh[:-1]) ** 2) / ((T - 1) * B * H))

    assert (R(hp) - R(hm)) / (2 * eps) == pytest.approx(g[i], rel=1e-7)


def test_regularised_gradcheck_catches_a_wrong_regulariser_gradient(monkeypatch):
    cfg = load_config(None, ["gradcheck.samples=4"])
    ok = run_gradcheck(cfg, cells=["tanh"], modes=["stream"], layers=[2], regularised=[True])
    assert ok["passed"]
    real = Model._activation_reg

    def off_by_ten_percent(self, *args):
        R, grad = real(self, *args)
        return R, grad * 1.1

    monkeypatch.setattr(Model, "_activation_reg", off_by_ten_percent)
    bad = run_gradcheck(cfg, cells=["tanh"], modes=["stream"], layers=[2], regularised=[True])
    assert not bad["passed"]
