"""The copy-task corpus (rnnlm corpus copy) and the recall scoring (analysis/recall.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from click.testing import CliRunner

from rnnlm_cli.analysis.recall import model_logits, score_agreement, score_copy
from rnnlm_cli.cli import cli
from rnnlm_cli.config import ModelConfig
from rnnlm_cli.data import agreement
from rnnlm_cli.data.copytask import BLANK, DELIMITER, CopyTask, memoryless_baseline, parse_line, symbol
from rnnlm_cli.data.corpus import Vocab
from rnnlm_cli.nn.model import Model


def run(args):
    result = CliRunner().invoke(cli, args, prog_name="rnnlm")
    return result.exit_code, result.stdout, result.stderr


# --------------------------------------------------------------------------- the generator

def test_lines_have_the_format(tmp_path):
    code, out, _ = run(["corpus", "copy", "--out", str(tmp_path / "c"), "-m", "3", "-a", "4", "-T", "5",
                        "--train", "20", "--valid", "2", "--test", "3"])
    assert code == 0, out
    lines = (tmp_path / "c" / "train.txt").read_text().splitlines()
    assert len(lines) == 20
    task = CopyTask(3, 4, 5)
    for line in lines:
        words = line.split()
        assert words[3:8] == [BLANK] * 5 and words[8] == DELIMITER and words[:3] == words[9:]
        assert set(words[:3]) <= {symbol(i) for i in range(4)}
        assert parse_line(words, task) == words[:3]
    assert len((tmp_path / "c" / "test.txt").read_text().splitlines()) == 3
    # all four symbols occur (60 draws from 4)
    assert {w for line in lines for w in line.split()[:3]} == {"s0", "s1", "s2", "s3"}


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        assert run(["corpus", "copy", "--out", str(tmp_path / name), "--seed", str(seed), "--train", "50"])[0] == 0
    for f in ("train.txt", "valid.txt", "test.txt", "task.json"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()
    assert (tmp_path / "a" / "train.txt").read_bytes() != (tmp_path / "c" / "train.txt").read_bytes()


@pytest.mark.parametrize("args, message", [
    (["-m", "0"], "--symbols (m) must be >= 1, got 0"),
    (["-m", "-2"], "--symbols (m) must be >= 1, got -2"),
    (["-a", "1"], "--alphabet (a) must be >= 2"),
    (["-T", "-1"], "--delay (T) must be >= 0, got -1"),
    (["--train", "0"], "--train must be >= 1, got 0"),
    (["--test", "-1"], "--test must be >= 0, got -1"),
    (["--seed", "-1"], "--seed must be >= 0"),
    (["--train", "100000000"], "tokens in all, more than"),
])
def test_bad_parameters_write_nothing(tmp_path, args, message):
    out = tmp_path / "c"
    code, stdout, stderr = run(["corpus", "copy", "--out", str(out), *args])
    assert code == 2 and stdout == ""
    assert stderr.startswith("Error: copy task: ") and stderr.count("\n") == 1 and message in stderr
    assert not out.exists()


def test_existing_folder_needs_force(tmp_path):
    out = tmp_path / "c"
    assert run(["corpus", "copy", "--out", str(out), "--train", "5"])[0] == 0
    before = (out / "train.txt").read_bytes()
    code, _, text = run(["corpus", "copy", "--out", str(out), "--train", "5", "--seed", "2"])
    assert code == 2 and text.splitlines() == [
        f"Error: --out folder {out} already holds a copy corpus; use --force to replace it"]
    assert (out / "train.txt").read_bytes() == before
    assert run(["corpus", "copy", "--out", str(out), "--train", "5", "--seed", "2", "--force"])[0] == 0
    assert (out / "train.txt").read_bytes() != before


def test_foreign_folder_refused_even_with_force(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    code, _, text = run(["corpus", "copy", "--out", str(out), "--force"])
    assert code == 2 and text.startswith("Error: ") and "notes.txt" in text and text.count("\n") == 1
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


# --------------------------------------------------------------------------- the baseline

def test_baseline_by_hand():
    # m=1, a=2, T=0: "s0 : s0" -> targets s0 : s0 <eos>: 4 positions, two of them a coin flip
    b = memoryless_baseline(1, 2, 0)
    assert b["positions_per_line"] == 4
    assert b["per_token"] == pytest.approx(2 * math.log(2) / 4)
    assert b["perfect_per_token"] == pytest.approx(math.log(2) / 4)
    assert b["per_recalled_symbol"] == pytest.approx(math.log(2))
    assert b["arjovsky"] == pytest.approx(math.log(2) / 2)      # m log a / (T + 2m)
    assert memoryless_baseline(10, 8, 100)["arjovsky"] == pytest.approx(10 * math.log(8) / 120)


# --------------------------------------------------------------------------- the scoring

def _vocab(a):
    tokens = ["<unk>", "<eos>", BLANK, DELIMITER] + [symbol(i) for i in range(a)]
    return Vocab(tokens, [1] * len(tokens))


def _oracle(task, vocab, remember: bool):
    """logits_fn of a model that knows the format; remember=True: and the content."""
    m, T, L = task.symbols, task.delay, task.line_length
    syms = [vocab.id(symbol(i)) for i in range(task.alphabet)]
    NEG = -1e30

    def logits_fn(x):
        Tn, B = x.shape
        z = np.full((Tn, B, len(vocab)), NEG)
        for t in range(Tn):
            if t < m or (m + T + 1 <= t < L and not remember):
                z[t][:, syms] = 0.0                                     # uniform over the symbols
            elif t < m + T:
                z[t, :, vocab.id(BLANK)] = 0.0
            elif t == m + T:
                z[t, :, vocab.id(DELIMITER)] = 0.0
            elif t < L:
                z[t, np.arange(B), x[t - m - T]] = 0.0                  # the symbol read m+T+1 steps back
            else:
                z[t, :, vocab.id("<eos>")] = 0.0
        return z
    return logits_fn


def _lines(task, n, seed=0):
    rng = np.random.default_rng(seed)
    return [task.line(rng).split() for _ in range(n)]


@pytest.mark.parametrize("m, a, T", [(3, 4, 5), (1, 2, 0), (10, 8, 20)])
def test_perfect_recall_scores_one(m, a, T):
    task, vocab = CopyTask(m, a, T), _vocab(a)
    r = score_copy(_oracle(task, vocab, True), _lines(task, 70), task, vocab)
    assert r["accuracy"] == 1.0 and r["per_position"] == [1.0] * m and r["sequences_all_recalled"] == 1.0
    assert r["loss_per_token"] == pytest.approx(m * math.log(a) / (T + 2 * m + 2))
    assert r["loss_per_token"] == pytest.approx(r["baseline"]["perfect_per_token"])
    assert r["loss_per_recalled_symbol"] == pytest.approx(0.0)
    assert r["excess_recovered"] == pytest.approx(1.0)


@pytest.mark.parametrize("m, a, T", [(3, 4, 5), (10, 8, 20)])
def test_memoryless_sits_at_the_baseline(m, a, T):
    task, vocab = CopyTask(m, a, T), _vocab(a)
    lines = _lines(task, 200)
    r = score_copy(_oracle(task, vocab, False), lines, task, vocab)
    assert r["loss_per_token"] == pytest.approx(r["baseline"]["per_token"])
    assert r["loss_per_token"] == pytest.approx(2 * m * math.log(a) / (T + 2 * m + 2))
    assert r["loss_per_recalled_symbol"] == pytest.approx(math.log(a))
    assert r["excess_recovered"] == pytest.approx(0.0, abs=1e-9)
    # a tie is broken towards the lowest id (s0 here): right exactly where the symbol is s0
    share = np.mean([w == "s0" for words in lines for w in words[:m]])
    assert r["accuracy"] == pytest.approx(share)


def test_model_logits_are_the_models_step_predictions():
    vocab = _vocab(3)
    cfg = ModelConfig(cell="gru", hidden_size=6, embedding_size=5)
    model = Model(cfg, len(vocab), dtype=np.float64, rng=np.random.default_rng(3))
    x = np.random.default_rng(4).integers(0, len(vocab), size=(7, 2))
    z = model_logits(model)(x)
    state = None
    for t in range(7):
        logits, state = model.step_logits(x[t], state)
        np.testing.assert_allclose(z[t], logits, rtol=1e-10, atol=1e-12)


def test_agreement_scoring_by_oracle():
    rng = np.random.default_rng(0)
    items = [agreement.generate_sentence(rng, d, plural=bool(i % 2)) for i in range(40) for d in (2, 6)]
    words = sorted({w for it in items for w in it.words} | {it.wrong for it in items})
    vocab = Vocab(["<unk>", "<eos>"] + words, [1] * (len(words) + 2))
    answer = {tuple(vocab.id(w) for w in it.prefix): (vocab.id(it.verb), vocab.id(it.wrong)) for it in items}

    def oracle(right: bool):
        def fn(x):
            z = np.zeros(x.shape + (len(vocab),))
            for b in range(x.shape[1]):
                ids = tuple(int(v) for v in x[1:, b])
                for n in range(len(ids), 0, -1):                       # the item whose prefix this is
                    if ids[:n] in answer:
                        good, bad = answer[ids[:n]]
                        z[n, b, good if right else bad] = 1.0
                        break
            return z
        return fn

    r = score_agreement(oracle(True), items, vocab)
    assert r["accuracy"] == 1.0 and r["per_distance"] == {"2": 1.0, "6": 1.0}
    assert score_agreement(oracle(False), items, vocab)["accuracy"] == 0.0
