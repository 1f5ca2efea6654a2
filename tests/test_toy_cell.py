"""Adding a cell is one class plus one registry line.

A fifth cell, defined here and registered for the tests of this file only: a minimal gated unit
(Zhou et al. 2016) with one forget gate doing the work of the GRU's update and reset gates,
applied after the recurrent product so that W_h stays one stacked GEMM:

    f   = sigmoid(xproj_f + h_{t-1} W_h[:, f])
    hn  = h_{t-1} W_h[:, n]
    n   = tanh(xproj_n + f * hn)
    h_t = (1 - f) * h_{t-1} + f * n

Without editing any package module it trains through the library, passes gradcheck in every
BPTT mode, has a tangent equal to its step Jacobian, and is diagnosed.
"""

from __future__ import annotations

import numpy as np
import pytest

from helpers import agreement_corpus, jittered_model, random_tokens, step_jacobian

from rnnlm_cli.analysis.diagnostics import Spec, diagnose, diagnose_model
from rnnlm_cli.analysis.gradcheck import run_gradcheck
from rnnlm_cli.analysis.jacobians import StepMaps
from rnnlm_cli.config import load_config
from rnnlm_cli.errors import ConfigError
from rnnlm_cli.nn.cells import CELLS, Cell, register_cell, sigmoid
from rnnlm_cli.train.step import MODES
from rnnlm_cli.train.trainer import train


class MinimalGatedUnit(Cell):
    """The toy cell (module docstring). Cache: f, n, hn, h_prev (T, B, H)."""

    name = "mgu"
    gate_names = ("f", "n")
    gate_gammas = (0.25, 1.0)                  # |sigmoid'| <= 1/4, |tanh'| <= 1
    n_factors = 3

    def new_cache(self, T, B, state, params):
        cache = super().new_cache(T, B, state, params)
        dtype, H = params["W_h"].dtype, self.H
        cache.arrays.update(f=np.empty((T, B, H), dtype=dtype), n=np.empty((T, B, H), dtype=dtype),
                            hn=np.empty((T, B, H), dtype=dtype))
        return cache

    def forward_step(self, cache, t, xp):
        H, h = self.H, cache.seq["h"]
        f, n, hn = (cache.arrays[k][t] for k in ("f", "n", "hn"))
        a = h[t] @ cache.weights["W_h"]                          # (B, 2H)
        f[...] = sigmoid(xp[:, :H] + a[:, :H])
        hn[...] = a[:, H:]
        n[...] = np.tanh(xp[:, H:] + f * hn)
        h[t + 1] = h[t] + f * (n - h[t])

    def backward_factors(self, cache):
        """F (N, B, 2, H): da = dh * F per block; Fh: the same with the n block times f (the
        gradient w.r.t. the recurrent product); 1 - f: the direct path h_prev -> h."""
        f, n, hn, h_prev = (cache.arrays[k] for k in ("f", "n", "hn", "h_prev"))
        Fn = f * (1 - n * n)                                     # undoes h = ... + f * n, n = tanh(.)
        Ff = (n - h_prev + Fn * hn) * f * (1 - f)                # undoes both uses of f = sigmoid(.)
        F = np.stack([Ff, Fn], axis=-2)                          # (N, B, 2, H)
        Fh = np.stack([Ff, Fn * f], axis=-2)                     # the n block sits behind f
        return F, Fh, 1 - f

    def backward_apply(self, fac, wt, dh, dc, da):
        F, Fh, keep = fac
        H = self.H
        lead = da.shape[:-1]
        d2 = dh[..., None, :]
        np.multiply(d2, F, out=da.reshape(lead + (2, H)))
        dh_prev = (d2 * Fh).reshape(lead + (2 * H,)) @ wt       # undoes h_prev @ W_h
        dh_prev += dh * keep                                     # undoes h = (1 - f) * h_prev + ...
        return da, dh_prev, None

    def tangent(self, fac, W_h, v):
        _, Fh, keep = fac
        a = (v @ W_h).reshape(-1, 2, self.H)                     # (n, 2, H) change of h_prev @ W_h
        return np.einsum("nkh,nkh->nh", a, Fh) + v * keep

    def recurrent_da(self, cache, da):
        H = self.H
        dah = da.copy()
        dah[..., H:] *= cache.arrays["f"]
        return dah

    def saturation_units(self, cache):
        return [("f", "sigmoid", cache.arrays["f"]), ("n", "tanh", cache.arrays["n"])]


@pytest.fixture
def mgu():
    register_cell("mgu", MinimalGatedUnit)                      # the one registry line
    yield "mgu"
    del CELLS["mgu"]


# --------------------------------------------------------------------------- trains

def unigram_loss(train_lines, valid_lines) -> float:
    """Cross-entropy (nats per token, <eos> included) of the training unigram on the valid text."""
    words = [w for line in train_lines for w in line.split() + ["<eos>"]]
    vocab, counts = np.unique(words, return_counts=True)
    p = dict(zip(vocab, counts / counts.sum()))
    valid = [w for line in valid_lines for w in line.split() + ["<eos>"]]
    return float(-np.mean([np.log(p[w]) for w in valid]))


