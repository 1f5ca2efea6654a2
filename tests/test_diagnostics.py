"""Gradient diagnostics: per-step norms against finite differences, exact known cases,
Jacobians, and the `diagnose-gradients` command (the training history: test_history.py)."""

from __future__ import annotations

import builtins
import csv
import io
import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from helpers import (SHIPPED_CELLS as CELLS, jittered_model, layer_state_fd_norms, random_tokens, spectral_norms,
                     step_jacobian)

from rnnlm_cli import grid
from rnnlm_cli.analysis import diagnostics
from rnnlm_cli.cli import cli
from rnnlm_cli.config import ModelConfig, load_config
from rnnlm_cli.analysis.diagnostics import LagRecorder, Spec, decay_fit, diagnose, diagnose_model
from rnnlm_cli.nn.model import Model

V, E, H, T, B = 7, 3, 4, 6, 2


def make_model(cell="tanh", seed=0, **kw):
    return jittered_model(cell, V, E, H, seed, **kw)


def tokens(seed=1, steps=T, batch=B):
    return random_tokens(V, steps, batch, seed)


# --------------------------------------------------------------------------- per-step norms

@pytest.mark.parametrize("cell", CELLS)
def test_lag_matrix_equals_finite_differences_of_E_t_wrt_s_k(cell):
    model = make_model(cell)
    x, y = tokens()
    res = diagnose_model(model, [(x, y)], threshold=1e-3, truncations=[1, 2])
    g = np.array(res["lag_profile"]["matrix"], dtype=float)
    for t, k in [(0, 0), (3, 3), (3, 2), (5, 1), (5, 0), (4, 2)]:
        want = layer_state_fd_norms(model, x, y, t, k, layer=0).mean()
        assert g[t, k] == pytest.approx(want, rel=1e-6)
    assert np.isnan(g[1, 4])                                        # k > t: no dependence
    # profiles from the matrix: raw mean over t of g(t, t-d); normalised per t first
    d = 2
    ts = np.arange(d, T)
    assert res["lag_profile"]["raw"][d] == pytest.approx(g[ts, ts - d].mean())
    assert res["lag_profile"]["normalised"][d] == pytest.approx((g[ts, ts - d] / g[ts, ts]).mean())


def test_lstm_reports_h_and_c_and_their_state_norm():
    model = make_model("lstm")
    x, y = tokens()
    prof = diagnose_model(model, [(x, y)], 1e-3, [1])["lag_profile"]
    gh, gc, gs = (np.nan_to_num(np.array(m, dtype=float)) for m in
                  (prof["h"]["matrix"], prof["c"]["matrix"], prof["matrix"]))
    assert np.all(gc[np.arange(T), np.arange(T)] == 0)              # E_t sees c_t only through h_t
    assert np.all(gs >= np.maximum(gh, gc) - 1e-15) and np.all(gs <= gh + gc + 1e-15)


# --------------------------------------------------------------------------- exact cases

@pytest.mark.parametrize("a", [0.8, 1.0])
def test_relu_identity_profile_is_exactly_a_to_the_d(a):
    cfg = ModelConfig(cell="relu", embedding_size=E, hidden_size=H, recurrent_init="identity", recurrent_scale=a)
    model = Model(cfg, V, dtype=np.float64, rng=np.random.default_rng(0))
    model.params["cell.b"] += 5.0                                    # pre-activations stay positive
    steps = 12
    res = diagnose_model(model, [tokens(steps=steps)], threshold=1e-3, truncations=[1, 4])
    assert res["saturation"]["relu_zero"]["mean"] == 0
    d = np.arange(steps)
    np.testing.assert_allclose(res["lag_profile"]["normalised"], a ** d, rtol=1e-12)
    assert res["jacobian"]["overall"]["max"] == pytest.approx(a, rel=1e-12)
    assert res["jacobian"]["products"][-1]["mean"] == pytest.approx(a ** steps, rel=1e-10)
    if a == 1.0:                                                      # the IRNN keeps the norm
        assert abs(res["decay_rate"]) < 1e-12 and res["half_life"] is None
        assert res["horizon"] == steps - 1 and res["horizon_is_lower_bound"]
        assert res["max_norm_ratio"] == pytest.approx(1.0)
    else:
        assert res["decay_rate"] == pytest.approx(math.log(a), rel=1e-10)
        assert res["half_life"] == pytest.approx(math.log(2) / -math.log(a), rel=1e-10)


