"""BPTT engine: window vs full, stream vs full, the lag hook, state gradients, state carrying."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import SHIPPED_CELLS as CELLS, jittered_model, random_state, random_tokens, state_gradients

from rnnlm_cli.data.batching import Batch, StreamBatches
from rnnlm_cli.nn.timeloop import backward_full, backward_window
from rnnlm_cli.train.step import batch_gradients
from rnnlm_cli.nn.gradients import Gradients

V, H, T, B = 8, 4, 6, 2


def make_model(cell="tanh", seed=0, **kw):
    return jittered_model(cell, V, 3, H, seed, **kw)


def data(seed=1):
    return random_tokens(V, T, B, seed)


def assert_grads_close(a, b, rtol=1e-12, atol=1e-14):
    assert set(a) == set(b)
    a, b = (g.as_dense() if isinstance(g, Gradients) else g for g in (a, b))
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=rtol, atol=atol, err_msg=k)


@pytest.mark.parametrize("cell", CELLS)
def test_window_at_least_T_equals_full(cell):
    model = make_model(cell)
    x, y = data()
    state = random_state(model, B)
    fwd = model.forward(x, y, state)
    full = model.backward(fwd)
    for k in (T, T + 3):
        assert_grads_close(model.backward(fwd, truncation=k), full)


@pytest.mark.parametrize("cell", ["tanh", "lstm"])
def test_window_grows_towards_full_and_k1_has_no_recurrent_path(cell):
    model = make_model(cell)
    x, y = data(3)
    fwd = model.forward(x, y)
    lags = []
    model.backward(fwd, truncation=1, on_lag=lambda layer, d, dh, dc, da: lags.append(d))
    assert lags == [0]
    # k = 1: dW_h only from h_{t-1}^T da_t with da_t from E_t alone (no step further back)
    g1 = model.backward(fwd, truncation=1)
    g_full = model.backward(fwd)
    assert not np.allclose(g1["cell.W_h"], g_full["cell.W_h"])
    # the lag contributions add up to the window gradient
    seen = []
    model.backward(fwd, truncation=4, on_lag=lambda layer, d, dh, dc, da: seen.append((d, dh.shape, da.shape)))
    assert [s[0] for s in seen] == [0, 1, 2, 3]
    assert [s[1][0] for s in seen] == [T, T - 1, T - 2, T - 3]


@pytest.mark.parametrize("cell", ["tanh", "gru", "lstm"])
def test_lag_contributions_sum_to_the_window_dWh(cell):
    model = make_model(cell)
    x, y = data(4)
    fwd = model.forward(x, y)
    k = 3
    total = np.zeros_like(model.params["cell.W_h"])

    def on_lag(layer, d, dh, dc, da):
        n = T - d
        hprev = fwd.cache.arrays["h_prev"][:n].reshape(n * B, H)
        dah = model.cell.recurrent_da(fwd.cache[0:n], da).reshape(n * B, -1)
        total[...] += hprev.T @ dah

    g = model.backward(fwd, truncation=k, on_lag=on_lag)
    np.testing.assert_allclose(total, g["cell.W_h"], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("cell", ["tanh", "lstm"])
def test_on_lag_norms_equal_finite_differences_of_E_t_wrt_s_k(cell):
    """dh_lag[i] = dE_{i+d}/dh_i: checked by re-running E_t from a perturbed s_k."""
    model = make_model(cell, seed=3)
    x, y = data(5)
    state = random_state(model, B, 6)
    fwd = model.forward(x, y, state)
    record = {}
    model.backward(fwd, truncation=T,
                   on_lag=lambda layer, d, dh, dc, da: record.__setitem__(d, (dh.copy(), None if dc is None else dc.copy())))

    def E_t_from(k, t, s):
        """E_t (summed over the batch) as a function of the state s_k (after input k)."""
        mask = np.zeros((t - k, B))
        mask[-1] = 1.0
        return model.forward(x[k + 1:t + 1], y[k + 1:t + 1], s, mask=mask).loss

    eps = 1e-6
    for k, t in ((0, 3), (1, 5), (2, 2 + 1), (0, 5)):
        d = t - k
        s_k = fwd.state_after(k + 1)
        for which in range(len(s_k)):
            num = np.zeros((B, H))
            for b, j in np.ndindex(B, H):
                up = [a.copy() for a in s_k]
                dn = [a.copy() for a in s_k]
                up[which][b, j] += eps
                dn[which][b, j] -= eps
                num[b, j] = (E_t_from(k, t, tuple(up)) - E_t_from(k, t, tuple(dn))) / (2 * eps)
            analytic = record[d][which][k]
            np.testing.assert_allclose(analytic, num, rtol=1e-6, atol=1e-9)
            assert np.linalg.norm(analytic) == pytest.approx(np.linalg.norm(num), rel=1e-6)


@pytest.mark.parametrize("cell", ["tanh", "lstm"])
def test_state_gradients_of_the_recursion(cell):
    """dE/ds for the initial state and a middle state (the sum over lags of the window backward
    with k = T, tests/helpers.py) against differences of the loss."""
    model = make_model(cell, seed=4)
    x, y = data(7)
    state = random_state(model, B, 8)
    fwd = model.forward(x, y, state)
    dh, dc, dh0, dc0 = state_gradients(model, fwd)
    assert dh.shape == (T, B, H) and (dc is None) == (cell != "lstm")
    eps = 1e-6
    atol = 1e-8        # rounding noise of a central difference: ~1e-16 |E| / eps with |E| ~ 20
    # the initial state's gradient against differences of the whole loss
    for which, analytic in ((0, dh0), (1, dc0)):
        if which >= len(state):
            continue
        num = np.zeros((B, H))
        for b, j in np.ndindex(B, H):
            up = [a.copy() for a in state]
            dn = [a.copy() for a in state]
            up[which][b, j] += eps
            dn[which][b, j] -= eps
            num[b, j] = (model.forward(x, y, tuple(up)).loss - model.forward(x, y, tuple(dn)).loss) / (2 * eps)
        np.testing.assert_allclose(analytic, num, rtol=1e-6, atol=atol)
    # dE/dh_2: differences of the loss of outputs 2.. (the part that depends on h_2), run from s_2
    s2 = fwd.state_after(3)
    num = np.zeros((B, H))
    for b, j in np.ndindex(B, H):
        up = [a.copy() for a in s2]
        dn = [a.copy() for a in s2]
        up[0][b, j] += eps
        dn[0][b, j] -= eps

        def rest(s):
            # E_2 through the output layer plus E_3.. through the recursion
            h = s[0]
            logits = model.output.logits(model.params, h)
            lse = np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1)) + logits.max(1)
            e2 = float((lse - logits[np.arange(B), y[2]]).sum())
            return e2 + model.forward(x[3:], y[3:], s).loss

        num[b, j] = (rest(up) - rest(dn)) / (2 * eps)
    np.testing.assert_allclose(dh[2], num, rtol=1e-6, atol=atol)


def test_backward_full_updates_dhs_in_place_and_window_leaves_it():
    model = make_model("gru")
    x, y = data(9)
    fwd = model.forward(x, y)
    dhs = np.random.default_rng(0).standard_normal((T, B, H))
    keep = dhs.copy()
    backward_window([model.cell], [fwd.cache], dhs, 3)
    np.testing.assert_array_equal(dhs, keep)
    da_full = backward_full(model.cell, fwd.cache, dhs)
    da_win = backward_window([model.cell], [fwd.cache], keep, T)[0]
    np.testing.assert_allclose(da_full, da_win, rtol=1e-12, atol=1e-15)
    assert not np.array_equal(dhs, keep)            # now the total gradients


@pytest.mark.parametrize("cell", ["tanh", "lstm"])
def test_stream_one_chunk_equals_full(cell):
    model = make_model(cell)
    stream = np.random.default_rng(10).integers(0, V, size=B * (T + 1))
    batches = StreamBatches(stream, B, k1=T, k2=T)
    assert len(batches) == 1
    batch = batches.batch(0)
    fwd, grads, nxt = batch_gradients(model, batch, None, "stream", normalize="sum")
    ref_fwd = model.forward(batch.x, batch.y)
    assert fwd.loss == pytest.approx(ref_fwd.loss, rel=1e-14)
    assert_grads_close(grads, model.backward(ref_fwd))
    for a, b in zip(nxt, ref_fwd.state):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("cell", ["tanh", "lstm"])
def test_stream_windows_start_from_the_states_of_one_continuous_pass(cell):
    """With k2 > k1 every window starts from the state a continuous forward had there."""
    model = make_model(cell)
    stream = np.random.default_rng(11).integers(0, V, size=B * 30)
    batches = StreamBatches(stream, B, k1=4, k2=7)
    whole = model.forward(batches.data[:-1], batches.data[1:])
    state, total = None, 0.0
    for batch in batches:
        if state is not None:
            ref = whole.state_after(batch.position)
            for a, b in zip(state, ref):
                np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
        fwd, _, state = batch_gradients(model, batch, state, "stream")
        total += fwd.loss
    assert total == pytest.approx(whole.loss, rel=1e-12)    # every output scored exactly once


def test_stream_mode_gradient_reaches_k2_steps_back():
    model = make_model("tanh")
    stream = np.random.default_rng(12).integers(0, V, size=B * 20)
    b2 = StreamBatches(stream, B, k1=3, k2=6).batch(3)
    assert b2.loss_start == 3 and len(b2.x) == 6
    fwd_short = model.forward(b2.x[3:], b2.y[3:], None)
    state = tuple(np.zeros((B, H)) for _ in range(1))
    fwd, g, _ = batch_gradients(model, b2, state, "stream", normalize="sum")
    g_short = model.backward(fwd_short)
    assert fwd.count == fwd_short.count == 3 * B
    # the first inputs of the window get embedding gradient only through the k2 extension
    first = set(b2.x[:3].ravel()) - set(b2.x[3:].ravel())
    for tok in first:
        assert np.abs(g.dense("embedding")[tok]).sum() > 0
        assert np.abs(g_short.dense("embedding")[tok]).sum() == 0


def test_window_mode_batch_and_full_mode_batch():
    model = make_model("gru")
    x, y = data(13)
    batch = Batch(x=x, y=y, mask=None, loss_start=0, carry=T, index=0)
    fwd, g, nxt = batch_gradients(model, batch, random_state(model, B), "window", window=2, normalize="sum")
    ref = model.backward(model.forward(x, y, random_state(model, B)), truncation=2)
    assert_grads_close(g, ref)
    assert nxt is not None
    mask = np.ones((T, B))
    mask[4:, 1] = 0
    batch = Batch(x=x, y=y, mask=mask, loss_start=0, carry=T, index=0)
    fwd, g, nxt = batch_gradients(model, batch, random_state(model, B), "full")
    assert nxt is None
    ref_fwd = model.forward(x, y, None, mask=mask)       # full mode ignores the given state
    assert fwd.loss == pytest.approx(ref_fwd.loss)
    assert_grads_close(g, {k: v / ref_fwd.count for k, v in model.backward(ref_fwd).as_dense().items()})
    with pytest.raises(ValueError):
        batch_gradients(model, batch, None, "nonsense")
