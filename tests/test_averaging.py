"""Weight averaging (train.average: NT-ASGD, Merity et al. 2018): the trigger rule on hand-written
loss sequences, the average against np.mean of the iterates recorded by hand, every reader on the
averaged weights, bit-exact resume across the trigger, and rollback with an average."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
from click.testing import CliRunner

from helpers import agreement_corpus
from rnnlm_cli.cli import cli
from rnnlm_cli.config import load_config
from rnnlm_cli.data.corpus import load_prepared, separator_id
from rnnlm_cli.errors import CheckpointError
from rnnlm_cli.evaluate import evaluate_tokens
from rnnlm_cli.nn.model import Model
from rnnlm_cli.train import checkpoint, schedule
from rnnlm_cli.train.optim import Optimizer
from rnnlm_cli.train.schedule import averaging_triggered
from rnnlm_cli.train.trainer import train

NAN = float("nan")


# --------------------------------------------------------------------------- the rule, by hand

def first_trigger(losses, n):
    """The 1-based validation at which averaging starts (None: never), feeding losses in order."""
    for k, loss in enumerate(losses, start=1):
        if averaging_triggered(losses[:k - 1], loss, n):
            return k
    return None


def test_the_trigger_fires_at_the_validation_the_rule_names():
    # n = 2: validation k compares L_k with min(L_1 .. L_{k-3}), from k = 4 on
    losses = [5.0, 4.0, 3.0, 3.5, 3.2, 2.9, 3.1, 9.0]
    #  k=4: 3.5 vs min(5)           = 5   no (worse than L_3, but L_3 is among the last n)
    #  k=5: 3.2 vs min(5, 4)        = 4   no
    #  k=6: 2.9 vs min(5, 4, 3)     = 3   no
    #  k=7: 3.1 vs min(5, 4, 3, 3.5) = 3  yes
    assert [averaging_triggered(losses[:k - 1], losses[k - 1], 2) for k in range(1, 8)] == \
        [False, False, False, False, False, False, True]
    assert first_trigger(losses, 2) == 7


def test_the_trigger_needs_more_than_n_earlier_validations():
    # a loss far worse than everything before cannot fire before validation n + 2
    assert [averaging_triggered([1.0] * m, 100.0, 3) for m in range(6)] == [False] * 4 + [True] * 2
    assert first_trigger([1.0, 2.0, 3.0], 1) == 3           # k=3: 3.0 > min(L_1) = 1
    assert first_trigger([3.0, 2.0, 2.5], 1) is None        # k=3: 2.5 > min(L_1) = 3? no


def test_equal_is_not_worse_and_nan_is():
    assert not averaging_triggered([2.0, 1.0, 5.0], 2.0, 2)       # equal to min(L_1) = 2
    assert averaging_triggered([2.0, 1.0, 5.0], NAN, 2)
    assert averaging_triggered([2.0, 1.0, 5.0], math.inf, 2)
    assert first_trigger([4.0, 3.0, 2.0, 1.0, 0.5], 1) is None    # monotone: never


# --------------------------------------------------------------------------- a tiny float64 run

def corpus(tmp_path, n_sent=200, seed=0):
    return agreement_corpus(tmp_path, n_sent, seed)[0]


def config(tmp_path, *overrides, out="run"):
    folder = corpus(tmp_path)
    base = [f"data.train={folder / 'train.txt'}", f"data.valid={folder / 'valid.txt'}",
            f"data.test={folder / 'test.txt'}", f"data.prepared={tmp_path / 'prepared'}",
            f"train.out={tmp_path / out}", "model.hidden_size=6", "model.embedding_size=4", "train.dtype=float64",
            "train.batch_size=4", "train.k1=8", "train.log_every=1", "train.optimizer=sgd", "train.lr=0.5"]
    return load_config(None, base + list(overrides))


def metrics(out):
    with open(os.path.join(out, "metrics.jsonl"), encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


@pytest.fixture
def iterates(monkeypatch):
    """Every optimizer step's result, recorded by hand: a list of {name: copy of the parameter}."""
    seen = []
    real = Optimizer.step

    def step(self, params, grads, lr):
        real(self, params, grads, lr)
        seen.append({k: v.copy() for k, v in params.items()})

    monkeypatch.setattr(Optimizer, "step", step)
    return seen


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_always_averages_every_iterate_and_every_reader_sees_the_average(tmp_path, iterates, optimizer):
    cfg = config(tmp_path, "train.average=always", "train.max_steps=13", "train.eval_every=5",
                 f"train.optimizer={optimizer}", "train.lr=0.05" if optimizer == "adam" else "train.lr=0.5")
    summary = train(cfg)
    assert len(iterates) == 13
    snap = checkpoint.read_all(os.path.join(cfg.train.out, "checkpoint.npz"))
    for name in snap.params:
        oracle = np.mean([it[name] for it in iterates], axis=0)
        np.testing.assert_allclose(snap.params[name], oracle, rtol=1e-12, atol=1e-15, err_msg=name)
        np.testing.assert_array_equal(snap.raw[name], iterates[-1][name], err_msg=name)    # training goes on from it
    assert snap.meta["progress"]["avg_count"] == 13 and snap.meta["progress"]["avg_start_step"] == 0
    assert summary["averaging_started_step"] == 0 and summary["averaged_updates"] == 13

    # best.npz of the validation at step 10 holds the mean of the first 10 iterates
    best = checkpoint.read_all(os.path.join(cfg.train.out, "best.npz"))
    if best.meta["progress"]["step"] == 10:
        np.testing.assert_allclose(best.params["cell.W_h"], np.mean([it["cell.W_h"] for it in iterates[:10]], axis=0),
                                   rtol=1e-12)

    # rnnlm evaluate reads the checkpoint: its loss is that of a model built by hand from the mean
    prepared = load_prepared(cfg.data.prepared)
    res = CliRunner().invoke(cli, ["evaluate", "--checkpoint", os.path.join(cfg.train.out, "checkpoint.npz"),
                                   "--split", "valid", "--format", "json"])
    assert res.exit_code == 0, res.output
    got = json.loads(res.stdout)["loss"]
    by_hand = Model(cfg.model, len(prepared.vocab), dtype=np.float64,
                    params={k: np.mean([it[k] for it in iterates], axis=0) for k in iterates[0]})
    want = evaluate_tokens(by_hand, prepared.split("valid"), cfg, separator_id(prepared))["loss"]
    raw = Model(cfg.model, len(prepared.vocab), dtype=np.float64, params=iterates[-1])
    raw_loss = evaluate_tokens(raw, prepared.split("valid"), cfg, separator_id(prepared))["loss"]
    assert got == pytest.approx(want, rel=1e-10)
    assert abs(raw_loss - want) > 1e-6              # the raw weights would give another number

    # validations during training were of the average, and say so
    valid = [m for m in metrics(cfg.train.out) if m.get("split") == "valid" and not m.get("final")]
    assert [m["step"] for m in valid] == [5, 10] and all(m["averaged"] for m in valid)
    assert all(m["averaged"] for m in metrics(cfg.train.out) if m.get("final"))


