"""Dynamic evaluation: each chunk scored with the current weights, then learned from; the text
read as one stream, in order, so no token is scored after an update has seen it."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from rnnlm_cli.cli import cli
from rnnlm_cli.config import load_config
from rnnlm_cli.errors import ConfigError
from rnnlm_cli.evaluate import dynamic_evaluate, eval_streams, evaluate_tokens, gradient_ms
from rnnlm_cli.nn.model import Model

V = 13


def setup(layers=1, cell="lstm", **dyn):
    cfg = load_config(None, ["model.embedding_size=6", "model.hidden_size=7", f"model.cell={cell}",
                             f"model.num_layers={layers}", "train.dtype=float64", "train.k1=5", "train.batch_size=2",
                             *[f"evaluate.{k}={v}" for k, v in dyn.items()]])
    model = Model(cfg.model, V, dtype=np.float64, rng=np.random.default_rng(0))
    return model, cfg


def text(n=57, seed=3):
    return np.random.default_rng(seed).integers(0, V, size=n)


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("method", ["sgd", "rms"])
def test_no_token_is_read_before_it_is_scored(layers, method):
    """Changing token j changes nothing scored before it: the log-probabilities of tokens 0..j-1
    stay bit for bit, for every j (a look-ahead anywhere would show here)."""
    model, cfg = setup(layers, dynamic_method=method, dynamic_lr=0.05 if method == "sgd" else 0.002,
                       dynamic_chunk=4, dynamic_ms_batches=2)
    tokens = text()
    ms = gradient_ms(model, text(200, seed=9), cfg) if method == "rms" else None
    base = dynamic_evaluate(model, tokens, cfg, sep_id=0, per_token=True, ms=ms)["logp"]
    for j in range(0, len(tokens), 3):
        changed = tokens.copy()
        changed[j] = (changed[j] + 1) % V
        logp = dynamic_evaluate(model, changed, cfg, sep_id=0, per_token=True, ms=ms)["logp"]
        np.testing.assert_array_equal(logp[:j], base[:j])
        if j + 5 < len(tokens):
            assert not np.array_equal(logp[j + 5:], base[j + 5:])     # later scores do react: it is learning


def test_the_first_chunk_is_static_and_later_ones_learn():
    model, cfg = setup(dynamic_chunk=5, dynamic_lr=0.1)
    tokens = text()
    static = evaluate_tokens(model, tokens, cfg.replace(train={"eval_batch_size": 1, "k1": 5}), 0, per_token=True)
    dyn = dynamic_evaluate(model, tokens, cfg, 0, per_token=True)
    np.testing.assert_allclose(dyn["logp"][:5], static["logp"][:5], rtol=1e-12)
    assert not np.allclose(dyn["logp"][5:], static["logp"][5:])
    assert dyn["updates"] == math.ceil(len(tokens) / 5) - 1


def test_sgd_step_by_hand_and_the_weights_are_restored():
    """Chunk 2 is scored by theta_0 - lr g_1 + decay (theta_0 - (theta_0 - lr g_1)), g_1 the
    gradient of chunk 1's mean loss from the zero state."""
    lr, decay = 0.3, 0.25
    model, cfg = setup(layers=2, dynamic_chunk=4, dynamic_lr=lr, dynamic_decay=decay)
    before = {k: v.copy() for k, v in model.params.items()}
    tokens = text(8)
    got = dynamic_evaluate(model, tokens, cfg, 0, per_token=True)
    for k in before:
        np.testing.assert_array_equal(model.params[k], before[k])        # the checkpoint's weights are untouched
    x, y, mask = eval_streams(tokens, 0, 1)
    fwd = model.forward(x[:4], y[:4])
    grads = model.backward(fwd, scale=1.0 / 4)
    hand = Model(model.cfg, V, dtype=np.float64, params={
        k: v - lr * grads.dense(k) + decay * (lr * grads.dense(k)) for k, v in before.items()})
    second = hand.forward(x[4:], y[4:], fwd.state)
    np.testing.assert_allclose(got["logp"][4:], -second.nll[:, 0], rtol=1e-10)
    assert got["loss"] == pytest.approx((fwd.loss + second.loss) / 8, rel=1e-10)


