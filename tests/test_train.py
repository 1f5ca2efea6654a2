"""Training loop, optimizers, schedules, checkpoints and exact resume; evaluate and generate."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from helpers import agreement_corpus
from rnnlm_cli.train import step
from rnnlm_cli.train import checkpoint
from rnnlm_cli.cli import cli
from rnnlm_cli.config import load_config
from rnnlm_cli.data import corpus as corpus_module
from rnnlm_cli.errors import CheckpointError, DataError, TrainingError
from rnnlm_cli.train.optim import SGD, Adagrad, Adam, RMSprop
from rnnlm_cli.evaluate import evaluate_tokens
from rnnlm_cli.runs import load_model
from rnnlm_cli.train.trainer import reset_streams, train

ROOT = Path(__file__).resolve().parents[1]


def corpus(tmp_path, n_sent=300, seed=0):
    """A small, learnable word corpus: subject-verb agreement with a few nouns."""
    return agreement_corpus(tmp_path, n_sent, seed)[0]


def config(tmp_path, *overrides, out="run"):
    folder = corpus(tmp_path)
    base = [f"data.train={folder / 'train.txt'}", f"data.valid={folder / 'valid.txt'}",
            f"data.test={folder / 'test.txt'}", f"data.prepared={tmp_path / 'prepared'}",
            f"train.out={tmp_path / out}", "model.hidden_size=16", "model.embedding_size=8",
            "train.batch_size=4", "train.k1=8", "train.log_every=1", "train.optimizer=adam", "train.lr=0.01"]
    return load_config(None, base + list(overrides))


def metrics(out):
    with open(os.path.join(out, "metrics.jsonl"), encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def test_loss_falls(tmp_path):
    cfg = config(tmp_path, "train.epochs=3")
    summary = train(cfg)
    steps = [m for m in metrics(cfg.train.out) if "split" not in m]
    first = np.mean([m["loss"] for m in steps[:5]])
    last = np.mean([m["loss"] for m in steps[-5:]])
    assert last < 0.6 * first
    # vocabulary of 11 types: uniform is ln 11 = 2.40; the grammar allows ~1.0
    assert summary["valid_loss"] < 1.2
    assert summary["steps"] == len(steps)
    for key in ("step", "epoch", "tokens", "lr", "loss", "ppl", "grad_norm", "grad_norm_clipped", "clipped",
                "nonfinite_skipped", "tokens_per_sec"):
        assert key in steps[0]
    for name in ("config.yaml", "checkpoint.npz", "best.npz", "summary.json"):
        assert os.path.exists(os.path.join(cfg.train.out, name))


def test_memorises_a_50_token_sequence(tmp_path):
    rng = np.random.default_rng(3)
    seq = " ".join(f"w{i}" for i in rng.permutation(50))
    text = "\n".join([seq] * 30) + "\n"
    (tmp_path / "mem.txt").write_text(text, encoding="utf-8")
    cfg = load_config(None, [f"data.train={tmp_path / 'mem.txt'}", "data.split=[1.0, 0.0, 0.0]",
                             "data.eos=false", f"data.prepared={tmp_path / 'p'}", f"train.out={tmp_path / 'r'}",
                             "model.hidden_size=64", "model.embedding_size=32", "train.batch_size=1",
                             "train.k1=25", "train.epochs=30", "train.optimizer=adam", "train.lr=0.01",
                             "train.log_every=1"])
    train(cfg)
    last = metrics(cfg.train.out)[-1]
    assert last["loss"] < 0.05   # near zero: every next token predicted with p > 0.95


@pytest.mark.parametrize("mode, extra", [
    ("stream", ["model.dropout_embedding=0.2", "model.dropout_output=0.2", "train.k2=12"]),
    ("stream", ["model.cell=lstm", "train.state_reset=0.3"]),
    ("full", ["model.cell=lstm", "train.optimizer=sgd", "train.momentum=0.9", "train.lr=0.5"]),
    ("window", ["model.cell=gru", "train.window=3", "train.optimizer=rmsprop"]),
])
def test_resume_is_bit_exact(tmp_path, mode, extra):
    # eval every 5 steps so checkpoints and the best model are written mid-run
    common = [f"train.bptt={mode}", "train.epochs=2", "train.eval_every=5", *extra]
    straight = config(tmp_path, *common, "train.max_steps=24", out="straight")
    train(straight)
    half = config(tmp_path, *common, "train.max_steps=11", out="halves")
    train(half)
    rest = config(tmp_path, *common, "train.max_steps=24", out="halves")
    train(rest, resume=True)
    a = checkpoint.read(os.path.join(straight.train.out, "checkpoint.npz"))
    b = checkpoint.read(os.path.join(rest.train.out, "checkpoint.npz"))
    assert a[0].keys() == b[0].keys()
    for name in a[0]:
        np.testing.assert_array_equal(a[0][name], b[0][name], err_msg=name)
    for name in a[1]:
        np.testing.assert_array_equal(a[1][name], b[1][name], err_msg=name)
    assert a[4]["progress"]["step"] == b[4]["progress"]["step"] == 24
    # the metrics of the resumed run equal the straight run's, step for step
    ma = [(m["step"], m["loss"]) for m in metrics(straight.train.out) if "split" not in m]
    mb = [(m["step"], m["loss"]) for m in metrics(rest.train.out) if "split" not in m]
    assert ma == mb


def test_reset_streams_zeroes_chosen_rows_only():
    rng = np.random.default_rng(0)
    h, c = np.ones((500, 3), np.float32), np.full((500, 3), 2.0, np.float32)
    out = reset_streams((h, c), rng, 0.3)
    zero = ~out[0].any(axis=1)
    assert 100 < zero.sum() < 200                                 # ~30% of 500 streams
    np.testing.assert_array_equal(~out[1].any(axis=1), zero)      # h and c of the same streams
    assert (out[0][~zero] == 1).all() and (out[1][~zero] == 2).all()
    assert (h == 1).all() and (c == 2).all()                      # the input is left alone
    assert reset_streams((h,), rng, 0.0)[0] is h and reset_streams(None, rng, 0.5) is None
    assert not reset_streams((h,), rng, 1.0)[0].any()


def test_state_reset_trains_the_zero_state(tmp_path, monkeypatch):
    # with state_reset=1 every chunk starts from zero: the states handed to the model are all 0
    seen = []
    real = step.batch_gradients

    def spy(model, batch, state, **kw):
        seen.append(None if state is None else float(np.abs(state[0]).sum()))
        return real(model, batch, state, **kw)

    monkeypatch.setattr(step, "batch_gradients", spy)
    train(config(tmp_path, "train.state_reset=1.0", "train.max_steps=6", out="r1"))
    assert len(seen) == 6 and all(s is None or s == 0.0 for s in seen)
    seen.clear()
    train(config(tmp_path, "train.max_steps=6", out="r0"))
    assert len(seen) == 6 and all(s > 0 for s in seen[1:])       # carried otherwise


def test_resume_refuses_a_different_model(tmp_path):
    train(config(tmp_path, "train.max_steps=3"))
    with pytest.raises(CheckpointError, match=r"model.hidden_size is 16 in the checkpoint but 32 in the configuration"):
        train(config(tmp_path, "model.hidden_size=32"), resume=True)


def test_existing_run_needs_resume_or_force(tmp_path):
    cfg = config(tmp_path, "train.max_steps=2")
    train(cfg)
    with pytest.raises(DataError, match="already holds a training run"):
        train(cfg)
    train(cfg, force=True)
    empty = config(tmp_path, out="nothing")
    with pytest.raises(CheckpointError, match="nothing to resume"):
        train(empty, resume=True)


# --------------------------------------------------------------------------- data, folder, progress

def test_training_prepares_its_data_explicitly_and_says_why(tmp_path):
    cfg = config(tmp_path, "train.max_steps=2")
    c, prep = tmp_path / "corpus", tmp_path / "prepared"
    sources = f"{c / 'train.txt'}, {c / 'valid.txt'}, {c / 'test.txt'}"
    logs = []
    train(cfg, log=logs.append)
    assert logs[0] == f"preparing {prep} from {sources} (missing)"
    logs.clear()
    train(cfg, force=True, log=logs.append)                  # current: only read
    assert not [m for m in logs if m.startswith("preparing")]
    with open(c / "train.txt", "a", encoding="utf-8") as fh:
        fh.write("the cat runs home\n")
    train(cfg, force=True, log=logs.append)
    assert logs[0] == f"preparing {prep} from {sources} (sources changed)"


def test_an_incomplete_prepared_folder_is_refused_not_rebuilt(tmp_path):
    cfg = config(tmp_path, "train.max_steps=2")
    train(cfg)
    prep, out = tmp_path / "prepared", tmp_path / "run"
    before = sorted(os.listdir(out))
    for name in ("train.npy", "vocab.txt"):
        (prep / name).rename(tmp_path / name)
        with pytest.raises(DataError, match=f"^prepared-data folder {prep} has no {name} "
                                            r"\(run 'rnnlm preprocess --force' to rebuild it\)$"):
            train(cfg, force=True)
        assert not (prep / name).exists()                    # not rebuilt behind the user's back
        assert sorted(os.listdir(out)) == before             # the refused run left OUT as it was
        (tmp_path / name).rename(prep / name)


def test_the_lock_is_taken_when_the_run_starts_writing(tmp_path):
    cfg = config(tmp_path, "train.max_steps=5", "train.eval_every=5")
    out = tmp_path / "run"
    out.mkdir()
    seen = []
    train(cfg, log=lambda message: seen.append((message, sorted(os.listdir(out)))))
    # preparing the data writes nothing into OUT; the validation at step 5 runs under the lock
    assert seen[0][0].startswith("preparing ") and seen[0][1] == []
    assert [files for message, files in seen if message.startswith("step 5: valid loss")] == [
        ["config.yaml", "metrics.jsonl", "train.lock"]]
    assert "train.lock" not in os.listdir(out)               # released at the end


class RecordingBar:
    def __init__(self, bars, **kw):
        self.kw, self.done, self.closed = kw, 0, False
        bars.append(self)

    def update(self, n=1):
        self.done += n

    def set_postfix(self, **info):
        self.postfix = info

    def close(self):
        self.closed = True


def test_progress_goes_through_the_factory(tmp_path):
    cfg = config(tmp_path, "train.epochs=2")
    bars = []
    summary = train(cfg, progress=lambda **kw: RecordingBar(bars, **kw))
    passes = [b for b in bars if b.kw.get("unit") == "B"]
    epochs = [b for b in bars if b.kw.get("unit") != "B"]
    # preprocessing: a counting and an encoding pass, each reading every byte of the three files once
    size = sum(os.path.getsize(tmp_path / "corpus" / f"{n}.txt") for n in ("train", "valid", "test"))
    assert [(b.kw["desc"], b.kw["total"], b.done) for b in passes] == [("counting", size, size), ("encoding", size, size)]
    # training: a bar per epoch of ceil((n - 1) / k1) chunks, n = N // B tokens per stream, one update each
    n = corpus_module.load_prepared(str(tmp_path / "prepared")).meta["tokens"]["train"] // 4
    chunks = -(-(n - 1) // 8)
    assert [(b.kw["desc"], b.kw["total"], b.done) for b in epochs] == [("epoch 1/2", chunks, chunks),
                                                                        ("epoch 2/2", chunks, chunks)]
    assert all(b.closed for b in bars) and summary["steps"] == 2 * chunks


def test_evaluate_reproduces_the_logged_validation_loss(tmp_path):
    cfg = config(tmp_path, "train.epochs=1")
    train(cfg)
    logged = [m for m in metrics(cfg.train.out) if m.get("split") == "valid" and not m.get("final")][-1]
    result = CliRunner().invoke(cli, ["evaluate", "--checkpoint", os.path.join(cfg.train.out, "checkpoint.npz"),
                                      "--split", "valid", "--format", "json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["loss"] == pytest.approx(logged["loss"], rel=1e-6)
    assert out["tokens"] == logged["tokens"]
    assert out["bits"] == pytest.approx(out["loss"] / math.log(2))


def test_evaluation_scores_every_token_and_weights_chunks(tmp_path):
    cfg = config(tmp_path, "train.max_steps=3")
    train(cfg)
    model, mcfg, _ = load_model(os.path.join(cfg.train.out, "checkpoint.npz"))
    tokens = np.arange(1, 11) % 5
    # one stream of k1 = 8: two chunks of 8 and 2 tokens, all 10 scored (the first from the separator)
    one = evaluate_tokens(model, tokens, mcfg.replace(train={"eval_batch_size": 1}), sep_id=0, per_token=True)
    assert one["tokens"] == 10 and len(one["logp"]) == 10
    assert one["loss"] == pytest.approx(-one["logp"].mean())
    # the same stream read in a single chunk gives the same total (the state is carried)
    big = evaluate_tokens(model, tokens, mcfg.replace(train={"eval_batch_size": 1, "k1": 50}), sep_id=0)
    assert big["loss"] == pytest.approx(one["loss"], rel=1e-5)


def test_generate_never_samples_unk(tmp_path):
    cfg = config(tmp_path, "train.max_steps=5", "data.vocab_size=6")
    train(cfg)
    result = CliRunner().invoke(cli, ["generate", "--checkpoint", os.path.join(cfg.train.out, "checkpoint.npz"),
                                      "--n", "20", "--max-tokens", "30", "--seed", "1", "--format", "json"])
    assert result.exit_code == 0, result.output
    samples = json.loads(result.output)["samples"]
    assert len(samples) == 20
    assert all("<unk>" not in s for s in samples)
    again = CliRunner().invoke(cli, ["generate", "--checkpoint", os.path.join(cfg.train.out, "checkpoint.npz"),
                                     "--n", "20", "--max-tokens", "30", "--seed", "1", "--format", "json"])
    assert json.loads(again.output)["samples"] == samples   # seeded
    primed = CliRunner().invoke(cli, ["generate", "--checkpoint", os.path.join(cfg.train.out, "checkpoint.npz"),
                                      "--prime", "the dog", "--max-tokens", "3"])
    assert primed.stdout.startswith("the dog")


def test_nonfinite_policies(tmp_path, monkeypatch):
    from rnnlm_cli.train import step
    real = step.batch_gradients
    calls = []

    def poisoned(*args, **kwargs):   # a NaN in one gradient from the second update on
        fwd, grads, state = real(*args, **kwargs)
        calls.append(1)
        if len(calls) >= 2:
            grads["cell.W_h"][0, 0] = np.nan
        return fwd, grads, state

    monkeypatch.setattr(step, "batch_gradients", poisoned)
    with pytest.raises(TrainingError, match=r"^non-finite gradient in cell.W_h at step 2; last good checkpoint: "
                                            r"none yet \(lower train.lr, or set train.nonfinite=skip\)$"):
        train(config(tmp_path, out="err"))
    calls.clear()
    with pytest.raises(TrainingError, match=r"^3 consecutive non-finite updates \(train.max_nonfinite=3\) at step 4"):
        train(config(tmp_path, "train.nonfinite=skip", "train.max_nonfinite=3", out="skip"))
    lines = metrics(str(tmp_path / "skip"))
    assert [m["nonfinite_skipped"] for m in lines] == [0, 1, 2]


# --------------------------------------------------------------------------- optimizers by hand

def one_update(opt_cls, steps=2, **kw):
    p = {"w": np.array([1.0, -2.0])}
    g = {"w": np.array([0.5, 0.25])}
    opt = opt_cls(p, **kw)
    for _ in range(steps):
        opt.step(p, g, lr=0.1)
    return p["w"]


def test_sgd_plain_momentum_nesterov_weight_decay():
    np.testing.assert_allclose(one_update(SGD, 1), [1 - 0.05, -2 - 0.025])
    # momentum 0.9: v1 = g, v2 = 1.9 g; p = p0 - 0.1 (g + 1.9 g)
    np.testing.assert_allclose(one_update(SGD, 2, momentum=0.9), [1 - 0.29 * 0.5, -2 - 0.29 * 0.25])
    # nesterov: step uses g + mu v: v1 = g -> 1.9 g; v2 = 1.9 g -> g + 0.9*1.9 g = 2.71 g; total 4.61 g
    np.testing.assert_allclose(one_update(SGD, 2, momentum=0.9, nesterov=True), [1 - 0.461 * 0.5, -2 - 0.461 * 0.25])
    np.testing.assert_allclose(one_update(SGD, 1, weight_decay=0.1), [1 - 0.1 * (0.5 + 0.1), -2 - 0.1 * (0.25 - 0.2)])


def test_adagrad_rmsprop_adam():
    # adagrad: G1 = g^2, G2 = 2 g^2: steps g/|g| and g/(sqrt2 |g|)
    np.testing.assert_allclose(one_update(Adagrad, 2, eps=0.0), [1 - 0.1 * (1 + 1 / math.sqrt(2)), -2 - 0.1 * (1 + 1 / math.sqrt(2))])
    # rmsprop one step: E = 0.01 g^2 -> step lr * g / (0.1 |g|) = lr * 10 * sign
    np.testing.assert_allclose(one_update(RMSprop, 1, beta2=0.99, eps=0.0), [1 - 1.0, -2 - 1.0], atol=1e-12)
    # adam: bias-corrected m/sqrt(v) = sign(g) on every step with a constant gradient
    np.testing.assert_allclose(one_update(Adam, 3, eps=0.0), [1 - 0.3, -2 - 0.3], atol=1e-12)


def test_adam_blocked_update_is_bit_identical_to_whole_array():
    # the update runs in L2-sized blocks on big parameters; the arithmetic must not change
    rng = np.random.default_rng(3)
    shape = (3 * Adam.BLOCK // 100 + 7, 100)                       # several blocks and a ragged tail
    p0 = rng.standard_normal(shape).astype(np.float32)
    grads = [rng.standard_normal(shape).astype(np.float32) for _ in range(3)]
    out = []
    for block in (Adam.BLOCK, 10 ** 9):
        p = {"w": p0.copy()}
        opt = Adam(p)
        opt.BLOCK = block
        for g in grads:
            opt.step(p, {"w": g}, lr=0.01)
        out.append((p["w"], opt.state["m/w"], opt.state["v/w"]))
    assert p0.size > 2 * Adam.BLOCK and out[0][0].dtype == np.float32
    for a, b in zip(*out):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(out[0][0], p0)


# --------------------------------------------------------------------------- schedules

def valid_lrs(out):
    return [m["lr"] for m in metrics(out) if m.get("split") == "valid" and not m.get("final")]


def test_epoch_decay_schedule(tmp_path):
    cfg = config(tmp_path, "train.schedule=epoch_decay", "train.decay_start=2", "train.lr_factor=0.5",
                 "train.epochs=4", "train.lr=0.02")
    train(cfg)
    assert valid_lrs(cfg.train.out) == [0.02, 0.02, 0.01, 0.005]


def test_plateau_schedule_and_min_lr_stop(tmp_path):
    # min_improvement 1.0 means every evaluation counts as a plateau: the rate halves each time
    cfg = config(tmp_path, "train.schedule=plateau", "train.min_improvement=1.0", "train.lr_factor=0.5",
                 "train.epochs=10", "train.lr=0.02", "train.min_lr=0.004")
    summary = train(cfg)
    lrs = valid_lrs(cfg.train.out)
    # the first evaluation has nothing to compare with; each later one halves the rate
    assert lrs == [0.02, 0.02, 0.01, 0.005]               # logged before each cut takes effect
    assert summary["lr"] == 0.0025 and "fell below train.min_lr" in summary["stopped"]
    assert summary["epochs"] == 4


# --------------------------------------------------------------------------- signals

def test_sigint_saves_a_checkpoint_and_exits_130(tmp_path):
    cfg_path = tmp_path / "c.yaml"
    folder = corpus(tmp_path, n_sent=2000)
    cfg_path.write_text(
        f"data: {{train: {folder / 'train.txt'}, valid: {folder / 'valid.txt'}, prepared: {tmp_path / 'p'}}}\n"
        f"model: {{hidden_size: 32, embedding_size: 16}}\n"
        f"train: {{out: {tmp_path / 'run'}, batch_size: 2, k1: 5, epochs: 1000, log_every: 1}}\n")
    proc = subprocess.Popen([sys.executable, "-m", "rnnlm_cli", "train", "--config", str(cfg_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    metrics_file = tmp_path / "run" / "metrics.jsonl"
    deadline = time.time() + 60
    while time.time() < deadline and not (metrics_file.exists() and metrics_file.stat().st_size > 0):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Interrupted: checkpoint saved to" in err and "--resume" in err
    assert "Traceback" not in err
    params, _, _, _, meta = checkpoint.read(str(tmp_path / "run" / "checkpoint.npz"))
    assert meta["progress"]["step"] >= 1
    assert "embedding" in params