def test_none_writes_no_average(tmp_path):
    cfg = config(tmp_path, "train.max_steps=4", "train.eval_every=2")
    summary = train(cfg)
    snap = checkpoint.read_all(os.path.join(cfg.train.out, "checkpoint.npz"))
    assert snap.raw == {} and "averaging_started_step" not in summary
    assert all("averaged" not in m for m in metrics(cfg.train.out))


def script_validations(monkeypatch, losses):
    """The first len(losses) evaluations (the validations during training) report `losses` in
    turn; later ones (the final evaluations) are real."""
    from rnnlm_cli.train import trainer as trainer_module

    real, left = trainer_module.evaluate_tokens, list(losses)

    def fake(model, tokens, cfg, sep, **kw):
        out = real(model, tokens, cfg, sep, **kw)
        if left:
            loss = left.pop(0)
            out = {**out, "loss": loss, "ppl": math.exp(loss)}
        return out

    monkeypatch.setattr(trainer_module, "evaluate_tokens", fake)


def test_nt_starts_at_the_validation_the_rule_names(tmp_path, monkeypatch, iterates):
    # validations every 3 updates report the hand-written losses; with n = 2 the 7th fires (see above)
    script_validations(monkeypatch, [5.0, 4.0, 3.0, 3.5, 3.2, 2.9, 3.1, 3.0, 3.0])
    cfg = config(tmp_path, "train.average=nt", "train.average_nonmono=2", "train.eval_every=3", "train.max_steps=27",
                 "train.epochs=2")
    summary = train(cfg)
    valid = [m for m in metrics(cfg.train.out) if m.get("split") == "valid" and not m.get("final")]
    assert [m["step"] for m in valid] == list(range(3, 28, 3))
    assert [m.get("averaging_started", False) for m in valid] == [False] * 6 + [True, False, False]
    assert [m["averaged"] for m in valid] == [False] * 7 + [True, True]    # the trigger's own was not averaged
    assert summary["averaging_started_step"] == 21 and summary["averaged_updates"] == 6
    snap = checkpoint.read_all(os.path.join(cfg.train.out, "checkpoint.npz"))
    for name in snap.params:                  # the mean of the iterates after updates 22 .. 27
        np.testing.assert_allclose(snap.params[name], np.mean([it[name] for it in iterates[21:]], axis=0),
                                   rtol=1e-12, atol=1e-15)
    assert snap.meta["progress"]["valid_history"] == [5.0, 4.0, 3.0, 3.5, 3.2, 2.9, 3.1]


# --------------------------------------------------------------------------- resume across the trigger

def fire_at_fourth(history, loss, nonmono):
    """A trigger that fires at the 4th validation (the real rule depends on real losses)."""
    return len(history) == 3