@pytest.mark.parametrize("cell", CELLS)
def test_truncation_T_matches_full_bptt_and_short_ones_do_not(cell):
    model = make_model(cell)
    res = diagnose_model(model, [tokens(), tokens(seed=2)], threshold=1e-3, truncations=[1, 3, 99])
    bias = {b["k"]: b for b in res["truncation_bias"]}
    assert sorted(bias) == [1, 3, T]                                   # k >= T is only T itself
    for key in ("cosine", "norm_ratio", "W_h_cosine", "W_h_norm_ratio"):
        assert bias[T][key] == pytest.approx(1.0, abs=1e-12)
    assert bias[1]["W_h_cosine"] < 1 - 1e-6


@pytest.mark.parametrize("cell", CELLS)
def test_lag_contributions_sum_to_dWh(cell):
    model = make_model(cell)
    x, y = tokens()
    fwd = model.forward(x, y)
    rec = LagRecorder(model.cell, T)
    rec.cache = fwd.cache
    window = model.backward(fwd, truncation=T, on_lag=rec)["cell.W_h"]
    full = model.backward(model.forward(x, y))["cell.W_h"]
    np.testing.assert_allclose(rec.contrib.sum(axis=0), full, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(window, full, rtol=1e-10, atol=1e-12)
    assert np.all(rec.contrib[T - 1] == 0)                              # lag T-1 meets h_{-1} = 0
    res = diagnose_model(model, [(x, y)], 1e-3, [1])["lag_contribution"]
    assert res["total_norm"] == pytest.approx(np.linalg.norm(full))
    np.testing.assert_allclose(res["norm"], np.linalg.norm(rec.contrib.reshape(T, -1), axis=1))


def test_tanh_jacobian_is_diag_one_minus_s2_times_Wh_transposed():
    model = make_model("tanh")
    x, y = tokens()
    fwd = model.forward(x, y)
    W = model.params["cell.W_h"]
    res = diagnose_model(model, [(x, y)], 1e-3, [1])["jacobian"]
    for j in range(T):
        J = step_jacobian(model.cell, fwd.cache, j)
        s = fwd.hs[j]                                                   # (B, H)
        by_hand = np.stack([np.diag(1 - s[b] ** 2) @ W.T for b in range(B)])
        np.testing.assert_allclose(J, by_hand, rtol=1e-12, atol=1e-15)
        norms = [np.linalg.norm(by_hand[b], 2) for b in range(B)]
        np.testing.assert_allclose(spectral_norms(J), norms, rtol=1e-10)
        assert res["spectral_norm"]["mean"][j] == pytest.approx(np.mean(norms), rel=1e-10)
        assert res["spectral_norm"]["max"][j] == pytest.approx(max(norms), rel=1e-10)
    prod = [{p["span"]: p for p in res["products"]}[s]["mean"] for s in (1, 2, 4, T)]
    assert prod[0] == pytest.approx(res["spectral_norm"]["mean"][-1])


def test_recurrent_bound_verdicts():
    small = Model(ModelConfig(cell="tanh", hidden_size=H, embedding_size=E, recurrent_scale=0.5), V,
                  dtype=np.float64)
    rb = diagnostics.recurrent_bound(small.cell, small.params["cell.W_h"])
    assert rb["blocks"][0]["sigma_max"] == pytest.approx(np.linalg.norm(small.params["cell.W_h"], 2))
    assert rb["blocks"][0]["sigma_max"] < 1 and rb["verdict"] == "vanishing guaranteed"
    large = Model(ModelConfig(cell="tanh", hidden_size=H, embedding_size=E, recurrent_scale=3), V)
    assert diagnostics.recurrent_bound(large.cell, large.params["cell.W_h"])["verdict"] == "not excluded"
    lstm = Model(ModelConfig(cell="lstm", hidden_size=H, embedding_size=E, recurrent_scale=0.1), V)
    rb = diagnostics.recurrent_bound(lstm.cell, lstm.params["cell.W_h"])
    assert [(b["block"], b["gamma"], b["bound"]) for b in rb["blocks"]] == [
        ("i", 0.25, 4.0), ("f", 0.25, 4.0), ("g", 1.0, 1.0), ("o", 0.25, 4.0)]
    assert all(b["below_bound"] for b in rb["blocks"]) and rb["verdict"] == "not excluded" and not rb["applies"]
    gru = Model(ModelConfig(cell="gru", hidden_size=H, embedding_size=E), V)
    rb = diagnostics.recurrent_bound(gru.cell, gru.params["cell.W_h"])
    # |sigmoid'| <= 1/4 on the r and z blocks, |tanh'| <= 1 on the candidate block
    assert [(b["block"], b["gamma"]) for b in rb["blocks"]] == [("r", 0.25), ("z", 0.25), ("n", 1.0)]
    W = gru.params["cell.W_h"]
    for k, b in enumerate(rb["blocks"]):
        assert b["sigma_max"] == pytest.approx(np.linalg.norm(W[:, k * H:(k + 1) * H], 2))
    assert not rb["applies"]
    relu = Model(ModelConfig(cell="relu", hidden_size=H, embedding_size=E, recurrent_scale=0.5), V)
    rb = diagnostics.recurrent_bound(relu.cell, relu.params["cell.W_h"])
    assert rb["applies"] and [b["block"] for b in rb["blocks"]] == ["W_h"] and rb["blocks"][0]["gamma"] == 1.0


def test_saturation_is_read_from_the_forward_cache():
    model = make_model("tanh", init_scale=8.0)
    x, y = tokens()
    sat = diagnose_model(model, [(x, y)], 1e-3, [1])["saturation"]
    want = (np.abs(model.forward(x, y).hs) > 0.99).mean(axis=(1, 2))
    np.testing.assert_allclose(sat["tanh"]["per_step"], want)
    assert sat["tanh"]["mean"] > 0.2 and list(sat) == ["tanh"]
    gru = diagnose_model(make_model("gru"), [(x, y)], 1e-3, [1])["saturation"]
    assert set(gru) == {"tanh", "sigmoid"} and gru["sigmoid"]["units"] == ["r", "z"]
    lstm = diagnose_model(make_model("lstm"), [(x, y)], 1e-3, [1])["saturation"]
    assert lstm["sigmoid"]["units"] == ["i", "f", "o"] and lstm["tanh"]["units"] == ["g", "tanh(c)"]
    relu_model = make_model("relu")
    relu = diagnose_model(relu_model, [(x, y)], 1e-3, [1])["saturation"]
    want = (relu_model.forward(x, y).hs == 0).mean(axis=(1, 2))          # ReLU units exactly 0
    np.testing.assert_allclose(relu["relu_zero"]["per_step"], want)
    assert list(relu) == ["relu_zero"]


def test_decay_fit():
    d = np.arange(20)
    fit = decay_fit(0.5 ** d, threshold=1e-3)
    assert fit["decay_rate"] == pytest.approx(math.log(0.5))
    assert fit["half_life"] == pytest.approx(1.0)
    assert fit["horizon"] == 9 and not fit["horizon_is_lower_bound"]        # 0.5^10 < 1e-3 < 0.5^9
    grow = decay_fit(1.1 ** d, threshold=1e-3)
    assert grow["decay_rate"] > 0 and grow["half_life"] is None and grow["horizon_is_lower_bound"]
    with_zero = decay_fit([1.0, 0.1, 0.0, float("nan")], threshold=1e-3)   # fit over finite > 0 only
    assert with_zero["decay_rate"] == pytest.approx(math.log(0.1)) and with_zero["horizon"] == 1


def test_sweep_parsing():
    assert grid.parse_sweep("model.cell=tanh,gru") == ("model.cell", ["tanh", "gru"])
    assert grid.parse_sweep("diagnose.truncations=[1,2],[4]") == ("diagnose.truncations", ["[1,2]", "[4]"])
    points = grid.expand_sweeps(["model.cell=tanh,gru", "model.hidden_size=8,16"])
    assert [g[0] for g in points] == ["cell=tanh hidden_size=8", "cell=tanh hidden_size=16",
                                    "cell=gru hidden_size=8", "cell=gru hidden_size=16"]
    for bad in ("model.cell", "cell=tanh", "model.cell=", "model.cell=tanh,,gru", "model.cell=[1,2"):
        with pytest.raises(diagnostics.ConfigError, match="--sweep expects"):
            grid.parse_sweep(bad)


def test_diagnose_random_tokens_when_there_is_no_prepared_data(tmp_path):
    cfg = load_config(None, ["model.hidden_size=5", "model.embedding_size=3", f"data.prepared={tmp_path / 'none'}"])
    res = diagnose([Spec("x", cfg)], steps=5, batches=2, batch_size=3)
    m = res["models"][0]
    assert res["data"] == "random tokens" and m["data_note"].startswith("no data.train")
    assert m["sequences"] == 6 and m["model"]["vocab_size"] == cfg.diagnose.random_vocab
    json.dumps(res, allow_nan=False)                                     # strict JSON
    again = diagnose([Spec("x", cfg)], steps=5, batches=2, batch_size=3)
    assert again == res                                                  # seeded


# --------------------------------------------------------------------------- the command

SMALL = ["--set", "model.hidden_size=6", "--set", "model.embedding_size=4", "--steps", "8"]
FIELDS = ("lag_profile", "decay_rate", "half_life", "horizon", "jacobian", "saturation", "lag_contribution",
          "truncation_bias", "model", "data", "steps")


def invoke(*args):
    return CliRunner().invoke(cli, list(map(str, args)), prog_name="rnnlm")


def test_bare_command_runs_on_random_tokens_and_says_so(no_data):
    result = invoke("diagnose-gradients")
    assert result.exit_code == 0, result.output
    assert "measured on random tokens (vocabulary 100)" in result.stderr
    assert "data: random tokens" in result.stdout and "decay rate" in result.stdout
    assert max(len(line) for line in result.stdout.splitlines()) <= 100
    assert max(len(line) for line in result.stdout.splitlines() if line[6:8] == " |") <= 80    # the chart


def test_json_has_the_documented_fields(no_data):
    result = invoke("diagnose-gradients", *SMALL, "--format", "json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["data"] == "random tokens" and doc["steps"] == 8 and len(doc["models"]) == 1
    m = doc["models"][0]
    for field in FIELDS:
        assert field in m, field
    assert m["data"] == "random tokens" and m["model"]["cell"] == "tanh"
    assert len(m["lag_profile"]["matrix"]) == 8 and m["lag_profile"]["matrix"][0][1] is None


def test_csv_output(no_data):
    result = invoke("diagnose-gradients", *SMALL, "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert list(rows[0]) == ["model", "quantity", "i", "j", "value", "layer"]
    g = [r for r in rows if r["quantity"] == "grad_norm"]
    assert len(g) == 8 * 9 // 2 and all(int(r["j"]) <= int(r["i"]) for r in g)
    assert {"decay_rate", "horizon", "truncation_cosine", "saturation_tanh"} <= {r["quantity"] for r in rows}


def test_fail_gates_exit_1_and_name_the_model(no_data):
    result = invoke("diagnose-gradients", *SMALL, "--fail-if-vanishing", 1000)
    assert result.exit_code == 1
    assert "FAILED: defaults: vanishing gradient: horizon" in result.stderr
    assert invoke("diagnose-gradients", *SMALL, "--fail-if-vanishing", 1).exit_code == 0
    result = invoke("diagnose-gradients", *SMALL, "--fail-if-exploding", 0.5)
    assert result.exit_code == 1 and "exploding gradient" in result.stderr
    assert invoke("diagnose-gradients", *SMALL, "--fail-if-exploding", 10).exit_code == 0


def test_sweep_gives_one_model_per_value(no_data):
    result = invoke("diagnose-gradients", *SMALL, "--sweep", "model.cell=tanh,lstm", "--format", "json")
    assert result.exit_code == 0, result.output
    models = json.loads(result.stdout)["models"]
    assert [m["label"] for m in models] == ["cell=tanh", "cell=lstm"]
    assert [m["model"]["cell"] for m in models] == ["tanh", "lstm"]
    assert "h" in models[1]["lag_profile"] and models[1]["jacobian"]["state_size"] == 12


def test_several_configs_side_by_side(no_data):
    (no_data / "a.yaml").write_text("model: {cell: gru}\n", encoding="utf-8")
    (no_data / "b.yaml").write_text("model: {cell: relu}\n", encoding="utf-8")
    result = invoke("diagnose-gradients", "--config", "a.yaml", "--config", "b.yaml", *SMALL)
    assert result.exit_code == 0, result.output
    assert "side by side" in result.stdout and "== a: gru" in result.stdout and "== b: relu" in result.stdout


@pytest.mark.parametrize("args, message", [
    (["--sweep", "model.cell"], "--sweep expects section.key=value1,value2,..., got 'model.cell'"),
    (["--sweep", "model.cel=tanh,gru"], None),
    (["--checkpoint", "x.npz", "--sweep", "model.cell=tanh"], None),
])
def test_usage_errors_are_one_line_exit_2(no_data, args, message):
    result = invoke("diagnose-gradients", *args)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1 and result.stdout == ""
    if message:
        assert result.stderr == f"Error: {message}\n"


def test_plot_without_matplotlib_fails_before_any_work(no_data, monkeypatch):
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    monkeypatch.setattr(diagnostics, "diagnose", lambda *a, **k: pytest.fail("work started"))
    result = invoke("diagnose-gradients", "--plot", "out.png")
    assert result.exit_code == 1
    assert result.stderr == "Error: --plot needs matplotlib: pip install 'rnnlm[plot]'\n"
    assert result.stdout == ""


def test_plot_writes_a_png_when_matplotlib_is_there(no_data):
    pytest.importorskip("matplotlib")
    result = invoke("diagnose-gradients", *SMALL, "--sweep", "model.cell=tanh,gru", "--plot", "out.png")
    assert result.exit_code == 0, result.output
    assert (no_data / "out.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_real_sequences_come_from_the_validation_split(no_data, tiny_word_corpus):
    c = tiny_word_corpus
    args = ["--set", f"data.train={c['train']}", "--set", f"data.valid={c['valid']}", "--set", f"data.test={c['test']}",
            "--set", "model.hidden_size=5", "--set", "diagnose.batch_size=1", "--steps", 3, "--quiet"]
    assert invoke("preprocess", *args[:6], "--quiet").exit_code == 0     # diagnose-gradients only reads data
    result = invoke("diagnose-gradients", *args, "--format", "json")
    assert result.exit_code == 0, result.output
    m = json.loads(result.stdout)["models"][0]
    assert m["data"] == "valid" and m["model"]["vocab_size"] == 7 and "random" not in result.stderr
    result = invoke("diagnose-gradients", *args, "--steps", 10)
    assert result.exit_code == 1 and "too short for 1 batch(es) of 10 steps" in result.stderr


@pytest.mark.parametrize("batches, jacobian_sequences", [(1, 0), (2, 1), (3, 4), (2, 0)])
def test_tick_count_is_the_progress_total(batches, jacobian_sequences):
    ticks = []
    seqs = [tokens(seed=s) for s in range(batches)]
    diagnose_model(make_model("tanh"), seqs, 1e-3, [1, 2, 99], jacobian_sequences, tick=lambda: ticks.append(1))
    assert len(ticks) == diagnostics.work_units(T, batches, B, [1, 2, 99], jacobian_sequences)


def test_demo_configs_share_the_demo_data_and_differ_only_in_the_model():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    tiny = load_config(str(root / "configs" / "tiny.yaml"))
    cfgs = {m: load_config(str(root / "configs" / "diagnose" / f"{m}.yaml")) for m in ("tanh", "irnn", "gru", "lstm")}
    assert {c.data.prepared for c in cfgs.values()} == {tiny.data.prepared}
    assert {c.data.train for c in cfgs.values()} == {tiny.data.train}
    assert [(c.model.cell, c.model.recurrent_init) for c in cfgs.values()] == [
        ("tanh", "uniform"), ("relu", "identity"), ("gru", "uniform"), ("lstm", "uniform")]
    assert len({repr((c.model.hidden_size, c.model.embedding_size, c.train.seed, c.diagnose)) for c in cfgs.values()}) == 1
    ptb = {m: load_config(str(root / "configs" / "diagnose" / f"ptb-{m}.yaml")) for m in cfgs}
    ref = load_config(str(root / "configs" / "ptb-rnn.yaml"))
    for m, c in ptb.items():
        assert (c.data.train, c.data.prepared) == (ref.data.train, ref.data.prepared)
        assert (c.model.cell, c.model.recurrent_init) == (cfgs[m].model.cell, cfgs[m].model.recurrent_init)
