"""Random chunk lengths (train.k1_spread, as AWD-LSTM draws its BPTT lengths): the lengths'
distribution, the tiling of the stream, the rate scaled by length / k1, bit-exact mid-epoch
resume, and the gradient of a chunk of a drawn length against finite differences."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from rnnlm_cli.analysis.gradcheck import _check_one
from rnnlm_cli.config import load_config
from rnnlm_cli.data.batching import MIN_CHUNK, P_FULL, StreamBatches, batchify, chunk_lengths
from rnnlm_cli.data.corpus import load_prepared
from rnnlm_cli.nn.gradients import dense
from rnnlm_cli.nn.model import Model
from rnnlm_cli.train import checkpoint, step
from rnnlm_cli.train.trainer import Trainer, train


def test_lengths_centre_on_k1_times_0975():
    # k1 = 70, spread 5 (AWD-LSTM's PTB setting). Each length is N(70, 5) with probability 0.95,
    # N(35, 5) with 0.05, rounded: the mean is 70 (0.95 + 0.05 / 2) = 68.25 (rounding a normal
    # centred on an integer adds no bias; the clips at 5 and 140 lie 6 and 14 sd away). The
    # variance is 5^2 + 0.95 * 0.05 * 35^2 = 83.2 (+1/12 for rounding), so the mean of 20000
    # lengths has sd 0.065: the bound of 0.4 is 6 sd.
    k1, spread = 70, 5.0
    lengths = chunk_lengths(np.random.default_rng(7), k1, spread, steps=20001 * 68)[:-1]   # the last one is cut
    assert len(lengths) > 19000
    assert abs(lengths.mean() - k1 * (P_FULL + (1 - P_FULL) / 2)) < 0.4
    # the short base: about 5% of the draws centre on 35 (binomial sd 0.0016 on the share)
    assert abs((lengths < 52).mean() - (1 - P_FULL)) < 0.01
    assert abs(lengths.std() - np.sqrt(83.2 + 1 / 12)) < 0.3


def test_lengths_stay_within_their_bounds_and_sum_to_the_steps():
    for k1, spread in ((8, 20.0), (3, 10.0), (40, 1.0)):
        lengths = chunk_lengths(np.random.default_rng(1), k1, spread, steps=997)
        assert lengths.sum() == 997
        assert lengths[:-1].min() >= min(MIN_CHUNK, k1) and lengths.max() <= 2 * k1
    # spread 0: k1, or k1 / 2 = 4 raised to the shortest chunk, 5
    assert set(chunk_lengths(np.random.default_rng(1), 8, 0.0, 4000)[:-1].tolist()) == {5, 8}


def test_an_epoch_tiles_the_stream_exactly():
    tokens = np.arange(1000) % 97
    B = 4
    data = batchify(tokens, B)                         # (250, 4)
    steps = len(data) - 1
    lengths = chunk_lengths(np.random.default_rng(3), 9, 4.0, steps)
    batches = StreamBatches(tokens, B, 9, lengths=lengths)
    assert len(batches) == len(lengths)
    xs = [b.x for b in batches]
    ys = [b.y for b in batches]
    assert [x.shape[0] for x in xs] == lengths.tolist() and len(set(lengths.tolist())) > 1
    np.testing.assert_array_equal(np.concatenate(ys), data[1:])          # every target once, in order
    np.testing.assert_array_equal(np.concatenate(xs), data[:-1])
    # stream b's targets are its stretch of the token stream
    np.testing.assert_array_equal(np.concatenate(ys)[:, 2], tokens[2 * 250 + 1: 3 * 250])
    assert all(b.loss_start == 0 and b.carry == b.x.shape[0] for b in batches)   # the final state is carried
    assert list(batches.iterate(3))[0].position == int(lengths[:3].sum())
    with pytest.raises(ValueError):
        StreamBatches(tokens, B, 9, lengths=lengths[:-1])                 # must cover the stream


# --------------------------------------------------------------------------- in training

def corpus(tmp_path, n_sent=200, seed=0):
    rng = np.random.default_rng(seed)
    lines = [f"the {rng.choice(['dog', 'cat', 'man'])} runs home" for _ in range(n_sent)]
    folder = tmp_path / "corpus"
    folder.mkdir(exist_ok=True)
    (folder / "train.txt").write_text("\n".join(lines[:160]) + "\n", encoding="utf-8")
    (folder / "valid.txt").write_text("\n".join(lines[160:]) + "\n", encoding="utf-8")
    return folder


def config(tmp_path, *overrides, out="run"):
    folder = corpus(tmp_path)
    base = [f"data.train={folder / 'train.txt'}", f"data.valid={folder / 'valid.txt'}",
            f"data.prepared={tmp_path / 'prepared'}", f"train.out={tmp_path / out}", "model.hidden_size=6",
            "model.embedding_size=4", "train.batch_size=4", "train.k1=8", "train.k1_spread=3",
            "train.log_every=1", "train.dtype=float64", "train.optimizer=sgd", "train.lr=0.5"]
    return load_config(None, base + list(overrides))


def metrics(out):
    with open(os.path.join(out, "metrics.jsonl"), encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def test_each_epoch_draws_its_lengths_and_tiles_the_training_stream(tmp_path):
    cfg = config(tmp_path, "train.max_steps=1")
    train(cfg)                                         # builds the prepared folder
    trainer = Trainer(cfg, load_prepared(cfg.data.prepared))
    first, second = trainer._batches(0), trainer._batches(1)
    assert [b.x.shape[0] for b in first] == [b.x.shape[0] for b in trainer._batches(0)]     # (seed, epoch) decides
    assert [b.x.shape[0] for b in first] != [b.x.shape[0] for b in second]
    data = batchify(trainer.train_tokens, 4)
    for batches in (first, second):
        np.testing.assert_array_equal(np.concatenate([b.y for b in batches]), data[1:])


def test_the_rate_is_scaled_by_length_over_k1(tmp_path):
    # one plain SGD update (no clipping) from the initial weights: p1 = p0 - (lr * L / k1) g
    cfg = config(tmp_path, "train.max_steps=1", "train.clip=none")
    train(cfg)
    trainer = Trainer(cfg.replace(train={"out": str(tmp_path / "unused")}), load_prepared(cfg.data.prepared))
    batch = trainer._batches(0).batch(0)
    L = batch.x.shape[0]
    assert L != cfg.train.k1                           # a drawn length (seed 1234: see the assert)
    model = Model(cfg.model, trainer.model.V, dtype=np.float64, params=trainer.model.params)
    _, grads, _ = step.batch_gradients(model, batch, None, mode="stream", train=True,
                                       rng=np.random.default_rng(0), normalize="token")
    after = checkpoint.read(os.path.join(cfg.train.out, "checkpoint.npz"))[0]
    lr = cfg.train.lr * L / cfg.train.k1
    for name, p0 in trainer.model.params.items():
        np.testing.assert_array_equal(after[name], p0 - lr * dense(grads[name]), err_msg=name)
    line = [m for m in metrics(cfg.train.out) if "split" not in m][0]
    assert line["chunk_len"] == L and line["lr"] == cfg.train.lr      # the base rate is logged
    assert line["tokens"] == L * cfg.train.batch_size


def test_mid_epoch_resume_is_bit_exact(tmp_path):
    common = ["train.epochs=2", "train.eval_every=6", "model.cell=lstm", "model.dropout_output=0.2",
              "train.dtype=float32", "train.optimizer=adam", "train.lr=0.02"]
    straight = config(tmp_path, *common, "train.max_steps=40", out="straight")
    train(straight)
    train(config(tmp_path, *common, "train.max_steps=11", out="halves"))
    rest = config(tmp_path, *common, "train.max_steps=40", out="halves")
    train(rest, resume=True)
    a = checkpoint.read(os.path.join(straight.train.out, "checkpoint.npz"))
    b = checkpoint.read(os.path.join(rest.train.out, "checkpoint.npz"))
    for i in (0, 1):
        assert a[i].keys() == b[i].keys()
        for name in a[i]:
            np.testing.assert_array_equal(a[i][name], b[i][name], err_msg=name)
    la = [(m["step"], m["loss"], m["chunk_len"]) for m in metrics(straight.train.out) if "split" not in m]
    lb = [(m["step"], m["loss"], m["chunk_len"]) for m in metrics(rest.train.out) if "split" not in m]
    assert la == lb and len({c for _, _, c in la}) > 1
    assert a[4]["progress"]["epoch"] == 1                # the run crossed into the second epoch's draws


def test_gradient_of_a_drawn_length_chunk_passes_gradcheck():
    # the feature changes the chunk's length, not the gradient: the stream loss of a chunk of a
    # drawn length (not k1) from a random carried state, against finite differences
    cfg = load_config(None, ["model.cell=lstm", "model.hidden_size=4", "model.embedding_size=4"])
    rng = np.random.default_rng(5)
    tokens = rng.integers(0, 7, size=300)
    lengths = chunk_lengths(np.random.default_rng(2), 6, 3.0, len(batchify(tokens, 2)) - 1)
    batches = StreamBatches(tokens, 2, 6, lengths=lengths)
    c = next(i for i, n in enumerate(lengths) if n not in (6, 3) and n > 6)
    batch = batches.batch(c)
    model = Model(cfg.model, 7, dtype=np.float64, rng=np.random.default_rng(0))
    state = tuple(rng.uniform(-0.8, 0.8, size=(2, 4)) for _ in model.initial_state(2))

    def loss_fn():
        return model.forward(batch.x, batch.y, state, loss_start=batch.loss_start).loss

    def grad_fn():
        return step.batch_gradients(model, batch, state, mode="stream", train=False, normalize="sum")[1]

    rows = _check_one(model, loss_fn, grad_fn, 1e-5, 0, np.random.default_rng(1), tolerance=1e-6)
    assert batch.x.shape[0] == lengths[c] != 6
    assert all(r[3] for r in rows), [r for r in rows if not r[3]]