@pytest.mark.parametrize("stop_first", [13, 27], ids=["before-trigger", "after-trigger"])
def test_resume_across_the_trigger_is_bit_exact(tmp_path, monkeypatch, stop_first):
    # validations at 5, 10, 15, 20 (the trigger), 25, ...; the first part stops at 13 or at 27
    monkeypatch.setattr(schedule, "averaging_triggered", fire_at_fourth)
    common = ["train.average=nt", "train.eval_every=5", "train.epochs=2", "train.optimizer=adam", "train.lr=0.05",
              "train.dtype=float32", "model.dropout_output=0.2"]
    straight = config(tmp_path, *common, "train.max_steps=34", out="straight")
    train(straight)
    train(config(tmp_path, *common, f"train.max_steps={stop_first}", out="halves"))
    rest = config(tmp_path, *common, "train.max_steps=34", out="halves")
    train(rest, resume=True)
    for name in ("checkpoint.npz", "best.npz"):
        a = checkpoint.read_all(os.path.join(straight.train.out, name))
        b = checkpoint.read_all(os.path.join(rest.train.out, name))
        for part in ("params", "raw", "optim"):
            x, y = getattr(a, part), getattr(b, part)
            assert x.keys() == y.keys()
            for k in x:
                np.testing.assert_array_equal(x[k], y[k], err_msg=f"{name} {part}/{k}")
        assert a.meta["progress"]["avg_count"] == b.meta["progress"]["avg_count"]
    a = checkpoint.read_all(os.path.join(straight.train.out, "checkpoint.npz"))
    assert a.meta["progress"]["avg_start_step"] == 20 and a.meta["progress"]["avg_count"] == 14
    strip = [{k: v for k, v in m.items() if k not in ("tokens_per_sec", "elapsed")} for m in metrics(straight.train.out)]
    assert strip == [{k: v for k, v in m.items() if k not in ("tokens_per_sec", "elapsed")}
                     for m in metrics(rest.train.out)]


# --------------------------------------------------------------------------- rollback with an average

def test_rollback_restores_the_raw_iterate_and_the_average_of_best(tmp_path, monkeypatch):
    # always + reject_threshold: scripted losses 3.0 (best, step 4), then 9.0 at step 8 (rolled back)
    from rnnlm_cli.train import trainer as trainer_module

    script_validations(monkeypatch, [3.0, 9.0])
    seen = {}
    real_rollback = trainer_module.Trainer._roll_back_to_best

    def spy(self):
        real_rollback(self)
        seen["raw"] = {k: v.copy() for k, v in self.model.params.items()}
        seen["avg"] = {k: v.copy() for k, v in self.avg.items()}
        seen["count"] = self.p.avg_count

    monkeypatch.setattr(trainer_module.Trainer, "_roll_back_to_best", spy)
    cfg = config(tmp_path, "train.average=always", "train.reject_threshold=0.5", "train.eval_every=4",
                 "train.max_steps=8")
    train(cfg)
    best = checkpoint.read_all(os.path.join(cfg.train.out, "best.npz"))
    assert best.meta["progress"]["step"] == 4 and seen["count"] == 4
    for k in best.params:
        np.testing.assert_array_equal(seen["raw"][k], best.raw[k])
        np.testing.assert_array_equal(seen["avg"][k], best.params[k])


# --------------------------------------------------------------------------- crafted checkpoints

def crafted(tmp_path, change):
    """An averaged run's checkpoint with `change(arrays, progress)` applied and a valid checksum."""
    cfg = config(tmp_path, "train.average=always", "train.max_steps=2")
    train(cfg)
    arrays = checkpoint.load(os.path.join(cfg.train.out, "checkpoint.npz"))
    meta = json.loads(str(arrays["meta"]))
    change(arrays, meta["progress"])
    arrays["meta"] = np.array(json.dumps(meta))
    path = str(tmp_path / "crafted.npz")
    checkpoint.save(path, arrays)
    return path


def drop_raw(arrays, progress):
    for name in [n for n in arrays if n.startswith("raw/")]:
        del arrays[name]


@pytest.mark.parametrize("change, message", [
    (lambda a, p: p.update(avg_count=0), "raw/ entries are present, but meta progress.avg_count is 0"),
    (drop_raw, "meta progress.avg_count is 2, but the raw/ entries of the raw iterate are missing"),
    (lambda a, p: a.pop("raw/output.b"), r"the raw/ and param/ entries name different parameters \('output.b'\)"),
    (lambda a, p: a.update({"raw/cell.b": np.zeros(3)}), r"entry raw/cell.b has dtype float64 and shape \(3,\)"),
    (lambda a, p: a["raw/cell.b"].__setitem__(0, np.nan), "entry raw/cell.b holds non-finite values"),
    (lambda a, p: p.update(valid_history=["x"]), "progress.valid_history' is \\['x'\\], expected a list of numbers"),
    (lambda a, p: p.update(avg_started=1), "progress.avg_started' is 1, expected true or false"),
])
def test_a_crafted_averaging_state_is_refused(tmp_path, change, message):
    path = crafted(tmp_path, change)
    with pytest.raises(CheckpointError, match=message):
        checkpoint.read(path)
    res = CliRunner().invoke(cli, ["evaluate", "--checkpoint", path, "--split", "valid"])
    assert res.exit_code == 1 and res.stderr.startswith("Error: checkpoint ") and res.stderr.count("\n") == 1
