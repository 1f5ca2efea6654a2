"""Gradient diagnostics through depth and time (stacked layers): every layer's lag profile against
finite differences, the cells' input tangent, the step Jacobian of the whole stacked state
against a dense one, the depth x time matrix, and the JSON, CSV, text and plot of
`rnnlm diagnose-gradients` on stacked models."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from click.testing import CliRunner

from helpers import (SHIPPED_CELLS as CELLS, jittered_model, layer_state_fd_norms, random_tokens,
                     stacked_step_jacobian)

from rnnlm_cli.analysis.diagnostics import depth_time, diagnose_model
from rnnlm_cli.analysis.history import history_report
from rnnlm_cli.analysis.jacobians import StepMaps, top_singular_values
from rnnlm_cli.cli import cli
from rnnlm_cli.nn import timeloop
from rnnlm_cli.render import report

V, E, H, T, B = 7, 3, 4, 6, 2


def make_model(cell="tanh", layers=2, seed=0, **kw):
    return jittered_model(cell, V, E, H, seed, num_layers=layers, **kw)


def tokens(seed=1, steps=T, batch=B):
    return random_tokens(V, steps, batch, seed)


# --------------------------------------------------------------------------- per-layer profiles

@pytest.mark.parametrize("cell", CELLS)
def test_every_layers_lag_matrix_equals_finite_differences(cell):
    model = make_model(cell)
    x, y = tokens()
    res = diagnose_model(model, [(x, y)], threshold=1e-3, truncations=[1, 2])
    assert len(res["layers"]) == 2 and [e["layer"] for e in res["layers"]] == [0, 1]
    for layer, pairs in ((0, [(0, 0), (3, 3), (4, 2), (5, 0)]), (1, [(2, 2), (5, 1)])):
        g = np.array(res["layers"][layer]["lag_profile"]["matrix"], dtype=float)
        for t, k in pairs:
            want = layer_state_fd_norms(model, x, y, t, k, layer).mean()
            assert g[t, k] == pytest.approx(want, rel=1e-6), (layer, t, k)
    # the model's fields are the top layer's; the bottom layer's differ
    top = res["layers"][-1]
    np.testing.assert_array_equal(res["lag_profile"]["matrix"], top["lag_profile"]["matrix"])
    assert res["horizon"] == top["horizon"] and res["saturation"] is top["saturation"]
    assert res["layers"][0]["lag_profile"]["raw"] != top["lag_profile"]["raw"]


def test_depth_time_matrix_is_every_layer_on_the_top_layers_lag_zero_scale():
    model = make_model("gru", layers=3)
    x, y = tokens()
    res = diagnose_model(model, [(x, y)], threshold=1e-3, truncations=[2])
    M = np.asarray(res["depth_time"], dtype=float)                        # (L, T)
    assert M.shape == (3, T) and M[2, 0] == 1.0                           # top layer, lag 0: 1 by construction
    top = np.array(res["layers"][2]["lag_profile"]["matrix"], dtype=float)
    for layer in range(3):
        g = np.array(res["layers"][layer]["lag_profile"]["matrix"], dtype=float)
        d = 2
        ts = np.arange(d, T)
        assert M[layer, d] == pytest.approx(np.mean(g[ts, ts - d] / top[ts, ts]))
        assert res["layers"][layer]["attenuation"] == M[layer, 0]
    # the top row is the top layer's own normalised profile
    np.testing.assert_allclose(M[2], res["layers"][2]["lag_profile"]["normalised"], rtol=1e-12)


def test_depth_time_of_a_hand_built_case():
    # g^l(t, k) = a_l * r^(t-k) with the top layer's g(t, t) = 1: M[l, d] = a_l r^d
    r, a = 0.5, [0.25, 1.0]
    t = np.arange(4)
    gs = [a_l * r ** (t[:, None] - t[None, :]) * (t[None, :] <= t[:, None]) for a_l in a]
    M = depth_time(gs, np.ones(4))
    np.testing.assert_allclose(M, [[a_l * r ** d for d in range(4)] for a_l in a])


def test_one_layer_has_one_layer_entry_equal_to_the_model():
    model = jittered_model("lstm", V, E, H, 0)
    res = diagnose_model(model, [tokens()], threshold=1e-3, truncations=[1])
    (only,) = res["layers"]
    for key in ("lag_profile", "decay_rate", "horizon", "max_norm_ratio", "saturation", "lag_contribution"):
        assert only[key] is res[key], key
    assert only["attenuation"] == 1.0 and list(res["depth_time"][0]) == list(res["lag_profile"]["normalised"])
    assert [b["W_h_cosine"] for b in only["truncation_bias"]] == [b["W_h_cosine"] for b in res["truncation_bias"]]


def test_per_layer_truncation_bias_and_lag_contributions_use_that_layers_W_h():
    model = make_model("tanh")
    x, y = tokens()
    res = diagnose_model(model, [(x, y)], threshold=1e-3, truncations=[1, 3])
    full = model.backward(model.forward(x, y))
    win = model.backward(model.forward(x, y), truncation=1)
    for layer in range(2):
        name = model.layer_prefix(layer) + "W_h"
        a, b = win[name].ravel(), full[name].ravel()
        entry = res["layers"][layer]
        assert entry["truncation_bias"][0]["k"] == 1
        assert entry["truncation_bias"][0]["W_h_cosine"] == pytest.approx(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
        assert entry["lag_contribution"]["total_norm"] == pytest.approx(np.linalg.norm(b))
        sigma = np.linalg.norm(model.params[name], 2)
        assert entry["recurrent"]["blocks"][0]["sigma_max"] == pytest.approx(sigma)


# --------------------------------------------------------------------------- the input tangent

def _one_step(cell_name, seed=0):
    model = jittered_model(cell_name, V, E, H, seed)
    cell, lp = model.cell, model.layer_params(0)
    rng = np.random.default_rng(seed + 5)
    xproj = rng.normal(size=(1, B, cell.gates * H))
    state = tuple(rng.uniform(-0.8, 0.8, size=(B, H)) for _ in model.initial_state(B))
    return cell, lp, xproj, state


@pytest.mark.parametrize("cell_name", CELLS)
def test_input_tangent_is_the_exact_transpose_of_the_input_part_of_the_backward(cell_name):
    cell, lp, xproj, state = _one_step(cell_name)
    cache = timeloop.forward_sequence(cell, lp, xproj, state)
    fac = tuple(f[0] for f in cell.backward_factors(cache))                # (B, ...) one position
    rng = np.random.default_rng(3)
    u = rng.normal(size=(B, cell.state_size))
    a = rng.normal(size=(B, cell.gates * H))
    da = np.empty((B, cell.gates * H))
    cell.backward_apply(fac, cell.w_hT(cache), u[:, :H], u[:, H:] if cell.has_c else None, da)
    lhs = np.einsum("bp,bp->", u, cell.input_tangent(fac, a))             # <u, J_x a>
    rhs = np.einsum("bg,bg->", da, a)                                     # <J_x^T u, a>
    assert lhs == pytest.approx(rhs, rel=1e-12)


@pytest.mark.parametrize("cell_name", CELLS)
def test_input_tangent_equals_finite_differences(cell_name):
    cell, lp, xproj, state = _one_step(cell_name, seed=1)
    cache = timeloop.forward_sequence(cell, lp, xproj, state)
    fac = tuple(f[0] for f in cell.backward_factors(cache))
    a = np.random.default_rng(4).normal(size=(B, cell.gates * H))
    eps = 1e-6

    def state_after(xp):
        return np.concatenate(cell.state_at(timeloop.forward_sequence(cell, lp, xp, state), 1), axis=-1)

    fd = (state_after(xproj + eps * a[None]) - state_after(xproj - eps * a[None])) / (2 * eps)
    np.testing.assert_allclose(cell.input_tangent(fac, a), fd, atol=1e-8)


# --------------------------------------------------------------------------- stacked step Jacobians

@pytest.mark.parametrize("cell", CELLS)
def test_stacked_jvp_vjp_and_spectral_norm_equal_the_dense_jacobian(cell):
    model = make_model(cell, layers=2, seed=2)
    x, y = tokens(seed=3, steps=4)
    fwd = model.forward(x, y)
    maps = StepMaps.of_model(model, fwd)
    P = maps.P
    assert P == 2 * model.cell.state_size
    eye = np.eye(P)
    for j in (0, 2, 3):
        J = stacked_step_jacobian(model, x, y, j)                          # (B, P, P) by finite differences
        for b in range(B):
            idx = np.full(P, j * B + b)
            np.testing.assert_allclose(maps.jvp(eye, idx).T, J[b], atol=1e-7)      # columns J e_q
            np.testing.assert_allclose(maps.vjp(eye, idx), J[b], atol=1e-7)        # rows e_p^T J
        # the off-diagonal block: the top layer's state depends on the bottom layer's previous one
        assert np.abs(J[:, P // 2:, :P // 2]).max() > 1e-3
        norms = top_singular_values(lambda v, i: maps.jvp(v, i + j * B), lambda u, i: maps.vjp(u, i + j * B),
                                    B, P, np.random.default_rng(0))
        np.testing.assert_allclose(norms, [np.linalg.norm(J[b], 2) for b in range(B)], rtol=1e-6)


def test_the_jacobian_entry_of_a_stacked_model_is_the_whole_states():
    model = make_model("lstm", layers=3)
    x, y = tokens(steps=5)
    res = diagnose_model(model, [(x, y)], threshold=1e-3, truncations=[1])
    jac = res["jacobian"]
    assert jac["state_size"] == 3 * 2 * H
    J = stacked_step_jacobian(model, x, y, 4)
    dense = [np.linalg.norm(J[b], 2) for b in range(B)]
    assert jac["spectral_norm"]["max"][4] == pytest.approx(max(dense), rel=1e-6)
    assert jac["spectral_norm"]["min"][4] == pytest.approx(min(dense), rel=1e-6)
    top = model.params["cell.2.W_h"]
    assert jac["recurrent"]["blocks"][0]["sigma_max"] == pytest.approx(np.linalg.norm(top[:, :H], 2))


# --------------------------------------------------------------------------- the command

def invoke(*args):
    return CliRunner().invoke(cli, list(map(str, args)), prog_name="rnnlm")


SMALL = ["--set", "model.hidden_size=6", "--set", "model.embedding_size=6", "--set", "diagnose.random_vocab=20",
         "--steps", "8", "--batches", "1", "--batch-size", "2", "--set", "diagnose.truncations=[2]"]


@pytest.fixture
def no_data(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_sweep_over_depth_json_csv_and_text(no_data):
    result = invoke("diagnose-gradients", *SMALL, "--sweep", "model.num_layers=1,2,3", "--format", "json", "-q")
    assert result.exit_code == 0, result.output
    models = json.loads(result.stdout)["models"]
    assert [m["model"]["num_layers"] for m in models] == [1, 2, 3]
    assert [len(m["layers"]) for m in models] == [1, 2, 3]
    assert [len(m["depth_time"]) for m in models] == [1, 2, 3]
    assert all(m["depth_time"][-1][0] == 1 for m in models)
    assert [m["jacobian"]["state_size"] for m in models] == [6, 12, 18]

    result = invoke("diagnose-gradients", *SMALL, "--sweep", "model.num_layers=1,3", "--format", "csv", "-q")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert list(rows[0]) == ["model", "quantity", "i", "j", "value", "layer"]
    three = [r for r in rows if r["model"] == "num_layers=3"]
    # every layer's lag matrix, with its index; the top layer's rows once
    for layer in "012":
        assert sum(r["quantity"] == "grad_norm" and r["layer"] == layer for r in three) == 8 * 9 // 2
    depth = {(r["layer"], r["i"]): float(r["value"]) for r in three if r["quantity"] == "depth_time"}
    assert len(depth) == 3 * 8 and depth[("2", "0")] == 1.0
    assert {r["layer"] for r in three if r["quantity"].startswith("jacobian_")} == {""}
    one = [r for r in rows if r["model"] == "num_layers=1"]
    assert {r["layer"] for r in one if r["quantity"] == "grad_norm"} == {"0"}

    result = invoke("diagnose-gradients", *SMALL, "--set", "model.num_layers=3", "-q")
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "depth x time" in text and "layer 2 (top) |@" in text and "L=3" in text
    assert max(len(line) for line in text.splitlines()) <= 110


def test_plot_of_a_stacked_model(no_data):
    pytest.importorskip("matplotlib")
    result = invoke("diagnose-gradients", *SMALL, "--sweep", "model.cell=tanh,lstm", "--set", "model.num_layers=2",
                    "--plot", "depth.png", "-q")
    assert result.exit_code == 0, result.output
    assert (no_data / "depth.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_depth_values_are_one_error_line(no_data):
    assert invoke("diagnose-gradients", *SMALL, "--set", "model.num_layers=0").exit_code == 2
    result = invoke("diagnose-gradients", *SMALL, "--sweep", "model.num_layers=1,0")
    assert result.exit_code == 2 and result.stderr.startswith("Error:") and len(result.stderr.splitlines()) == 1


# --------------------------------------------------------------------------- rendering

def test_text_heatmap_shades_by_decade():
    text = report.text_heatmap({"top": [1.0, 0.5, 0.05, 0.002], "low": [0.1, 1e-9, 0.0, float("nan")]}, "lag")
    lines = text.splitlines()
    assert lines[0] == "top |" + "".join(c * 3 for c in "@%#*")
    assert lines[1] == "low |" + "".join(c * 3 for c in "% ??")
    assert report.text_heatmap({"a": [1.0, 1e-12]}).splitlines()[0] == "a |" + "@" * 3    # blank: below 1e-8


def test_history_groups_logged_norms_by_layer(tmp_path):
    lines = []
    for i, (a, b) in enumerate([(3.0, 4.0), (6.0, 8.0), (0.0, 1.0)]):
        lines.append({"step": i + 1, "epoch": 1 + i // 2, "grad_norm": 1.0,
                      "param_grad_norms": {"cell.0.W_h": a, "cell.0.W_x": b, "cell.1.W_h": 2.0, "embedding": 9.0}})
    lines.append({"step": 4, "epoch": 2, "grad_norm": 1.0})
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    h = history_report(str(tmp_path))
    assert [e["layer"] for e in h["layers"]] == [0, 1]
    zero = h["layers"][0]
    assert zero["params"] == ["cell.0.W_h", "cell.0.W_x"] and zero["lines"] == 3
    assert zero["p50"] == 5.0 and zero["max"] == 10.0                       # sqrt(3^2 + 4^2), sqrt(6^2 + 8^2)
    assert zero["by_epoch"] == [{"epoch": 1, "lines": 2, "median": 7.5}, {"epoch": 2, "lines": 1, "median": 1.0}]
    assert "per-layer gradient norms" in report.history_text(h)
    one_layer = [{"step": 1, "grad_norm": 1.0, "param_grad_norms": {"cell.W_h": 1.0}}]
    (tmp_path / "metrics.jsonl").write_text(json.dumps(one_layer[0]) + "\n", encoding="utf-8")
    assert history_report(str(tmp_path))["layers"] == []


# --------------------------------------------------------------------------- bad inputs (stacked checkpoints)

def test_a_stacked_checkpoint_is_diagnosed_and_a_depth_that_differs_is_refused(tmp_path):
    from pathlib import Path
    corpus = Path(__file__).resolve().parents[1] / "corpora" / "agreement"
    prep, out = tmp_path / "prep", tmp_path / "run"
    assert invoke("preprocess", "--train", corpus / "train.txt", "--valid", corpus / "valid.txt", "--out", prep,
                  "-q").exit_code == 0
    small = [a for s in ("model.num_layers=2", "model.hidden_size=6", "model.embedding_size=6", "train.batch_size=4",
                         "train.k1=5", "train.max_steps=4", "train.eval_every=2", "train.log_every=1",
                         "train.log_param_norms_every=1") for a in ("--set", s)]
    result = invoke("train", "--set", f"data.prepared={prep}", *small, "--out", out, "-q")
    assert result.exit_code == 0, result.output
    diag = ["--steps", "6", "--batches", "1", "--batch-size", "2"]
    result = invoke("diagnose-gradients", "--checkpoint", out / "best.npz", "--run", out, *diag, "-q")
    assert result.exit_code == 0, result.output
    assert "depth x time" in result.stdout and "per-layer gradient norms" in result.stdout
    before = sorted(p.name for p in out.iterdir())
    result = invoke("diagnose-gradients", "--checkpoint", out / "best.npz", "--set", "model.num_layers=1", *diag)
    assert result.exit_code == 2 and result.stderr.startswith("Error:") and len(result.stderr.splitlines()) == 1
    assert "num_layers" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == before


def test_a_layers_vanishing_verdict_needs_every_layer_above_it_below_the_bound():
    model = make_model("tanh", layers=3)
    for layer, scale in enumerate((0.5, 3.0, 0.5)):        # the middle layer far above 1/gamma = 1
        W = model.params[model.layer_prefix(layer) + "W_h"]
        W *= scale / np.linalg.norm(W, 2)
    res = diagnose_model(model, [tokens()], threshold=1e-3, truncations=[1])
    verdicts = [e["recurrent"]["verdict"] for e in res["layers"]]
    below = [e["recurrent"]["blocks"][0]["below_bound"] for e in res["layers"]]
    assert below == [True, False, True]
    # layer 0's paths climb through layer 1's recurrence: not certain; the top's stay in the top layer
    assert verdicts == ["not excluded", "not excluded", "vanishing guaranteed"]
    assert res["jacobian"]["recurrent"]["verdict"] == "vanishing guaranteed"


def test_depth_sentences_follow_from_the_matrix():
    from rnnlm_cli.render.docs import depth_sentences

    def model(label, cell, M):
        return {"label": label, "model": {"cell": cell}, "layers": [{}] * len(M), "depth_time": M}

    text = depth_sentences([model("a", "lstm", [[0.02, 0.05, 0.04], [1, 0.3, 0.25]]),
                            model("b", "tanh", [[0.5, 0.45, 0.4], [1, 0.5, 0.2]]),
                            model("one", "gru", [[1, 0.5, 0.2]])])
    flat = " ".join(text.split())
    assert "is 0.02 of the top layer's and 1 steps back (top layer, lag 1) 0.3: it vanishes 15x faster along " \
           "depth than along time" in flat
    assert "(b) the gradient norm 1 layers down (bottom layer, lag 0) is 0.5" in flat and "about as fast" in flat
    assert "in the lstm model the top layer holds the most gradient at every lag" in flat
    assert "in the tanh model the bottom layer holds more gradient than the top one from lag 2 on" in flat
    assert "grows" not in flat.split("tanh model the bottom")[1] and "gru" not in flat   # one layer: not described
    assert all(len(line) <= 100 for line in text.splitlines())