def test_the_toy_cell_trains(mgu, tmp_path):
    c, parts = agreement_corpus(tmp_path)
    cfg = load_config(None, [f"data.train={c / 'train.txt'}", f"data.valid={c / 'valid.txt'}",
                             f"data.test={c / 'test.txt'}", f"data.prepared={tmp_path / 'prepared'}",
                             f"train.out={tmp_path / 'run'}", "model.cell=mgu", "model.hidden_size=16",
                             "model.embedding_size=8", "train.batch_size=4", "train.k1=8", "train.epochs=3",
                             "train.optimizer=adam", "train.lr=0.01"])
    summary = train(cfg, progress=False)
    # the unigram ignores context (about 2.1 nats here); the grammar fixes 'the', 'home', <eos> and
    # the verb from the noun, leaving one choice among 6 nouns per 5 tokens: ln(6) / 5 = 0.36 nats
    unigram = unigram_loss(parts["train"], parts["valid"])
    assert summary["valid_loss"] < 0.5 * unigram
    assert summary["valid_loss"] < 2 * np.log(6) / 5


def test_registration_reaches_the_config_and_ends_with_the_test(mgu):
    assert load_config(None, ["model.cell=mgu"]).model.cell == "mgu"


def test_an_unregistered_cell_is_refused():
    assert "mgu" not in CELLS
    with pytest.raises(ConfigError, match="model.cell"):
        load_config(None, ["model.cell=mgu"])


# --------------------------------------------------------------------------- gradcheck and Jacobians

def test_the_toy_cell_passes_gradcheck_in_every_mode(mgu):
    result = run_gradcheck(load_config(None), cells=[mgu], modes=list(MODES), tying=[False, True],
                           softmaxes=["full", "class"])
    assert result["passed"], [c for c in result["checks"] if not c["passed"]]
    assert {c["bptt"] for c in result["checks"]} == {"full", "window", "stream"}
    assert {"cell.W_x", "cell.W_h", "cell.b", "direction"} <= {c["param"] for c in result["checks"]}


def test_the_toy_tangent_is_its_step_jacobian(mgu):
    V, E, H, T, B = 7, 3, 5, 6, 2
    model = jittered_model(mgu, V, E, H)
    x, y = random_tokens(V, T, B)
    fwd = model.forward(x, y)
    J = np.stack([step_jacobian(model.cell, fwd.cache, j) for j in range(T)])    # (T, B, H, H)
    # the explicit Jacobian against differences of one forward step from s_{j-1}
    j, eps = 3, 1e-6
    s = fwd.state_after(j)[0]
    num = np.empty((B, H, H))
    for q in range(H):
        up, dn = s.copy(), s.copy()
        up[:, q] += eps
        dn[:, q] -= eps
        num[:, :, q] = (model.forward(x[j:j + 1], y[j:j + 1], (up,)).state[0]
                        - model.forward(x[j:j + 1], y[j:j + 1], (dn,)).state[0]) / (2 * eps)
    np.testing.assert_allclose(J[j], num, atol=1e-8)
    # J v through the tangent, u^T J through the backward step, at every position
    maps = StepMaps(model.cell, fwd.cache)
    idx = np.arange(T * B)
    v = np.random.default_rng(0).standard_normal((T * B, H))
    Jf = J.reshape(T * B, H, H)
    np.testing.assert_allclose(maps.jvp(v, idx), np.einsum("npq,nq->np", Jf, v), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(maps.vjp(v, idx), np.einsum("npq,np->nq", Jf, v), rtol=1e-12, atol=1e-14)


# --------------------------------------------------------------------------- diagnosed

def test_the_toy_cell_is_diagnosed(mgu):
    cfg = load_config(None, ["model.cell=mgu", "model.hidden_size=8", "model.embedding_size=8"])
    T = 6
    result = diagnose([Spec(label="mgu", cfg=cfg)], steps=T, batches=1, batch_size=3, random_tokens=True)
    m = result["models"][0]
    assert m["model"]["cell"] == "mgu" and m["data"] == "random tokens"
    profile = m["lag_profile"]["normalised"]
    assert len(profile) == T and profile[0] == pytest.approx(1.0)          # g(t, t) / g(t, t)
    assert all(0 < p < 1 for p in profile[1:])
    assert m["saturation"]["sigmoid"]["units"] == ["f"] and m["saturation"]["tanh"]["units"] == ["n"]
    rec = m["jacobian"]["recurrent"]
    assert [(b["block"], b["gamma"], b["bound"]) for b in rec["blocks"]] == [("f", 0.25, 4.0), ("n", 1.0, 1.0)]
    assert not rec["applies"] and rec["verdict"] == "not excluded"         # a gated path: no bound
    assert m["jacobian"]["state_size"] == 8


def test_the_toy_jacobian_norms_and_bound_are_exact(mgu):
    V, E, H, T, B = 7, 3, 5, 6, 2
    model = jittered_model(mgu, V, E, H)
    x, y = random_tokens(V, T, B)
    res = diagnose_model(model, [(x, y)], 1e-3, [1])
    fwd = model.forward(x, y)
    svd = np.array([[np.linalg.norm(m, 2) for m in step_jacobian(model.cell, fwd.cache, j)] for j in range(T)])
    np.testing.assert_allclose(res["jacobian"]["spectral_norm"]["max"], svd.max(axis=1), rtol=1e-10)
    W = model.params["cell.W_h"]
    sigmas = [b["sigma_max"] for b in res["jacobian"]["recurrent"]["blocks"]]
    np.testing.assert_allclose(sigmas, [np.linalg.norm(W[:, :H], 2), np.linalg.norm(W[:, H:], 2)], rtol=1e-10)
    # saturation: the fraction of gate values within 0.01 of 0 or 1, counted by hand
    f = fwd.cache.arrays["f"]
    want = ((f < 0.01) | (f > 0.99)).mean(axis=(1, 2))
    np.testing.assert_allclose(res["saturation"]["sigmoid"]["by_unit"]["f"], want.mean())
