"""train.k2: auto -- the lag-profile measurement (nn/lags.py), windows whose k2 changes between
chunks (batching), the trainer's switching, exact resume, and the configuration keys."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

from helpers import agreement_corpus, jittered_model
from rnnlm_cli.cli import cli
from rnnlm_cli.config import ModelConfig, load_config, resolved_k2
from rnnlm_cli.data.batching import StreamBatches
from rnnlm_cli.errors import ConfigError
from rnnlm_cli.nn import lags
from rnnlm_cli.nn.model import Model
from rnnlm_cli.train import checkpoint, step
from rnnlm_cli.train.trainer import train


# --------------------------------------------------------------------------- the measurement

def test_identity_recurrence_keeps_every_lag():
    # relu, W_h = I, W_x = 0, b > 0: h_t = h_{t-1} + b stays active, so ds_t/ds_{t-1} = I exactly
    # and ||dE_t/ds_k|| = ||dE_t/ds_t|| for every k: the profile is 1 at every lag
    model = Model(ModelConfig(cell="relu", hidden_size=5, embedding_size=3), 7, dtype=np.float64,
                  rng=np.random.default_rng(0))
    model.params["cell.W_h"][...] = np.eye(5)
    model.params["cell.W_x"][...] = 0.0
    model.params["cell.b"][...] = 0.1
    x = np.random.default_rng(1).integers(0, 7, size=(12, 3))
    profile = lags.measure(model, x, x)
    np.testing.assert_allclose(profile, np.ones(12), rtol=1e-12)
    assert lags.horizon(profile, 1e-3) == (11, True)


def test_no_recurrence_has_horizon_zero():
    model = jittered_model("tanh", 7, 3, 5)
    model.params["cell.W_h"][...] = 0.0                       # s_t does not depend on s_{t-1}
    x = np.random.default_rng(1).integers(0, 7, size=(9, 2))
    profile = lags.measure(model, x, x)
    assert profile[0] == pytest.approx(1.0) and np.all(profile[1:] == 0.0)
    assert lags.horizon(profile, 1e-3) == (0, False)


def test_horizon_by_hand():
    assert lags.horizon([1.0, 0.5, 0.01, 0.0005, 0.2], 1e-3) == (2, False)    # the first dip ends it
    assert lags.horizon([1.0, float("nan"), 1.0], 1e-3) == (0, False)         # NaN is not above
    assert lags.horizon([1.0, 0.9], 0.5) == (1, True)


def test_measure_matches_the_diagnostics(tmp_path):
    from rnnlm_cli.analysis.diagnostics import diagnose_model
    model = jittered_model("lstm", 9, 4, 6)
    x, y = np.random.default_rng(2).integers(0, 9, size=(2, 10, 3))
    ours = lags.measure(model, x, y)
    theirs = diagnose_model(model, [(x, y)], 1e-3, [], jacobian_sequences=1)["lag_profile"]["normalised"]
    np.testing.assert_allclose(ours, theirs, rtol=1e-12)


# --------------------------------------------------------------------------- windows of a changing k2

@pytest.mark.parametrize("schedule", [[4, 8, 12, 12, 6, 4, 10, 14, 4], [20, 24, 4, 8, 4, 4, 8, 12, 16]])
def test_changing_k2_carries_the_true_state(schedule):
    """Each chunk's window must start from the state the previous chunk carried, at the right
    position: compared with one forward over the whole stream."""
    model = jittered_model("gru", 11, 4, 5)
    tokens = np.random.default_rng(5).integers(0, 11, size=2 * 60)
    sb = StreamBatches(tokens, 2, 4)
    full = model.forward(sb.data[:-1], sb.data[1:])                   # every stream from zero
    state, k2_in = None, 4
    for c, target in enumerate(schedule):
        k2_out = min(target, k2_in + 4)
        b = sb.batch(c, k2_in, k2_out)
        expected = full.state_after(b.position)
        start = state if state is not None else model.initial_state(2)
        for got, want in zip(start, expected):
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
        assert b.loss_start == c * 4 - b.position and len(b.x) - b.loss_start == 4
        assert len(b.x) == min(k2_in, c * 4 + 4)                       # backpropagates k2_in steps
        fwd, _, state = step.batch_gradients(model, b, state, mode="stream")
        k2_in = k2_out
    with pytest.raises(ValueError, match="grow by at most k1"):
        sb.batch(3, 4, 9)


# --------------------------------------------------------------------------- the trainer

def corpus(tmp_path):
    return agreement_corpus(tmp_path)[0]


def config(tmp_path, *overrides, out="run"):
    folder = corpus(tmp_path)
    base = [f"data.train={folder / 'train.txt'}", f"data.valid={folder / 'valid.txt'}",
            f"data.test={folder / 'test.txt'}", f"data.prepared={tmp_path / 'prepared'}",
            f"train.out={tmp_path / out}", "model.hidden_size=12", "model.embedding_size=8",
            "train.batch_size=4", "train.k1=4", "train.k2=auto", "train.k2_max=20", "train.log_every=1",
            "train.optimizer=adam", "train.lr=0.01"]
    return load_config(None, base + list(overrides))


def update_lines(out):
    with open(os.path.join(out, "metrics.jsonl"), encoding="utf-8") as fh:
        return [m for m in map(json.loads, fh) if "split" not in m]


def test_switching_follows_the_measured_horizon(tmp_path, monkeypatch):
    horizons = iter([17, 2, 40])

    def fake_measure(model, x, y, state=None):                        # a profile with the next horizon
        h = next(horizons)
        return np.array([1.0] * (h + 1) + [0.0] * (len(x) - h - 1))[:len(x)]

    monkeypatch.setattr(lags, "measure", fake_measure)
    cfg = config(tmp_path, "train.k2_every=6", "train.max_steps=14")
    train(cfg)
    lines = update_lines(cfg.train.out)
    # target 18 from step 0: grows by k1 = 4 per update; 4 from step 6 (horizon 2 -> 3 -> at least k1);
    # 20 (k2_max) from step 12 (horizon 40 is beyond the measured window: a lower bound)
    assert [m["k2"] for m in lines] == [4, 8, 12, 16, 18, 18, 18, 4, 4, 4, 4, 4, 4, 8]
    measured = {m["step"]: m["k2_measured"] for m in lines if "k2_measured" in m}
    assert sorted(measured) == [1, 7, 13]
    assert measured[1] == {"horizon": 17, "horizon_is_lower_bound": False, "window": 20, "target": 18,
                           "changed": True}
    assert measured[7]["target"] == 4 and measured[7]["horizon"] == 2
    assert measured[13] == {"horizon": 19, "horizon_is_lower_bound": True, "window": 20, "target": 20,
                            "changed": True}
    progress = checkpoint.read(os.path.join(cfg.train.out, "checkpoint.npz"))[4]["progress"]
    assert progress["k2_target"] == 20 and progress["k2"] == 12


def test_resume_is_bit_exact_with_k2_auto(tmp_path):
    common = ["model.cell=lstm", "train.k2_every=5", "train.epochs=2", "train.eval_every=7"]
    straight = config(tmp_path, *common, "train.max_steps=23", out="straight")
    train(straight)
    train(config(tmp_path, *common, "train.max_steps=12", out="halves"))
    rest = config(tmp_path, *common, "train.max_steps=23", out="halves")
    train(rest, resume=True)
    a = checkpoint.read(os.path.join(straight.train.out, "checkpoint.npz"))
    b = checkpoint.read(os.path.join(rest.train.out, "checkpoint.npz"))
    for name in a[0]:
        np.testing.assert_array_equal(a[0][name], b[0][name], err_msg=name)
    assert a[4]["progress"] == {**b[4]["progress"], "wall": a[4]["progress"]["wall"]}
    ka = [(m["step"], m["k2"], m["loss"]) for m in update_lines(straight.train.out)]
    assert ka == [(m["step"], m["k2"], m["loss"]) for m in update_lines(rest.train.out)]
    assert len({k for _, k, _ in ka}) > 1                             # it did switch


def test_fixed_k2_logs_no_k2(tmp_path):
    cfg = config(tmp_path, "train.k2=8", "train.max_steps=3")
    train(cfg)
    assert all("k2" not in m for m in update_lines(cfg.train.out))


# --------------------------------------------------------------------------- configuration

def test_config_keys():
    cfg = load_config(None, ["train.k2=auto", "train.k2_max=64", "train.k1=10"])
    assert cfg.train.k2 == "auto" and resolved_k2(cfg) == 64 and cfg.train.k2_every == 100
    assert resolved_k2(load_config(None, ["train.k2=0", "train.k1=10"])) == 10


@pytest.mark.parametrize("overrides, message", [
    (["train.k2=automatic"], "train.k2: expected a non-negative integer or 'auto', got 'automatic'"),
    (["train.k2=-3"], "train.k2: expected a non-negative integer or 'auto', got -3"),
    (["train.k2=auto", "train.k2_max=10", "train.k1=20"],
     "train.k2_max (10) must be >= train.k1 (20): k2 auto chooses between them"),
    (["train.k2_every=0"], "train.k2_every: expected a value >= 1, got 0"),
    (["train.k2_threshold=0"], "train.k2_threshold: expected a value > 0.0, got 0"),
])
def test_bad_values(overrides, message):
    with pytest.raises(ConfigError) as err:
        load_config(None, overrides)
    assert str(err.value) == message
    args = ["config", "validate"] + [a for o in overrides for a in ("--set", o)]
    result = CliRunner().invoke(cli, args, prog_name="rnnlm")
    assert result.exit_code == 2 and result.stdout == "" and result.stderr == f"Error: {message}\n"
