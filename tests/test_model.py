"""Model: forward loss against a slow per-example reference, gradients, dtypes, padding, API."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from helpers import SHIPPED_CELLS as CELLS, jittered_model, random_tokens

from rnnlm_cli.config import ModelConfig
from rnnlm_cli.data.batching import Batch
from rnnlm_cli.errors import ConfigError
from rnnlm_cli.nn.model import Model, scatter_rows
from rnnlm_cli.train.step import batch_gradients

V, H, T, B = 9, 4, 5, 3


def small_cfg(cell="tanh", **kw):
    return ModelConfig(cell=cell, embedding_size=H, hidden_size=H, **kw)


def make_model(cell="tanh", dtype=np.float64, seed=0, **kw):
    return jittered_model(cell, V, H, H, seed, dtype=dtype, **kw)


def tokens(seed=1, shape=(T, B)):
    return random_tokens(V, *shape, seed)


# --------------------------------------------------------------------------- slow reference

def sig(a):
    return 1.0 / (1.0 + math.exp(-a))


def ref_step(cell, p, e, h, c):
    """One step for ONE example, unit by unit, straight from the equations."""
    n_h = len(h)
    Wx, Wh, b = p["cell.W_x"], p["cell.W_h"], p["cell.b"]

    def pre(k, j, with_h=True):  # pre-activation of gate block k, unit j
        col = k * n_h + j
        s = b[col] + sum(e[i] * Wx[i, col] for i in range(len(e)))
        if with_h:
            s += sum(h[i] * Wh[i, col] for i in range(n_h))
        return s

    if cell == "tanh":
        return [math.tanh(pre(0, j)) for j in range(n_h)], None
    if cell == "relu":
        return [max(pre(0, j), 0.0) for j in range(n_h)], None
    if cell == "gru":
        new = []
        for j in range(n_h):
            r, z = sig(pre(0, j)), sig(pre(1, j))
            hn = p["cell.b_h"][j] + sum(h[i] * Wh[i, 2 * n_h + j] for i in range(n_h))
            n = math.tanh(pre(2, j, with_h=False) + r * hn)
            new.append((1 - z) * n + z * h[j])
        return new, None
    hs, cs = [], []
    for j in range(n_h):
        i_, f, g, o = sig(pre(0, j)), sig(pre(1, j)), math.tanh(pre(2, j)), sig(pre(3, j))
        cj = f * c[j] + i_ * g
        cs.append(cj)
        hs.append(o * math.tanh(cj))
    return hs, cs


def reference_loss(model, x, y, mask=None, state=None):
    """Sum over examples and steps of -log softmax(h W + b)[y] * mask, one scalar at a time."""
    p = {k: v.astype(np.float64) for k, v in model.params.items()}
    W = p["embedding"].T if model.cfg.tie_weights else p["output.W"]
    total = 0.0
    n_t, n_b = x.shape
    for b in range(n_b):
        h = [0.0] * model.H if state is None else list(state[0][b])
        c = [0.0] * model.H if state is None or len(state) == 1 else list(state[1][b])
        for t in range(n_t):
            e = list(p["embedding"][x[t, b]])
            h, c = ref_step(model.cfg.cell, p, e, h, c)
            logits = [p["output.b"][v] + sum(h[j] * W[j, v] for j in range(model.H)) for v in range(model.V)]
            logp = logits[y[t, b]] - math.log(sum(math.exp(z) for z in logits))
            total += -logp * (1.0 if mask is None else mask[t, b])
    return total


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("tie", [False, True])
def test_forward_loss_matches_slow_reference(cell, tie):
    model = make_model(cell, tie_weights=tie)
    x, y = tokens()
    mask = np.ones((T, B))
    mask[3:, 1] = 0.0
    fwd = model.forward(x, y, mask=mask)
    assert fwd.loss == pytest.approx(reference_loss(model, x, y, mask), rel=1e-12)
    assert fwd.count == mask.sum()
    assert fwd.nll.shape == (T, B) and fwd.hs.shape == (T, B, H)
    assert fwd.nll.sum() == pytest.approx(fwd.loss, rel=1e-12)


@pytest.mark.parametrize("cell", ["tanh", "lstm"])
def test_forward_from_a_given_state_matches_reference(cell):
    model = make_model(cell)
    x, y = tokens(2)
    rng = np.random.default_rng(5)
    state = tuple(rng.uniform(-1, 1, size=(B, H)) for _ in model.initial_state(B))
    assert model.forward(x, y, state).loss == pytest.approx(reference_loss(model, x, y, state=state), rel=1e-12)


@pytest.mark.parametrize("cell", CELLS)
def test_float32_and_float64_forward_agree(cell):
    m64 = make_model(cell, np.float64)
    m32 = Model(m64.cfg, V, dtype=np.float32, params=m64.params)
    x, y = tokens(3, (20, 4))
    f64, f32 = m64.forward(x, y), m32.forward(x, y)
    assert f32.hs.dtype == np.float32 and f32.nll.dtype == np.float32
    assert f32.loss == pytest.approx(f64.loss, rel=1e-5)
    np.testing.assert_allclose(f32.hs, f64.hs, atol=2e-5)
    g64, g32 = m64.backward(f64).as_dense(), m32.backward(f32).as_dense()
    for k in g64:
        assert g32[k].dtype == np.float32, k
        np.testing.assert_allclose(g32[k], g64[k], rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("cell", ["tanh", "gru", "lstm"])
def test_padding_changes_nothing(cell):
    """A padded batch gives the same loss and gradients as the same sentences run alone."""
    model = make_model(cell)
    rng = np.random.default_rng(4)
    lengths = [5, 2, 3]
    xs = [rng.integers(0, V, size=n) for n in lengths]
    ys = [rng.integers(0, V, size=n) for n in lengths]
    x = np.zeros((5, 3), dtype=np.int64)
    y = np.zeros((5, 3), dtype=np.int64)
    mask = np.zeros((5, 3))
    for b, n in enumerate(lengths):
        x[:n, b], y[:n, b], mask[:n, b] = xs[b], ys[b], 1
        x[n:, b] = rng.integers(0, V, size=5 - n)           # junk in the padding
        y[n:, b] = rng.integers(0, V, size=5 - n)
    fwd = model.forward(x, y, mask=mask)
    grads = model.backward(fwd).as_dense()
    loss_alone, grads_alone = 0.0, {k: 0.0 for k in grads}
    for b in range(3):
        f = model.forward(xs[b][:, None], ys[b][:, None])
        loss_alone += f.loss
        for k, g in model.backward(f).as_dense().items():
            grads_alone[k] = grads_alone[k] + g
    assert fwd.loss == pytest.approx(loss_alone, rel=1e-12)
    assert fwd.count == sum(lengths)
    for k in grads:
        np.testing.assert_allclose(grads[k], grads_alone[k], rtol=1e-10, atol=1e-13)


def test_embedding_gradient_with_repeated_tokens():
    model = make_model("gru")
    x = np.array([[2, 2], [2, 5], [2, 2], [5, 2]])   # token 2 repeated at many positions
    y = np.array([[1, 2], [3, 4], [0, 2], [6, 2]])
    g = model.backward(model.forward(x, y)).dense("embedding")
    emb = model.params["embedding"]
    eps = 1e-6
    for row in (2, 5, 7):                              # 7 never appears as an input
        for j in range(H):
            keep = emb[row, j]
            emb[row, j] = keep + eps
            fp = model.forward(x, y).loss
            emb[row, j] = keep - eps
            fm = model.forward(x, y).loss
            emb[row, j] = keep
            assert g[row, j] == pytest.approx((fp - fm) / (2 * eps), rel=1e-6, abs=1e-9)
    np.testing.assert_array_equal(g[7], 0.0)


def test_scatter_rows_sums_repeats():
    target = np.zeros((6, 2))
    rows = np.array([4, 1, 4, 4, 0])
    vals = np.arange(10.0).reshape(5, 2)
    scatter_rows(target, rows, vals)
    expected = np.zeros((6, 2))
    np.add.at(expected, rows, vals)
    np.testing.assert_allclose(target, expected)


def test_backward_scale_and_normalisation():
    model = make_model("lstm")
    x, y = tokens(6)
    mask = np.ones((T, B))
    mask[4:, 0] = 0
    fwd = model.forward(x, y, mask=mask)
    g_sum = model.backward(fwd)
    batch = Batch(x=x, y=y, mask=mask, loss_start=0, carry=T, index=0)
    fwd2, g_tok, _ = batch_gradients(model, batch, mode="stream", train=False)
    assert fwd2.count == T * B - 1                      # one position masked
    for k in g_sum:
        np.testing.assert_allclose(g_tok.dense(k), g_sum.dense(k) / (T * B - 1), rtol=1e-12, atol=1e-15)
    _, g_b, _ = batch_gradients(model, batch, mode="stream", train=False, normalize="batch")
    np.testing.assert_allclose(g_b["cell.W_h"], g_sum["cell.W_h"] / B, rtol=1e-12)


def test_parameter_names_and_tying():
    m = make_model("gru")
    assert set(m.params) == {"embedding", "cell.W_x", "cell.W_h", "cell.b", "cell.b_h", "output.W", "output.b"}
    assert m.params["output.W"].shape == (H, V) and m.params["embedding"].shape == (V, H)
    t = make_model("lstm", tie_weights=True)
    assert "output.W" not in t.params
    assert m.num_params() == sum(p.size for p in m.params.values())
    with pytest.raises(ConfigError, match="tie_weights"):
        Model(ModelConfig(embedding_size=3, hidden_size=4, tie_weights=True), V)


def test_params_round_trip_and_mismatch():
    m = make_model("tanh")
    copy = Model(m.cfg, V, dtype=np.float64, params=m.params)
    for k in m.params:
        np.testing.assert_array_equal(copy.params[k], m.params[k])
        assert copy.params[k] is not m.params[k]
    bad = dict(m.params)
    del bad["cell.b"]
    with pytest.raises(ConfigError, match="missing"):
        Model(m.cfg, V, params=bad)
    bad = dict(m.params, **{"cell.b": np.zeros(7)})
    with pytest.raises(ConfigError, match="cell.b"):
        Model(m.cfg, V, params=bad)


def test_dropout_only_when_training_and_reproducible():
    model = make_model("tanh", dropout_embedding=0.3, dropout_output=0.4)
    x, y = tokens(7)
    plain = model.forward(x, y).loss
    assert model.forward(x, y, train=False, rng=np.random.default_rng(0)).loss == plain
    a = model.forward(x, y, train=True, rng=np.random.default_rng(1)).loss
    b = model.forward(x, y, train=True, rng=np.random.default_rng(1)).loss
    assert a == b and a != plain
    with pytest.raises(ValueError, match="rng"):
        model.forward(x, y, train=True)


@pytest.mark.parametrize("cell", ["tanh", "lstm"])
def test_gradient_with_dropout_matches_differences_for_fixed_masks(cell):
    model = make_model(cell, dropout_embedding=0.25, dropout_output=0.5)
    x, y = tokens(8)
    f = lambda: model.forward(x, y, train=True, rng=np.random.default_rng(3)).loss  # noqa: E731
    grads = model.backward(model.forward(x, y, train=True, rng=np.random.default_rng(3))).as_dense()
    eps = 1e-6
    for name in ("embedding", "cell.W_h", "output.W"):
        p = model.params[name].reshape(-1)
        for i in range(0, p.size, max(1, p.size // 7)):
            keep = p[i]
            p[i] = keep + eps
            fp = f()
            p[i] = keep - eps
            fm = f()
            p[i] = keep
            assert grads[name].reshape(-1)[i] == pytest.approx((fp - fm) / (2 * eps), rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_step_logits_and_log_probs_agree_with_forward(cell):
    model = make_model(cell)
    x, y = tokens(9)
    logp, final = model.log_probs(x, y)
    state = None
    for t in range(T):
        logits, state = model.step_logits(x[t], state)
        lse = np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1)) + logits.max(1)
        np.testing.assert_allclose(logits[np.arange(B), y[t]] - lse, logp[t], rtol=1e-12)
    for a, b in zip(state, final):
        np.testing.assert_allclose(a, b, rtol=1e-14)


def test_loss_start_scores_only_the_tail():
    model = make_model("tanh")
    x, y = tokens(10)
    full = model.forward(x, y)
    tail = model.forward(x, y, loss_start=2)
    assert tail.count == (T - 2) * B
    assert tail.loss == pytest.approx(full.nll[2:].sum(), rel=1e-12)
    np.testing.assert_array_equal(tail.nll[:2], 0.0)
    mask = np.ones((T, B))
    mask[:2] = 0
    g_mask = model.backward(model.forward(x, y, mask=mask)).as_dense()
    g_tail = model.backward(tail).as_dense()
    for k in g_mask:
        np.testing.assert_allclose(g_tail[k], g_mask[k], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("tie", [False, True])
def test_softmax_statistics_in_row_blocks_match_the_reference(monkeypatch, tie):
    # the full softmax takes its (N, V) buffer in cache-sized row blocks (bias added there);
    # blocks of 3 rows (N = T * B) give the reference loss and the same gradients as one block
    from rnnlm_cli.nn import kernels
    model = make_model("tanh", tie_weights=tie)
    model.params["output.b"][:] = np.linspace(-1, 1, V)
    x, y = tokens(13)
    whole = model.backward(model.forward(x, y)).as_dense()
    monkeypatch.setattr(kernels, "STATS_BYTES", 3 * V * 8)          # float64 rows of V
    fwd = model.forward(x, y)
    assert fwd.loss == pytest.approx(reference_loss(model, x, y, None), rel=1e-12)
    pieces = model.backward(fwd).as_dense()
    for k in whole:
        np.testing.assert_allclose(pieces[k], whole[k], rtol=1e-12, atol=1e-15, err_msg=k)


def test_large_logits_do_not_overflow():
    model = make_model("tanh", dtype=np.float32)
    model.params["output.b"][:] = 0
    model.params["output.b"][3] = 1e4                  # exp(1e4) would overflow without the max
    x, y = tokens(11)
    fwd = model.forward(x, y)
    assert math.isfinite(fwd.loss)
    grads = model.backward(fwd).as_dense()
    assert all(np.isfinite(g).all() for g in grads.values())


def test_model_config_is_not_mutated():
    cfg = small_cfg("lstm")
    Model(cfg, V)
    assert dataclasses.asdict(cfg) == dataclasses.asdict(small_cfg("lstm"))


def test_backward_can_run_twice_on_one_forward_with_any_scale():
    for tie in (False, True):
        model = make_model("tanh", tie_weights=tie)
        x, y = tokens(12)
        ref = model.backward(model.forward(x, y)).as_dense()
        fwd = model.forward(x, y)
        a = model.backward(fwd, scale=0.25).as_dense()
        b = model.backward(fwd).as_dense()
        c = model.backward(fwd, truncation=2, scale=0.5)
        for k in ref:
            np.testing.assert_allclose(a[k], 0.25 * ref[k], rtol=1e-12, atol=1e-15)
            np.testing.assert_allclose(b[k], ref[k], rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(c["output.b"], 0.5 * ref["output.b"], rtol=1e-12)


def test_embedding_scale_multiplies_only_the_initial_embedding():
    base = ModelConfig(cell="tanh", embedding_size=16, hidden_size=16)
    m1 = Model(base, 50, rng=np.random.default_rng(0))
    m8 = Model(dataclasses.replace(base, embedding_scale=4.0), 50, rng=np.random.default_rng(0))
    np.testing.assert_allclose(m8.params["embedding"], 4.0 * m1.params["embedding"], rtol=1e-6)
    assert np.abs(m8.params["embedding"]).max() <= 4.0 / math.sqrt(16) + 1e-6
    assert np.abs(m8.params["embedding"]).max() > 0.9 * 4.0 / math.sqrt(16)
    for k in m1.params:
        if k != "embedding":
            np.testing.assert_array_equal(m8.params[k], m1.params[k])
