"""Stacked recurrent layers: parameter layout, the forward against a from-scratch numpy oracle,
exactness of every BPTT mode through depth, carried state, dropout between layers, generation
and evaluation, checkpoints, and the bad inputs of model.num_layers / model.dropout_between."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest
from click.testing import CliRunner

from rnnlm_cli.cli import cli
from rnnlm_cli.config import load_config
from rnnlm_cli.nn.model import Model
from rnnlm_cli.train import checkpoint
from rnnlm_cli.train.trainer import train


CELLS = ("tanh", "relu", "gru", "lstm")


def model_of(cell="tanh", layers=2, E=5, H=6, V=11, seed=0, **extra):
    cfg = load_config(None).model
    cfg = dataclasses.replace(cfg, cell=cell, num_layers=layers, embedding_size=E, hidden_size=H, **extra)
    return Model(cfg, V, dtype=np.float64, rng=np.random.default_rng(seed))


def tokens(T=7, B=3, V=11, seed=1):
    rng = np.random.default_rng(seed)
    return rng.integers(0, V, size=(T, B)), rng.integers(0, V, size=(T, B))


# --------------------------------------------------------------------------- layout

def test_one_layer_keeps_the_names_of_before():
    assert sorted(model_of(layers=1).params) == ["cell.W_h", "cell.W_x", "cell.b", "embedding", "output.W", "output.b"]


@pytest.mark.parametrize("cell, G", [("tanh", 1), ("gru", 3), ("lstm", 4)])
def test_stacked_names_and_shapes(cell, G):
    m = model_of(cell, layers=3, E=5, H=6)
    for layer in range(3):
        assert m.params[f"cell.{layer}.W_x"].shape == ((5 if layer == 0 else 6), G * 6)
        assert m.params[f"cell.{layer}.W_h"].shape == (6, G * 6)
        assert m.params[f"cell.{layer}.b"].shape == (G * 6,)
    assert not any(k.startswith("cell.W") for k in m.params)
    assert len(m.initial_state(4)) == 3 * (2 if cell == "lstm" else 1)


# --------------------------------------------------------------------------- the forward: an oracle

def oracle_loss(m: Model, x, y) -> float:
    """The stacked tanh RNN of the equations, written out with explicit loops over t and l."""
    p, L, H = m.params, m.L, m.H
    T, B = x.shape
    s = np.zeros((L, B, H))
    loss = 0.0
    for t in range(T):
        inp = p["embedding"][x[t]]
        for layer in range(L):
            pre = f"cell.{layer}."
            s[layer] = np.tanh(inp @ p[pre + "W_x"] + s[layer] @ p[pre + "W_h"] + p[pre + "b"])
            inp = s[layer]
        logits = inp @ p["output.W"] + p["output.b"]
        logits -= logits.max(axis=1, keepdims=True)
        logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        loss -= logp[np.arange(B), y[t]].sum()
    return loss


def test_forward_equals_the_written_out_equations():
    m = model_of("tanh", layers=3)
    x, y = tokens()
    assert m.forward(x, y).loss == pytest.approx(oracle_loss(m, x, y), rel=1e-12)


# --------------------------------------------------------------------------- BPTT through depth

@pytest.mark.parametrize("cell", CELLS)
def test_window_as_long_as_the_sequence_is_full_bptt(cell):
    m = model_of(cell, layers=3)
    x, y = tokens()
    full = m.backward(m.forward(x, y)).as_dense()
    window = m.backward(m.forward(x, y), truncation=x.shape[0]).as_dense()
    for k in full:
        np.testing.assert_allclose(window[k], full[k], rtol=1e-10, atol=1e-13, err_msg=k)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("k", [1, 2, 4])
def test_window_equals_the_sum_of_short_full_recursions(cell, k):
    """Window k is, per output t, the full recursion over the last k steps from the saved state
    of every layer before them (a constant): summing those short recursions' gradients, one
    per t, is an independent way to the same gradient."""
    m = model_of(cell, layers=3)
    x, y = tokens(T=6)
    T, B = x.shape
    base = m.forward(x, y)
    want = None
    for t in range(T):
        start = max(0, t - k + 1)
        mask = np.zeros((t + 1 - start, B))
        mask[-1] = 1.0                                             # score output t only
        fwd = m.forward(x[start:t + 1], y[start:t + 1], state=base.state_after(start), mask=mask)
        g = m.backward(fwd).as_dense()
        want = g if want is None else {n: want[n] + v for n, v in g.items()}
    got = m.backward(m.forward(x, y), truncation=k).as_dense()
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-9, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("cell", CELLS)
def test_on_lag_visits_every_layer_and_lag(cell):
    m = model_of(cell, layers=3)
    x, y = tokens(T=5)
    seen = []
    m.backward(m.forward(x, y), truncation=3, on_lag=lambda layer, d, dh, dc, da: seen.append((layer, d, dh.shape[0])))
    assert seen == [(layer, d, 5 - d) for d in range(3) for layer in (2, 1, 0)]


@pytest.mark.parametrize("cell", CELLS)
def test_carried_state_continues_every_layer(cell):
    """Two chunks with the state carried equal one forward over both (stream mode's premise)."""
    m = model_of(cell, layers=3)
    x, y = tokens(T=8)
    whole = m.forward(x, y)
    first = m.forward(x[:3], y[:3])
    second = m.forward(x[3:], y[3:], state=first.state)
    np.testing.assert_allclose(np.concatenate([first.nll, second.nll]), whole.nll, rtol=1e-12)
    for a, b in zip(whole.state_after(3), first.state):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("cell", CELLS)
def test_generation_steps_equal_the_forward(cell):
    m = model_of(cell, layers=2)
    x, y = tokens(T=5, B=2)
    logp, _ = m.log_probs(x, y)
    state = None
    for t in range(5):
        logits, state = m.step_logits(x[t], state)
        z = logits - logits.max(axis=1, keepdims=True)
        lp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        np.testing.assert_allclose(lp[np.arange(2), y[t]], logp[t], rtol=1e-10)


# --------------------------------------------------------------------------- dropout between layers

def test_dropout_between_trains_only_and_its_gradient_is_exact():
    m = model_of("lstm", layers=2, dropout_between=0.5)
    x, y = tokens()
    evaluation = m.forward(x, y)
    assert all(mask is None for mask in evaluation.between_masks)
    trained = m.forward(x, y, train=True, rng=np.random.default_rng(3))
    mask = trained.between_masks[1]
    assert set(np.unique(mask)) == {0.0, 2.0}                      # inverted dropout, p = 0.5
    assert trained.loss != evaluation.loss

    def loss():                                                    # the same masks at every evaluation
        return m.forward(x, y, train=True, rng=np.random.default_rng(3)).loss

    g = m.backward(m.forward(x, y, train=True, rng=np.random.default_rng(3))).as_dense()
    rng = np.random.default_rng(0)
    for name in ("cell.0.W_x", "cell.0.W_h", "cell.1.W_x", "embedding"):
        flat, grad = m.params[name].reshape(-1), g[name].reshape(-1)
        for i in rng.choice(flat.size, 4, replace=False):
            keep = flat[i]
            flat[i] = keep + 1e-6
            fp = loss()
            flat[i] = keep - 1e-6
            fm = loss()
            flat[i] = keep
            assert (fp - fm) / 2e-6 == pytest.approx(grad[i], rel=1e-6, abs=2e-8), name   # rounding: ~1e-16 * 50 / 1e-6


def test_dropout_between_draws_nothing_with_one_layer():
    """One layer has no between-layer positions: the generator is left as without the option."""
    x, y = tokens()
    a = model_of("tanh", layers=1, dropout_between=0.5, dropout_output=0.2)
    b = model_of("tanh", layers=1, dropout_output=0.2)
    fa = a.forward(x, y, train=True, rng=np.random.default_rng(4))
    fb = b.forward(x, y, train=True, rng=np.random.default_rng(4))
    assert fa.loss == fb.loss


# --------------------------------------------------------------------------- training, checkpoints, readers

def config(tmp_path, *sets, out="run"):
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    return load_config(None, [f"data.train={root / 'corpora/agreement/train.txt'}",
                              f"data.valid={root / 'corpora/agreement/valid.txt'}",
                              f"data.prepared={tmp_path / 'p'}", f"train.out={tmp_path / out}",
                              "model.hidden_size=12", "model.embedding_size=8", "train.batch_size=4",
                              "train.k1=6", "train.log_every=1", "model.num_layers=2", *sets])


@pytest.mark.parametrize("mode, extra", [
    ("stream", ["model.cell=lstm", "train.k2=9", "model.dropout_between=0.3", "train.state_reset=0.2"]),
    ("window", ["model.cell=gru", "train.window=3"]),
    ("full", ["model.cell=tanh", "model.dropout_between=0.2"]),
])
def test_stacked_resume_is_bit_exact(tmp_path, mode, extra):
    common = [f"train.bptt={mode}", "train.epochs=1", "train.eval_every=4", *extra]
    straight = config(tmp_path, *common, "train.max_steps=14", out="straight")
    train(straight)
    train(config(tmp_path, *common, "train.max_steps=7", out="halves"))
    rest = config(tmp_path, *common, "train.max_steps=14", out="halves")
    train(rest, resume=True)
    a = checkpoint.read(os.path.join(straight.train.out, "checkpoint.npz"))
    b = checkpoint.read(os.path.join(rest.train.out, "checkpoint.npz"))
    assert "cell.1.W_h" in a[0]
    for part in (0, 1):
        assert a[part].keys() == b[part].keys()
        for name in a[part]:
            np.testing.assert_array_equal(a[part][name], b[part][name], err_msg=name)
    np.testing.assert_equal(a[2], b[2])                            # every layer's carried state


def test_readers_accept_a_stacked_checkpoint(tmp_path):
    cfg = config(tmp_path, "model.cell=lstm", "train.max_steps=6", "train.eval_every=3", "model.num_layers=3")
    train(cfg)
    ck = os.path.join(cfg.train.out, "best.npz")
    runner = CliRunner()
    for argv in (["evaluate", "--checkpoint", ck, "--split", "valid", "--format", "json"],
                 ["generate", "--checkpoint", ck, "--n", "2", "--max-tokens", "5", "--seed", "1"],
                 ["probe", "--checkpoint", ck, "--format", "json"]):
        result = runner.invoke(cli, argv)
        assert result.exit_code == 0, (argv, result.output)


def test_memory_estimate_counts_every_layer():
    """Each layer beyond the first adds W_x (H, GH), W_h (H, GH) and biases (2 GH) to the
    parameters, and its caches to the batch, by the documented shapes."""
    from rnnlm_cli.config import batch_values, model_values

    V, E, H, G, T, B = 100, 8, 6, 4, 5, 3
    assert model_values(V, E, H, G, 3) - model_values(V, E, H, G, 1) == 2 * (2 * H * G * H + 2 * G * H)
    assert batch_values(T, B, V, E, H, G, 2) - batch_values(T, B, V, E, H, G, 1) == T * B * (3 * G * H + 3 * H)
    m = model_of("lstm", layers=3, E=E, H=H, V=V)
    # an upper bound: it counts a second bias slot per gate (the GRU's b_h) that the LSTM lacks
    assert m.num_params() == model_values(V, E, H, G, 3) - 3 * G * H