def test_rms_pull_toward_the_trained_weights_is_at_most_one():
    """decay 1 with rms: every weight whose RMS is at least the mean goes all the way back
    (pull clipped at 1), so a huge decay cannot overshoot theta_0."""
    model, cfg = setup(dynamic_method="rms", dynamic_decay=1.0, dynamic_lr=0.01, dynamic_chunk=4, dynamic_ms_batches=2)
    ms = gradient_ms(model, text(200, seed=9), cfg)
    result = dynamic_evaluate(model, text(), cfg, 0, ms=ms)
    assert math.isfinite(result["loss"])


def test_full_trained_models_and_missing_rms_statistics_are_refused():
    model, cfg = setup()
    with pytest.raises(ConfigError, match="train.bptt=full"):
        dynamic_evaluate(model, text(), cfg.replace(train={"bptt": "full"}), 0)
    rms = dataclasses.replace(cfg, evaluate=dataclasses.replace(cfg.evaluate, dynamic_method="rms"))
    with pytest.raises(ValueError, match="mean squared"):
        dynamic_evaluate(model, text(), rms, 0)


def test_cli_reports_the_protocol(tmp_path):
    runner = CliRunner()
    train = tmp_path / "t.txt"
    train.write_text("the dog runs\nthe cats run\n" * 30, encoding="utf-8")
    ok = runner.invoke(cli, ["preprocess", "--train", str(train), "--out", str(tmp_path / "p"), "-q"])
    assert ok.exit_code == 0, ok.output
    ok = runner.invoke(cli, ["train", "--set", f"data.prepared={tmp_path / 'p'}", "--out", str(tmp_path / "r"),
                             "--set", "model.hidden_size=8", "--set", "model.embedding_size=8", "--max-steps", "4",
                             "--set", "train.batch_size=2", "--set", "train.k1=5", "-q"])
    assert ok.exit_code == 0, ok.output
    ck = str(tmp_path / "r" / "checkpoint.npz")
    result = runner.invoke(cli, ["evaluate", "--checkpoint", ck, "--split", "valid", "--format", "json"])
    assert result.exit_code == 0, result.output
    static = json.loads(result.output)
    dyn = json.loads(runner.invoke(cli, ["evaluate", "--checkpoint", ck, "--split", "valid", "--dynamic",
                                         "--format", "json"]).output)
    assert static["protocol"] == "static" and "dynamic" not in static
    assert dyn["protocol"] == "dynamic" and dyn["dynamic"]["method"] == "sgd" and dyn["tokens"] == static["tokens"]
    text_out = runner.invoke(cli, ["evaluate", "--checkpoint", ck, "--split", "valid", "--dynamic"]).output
    assert "dynamic evaluation: sgd" in text_out


@pytest.mark.parametrize("method", ["sgd", "rms"])
def test_divergence_is_a_data_error_naming_what_to_change(method):
    """A rate far too high drives the weights to inf/NaN: one DataError, the weights restored; with
    rms the message also names dynamic_eps (a weight with ~0 training gradient steps by lr / eps)."""
    from rnnlm_cli.errors import DataError
    model, cfg = setup(dynamic_method=method, dynamic_lr=1e300, dynamic_chunk=4, dynamic_ms_batches=2)
    before = {k: v.copy() for k, v in model.params.items()}
    ms = gradient_ms(model, text(200, seed=9), cfg) if method == "rms" else None
    with pytest.raises(DataError, match=r"diverged after \d+ updates") as err:
        dynamic_evaluate(model, text(), cfg, 0, ms=ms)
    assert ("dynamic_eps" in str(err.value)) == (method == "rms")
    for k, v in model.params.items():
        np.testing.assert_array_equal(v, before[k])
