"""generate: greedy and top-k strategies on a hand-built model whose next-token distribution is
known, reproducibility by seed, one sample per line at char level, unknown prime tokens warned."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from rnnlm_cli.cli import cli
from rnnlm_cli.cli.read_cmds import one_line
from rnnlm_cli.config import load_config
from rnnlm_cli.data.corpus import load_prepared
from rnnlm_cli.errors import ConfigError
from rnnlm_cli.nn.model import Model
from rnnlm_cli.sample import generate

WORDS = "a b c d e f\nf e d c b a\nb a d c f e\n" * 5 + "rare\n"     # min_count=2 maps `rare` to <unk>
CHARS = "ab\ncd\nab\ncd\nba\ndc\n" * 10


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], prog_name="rnnlm")


@pytest.fixture(scope="module")
def words(tmp_path_factory):
    root = tmp_path_factory.mktemp("gen")
    (root / "w.txt").write_text(WORDS, encoding="utf-8")
    assert invoke("preprocess", "--train", root / "w.txt", "--out", root / "prep", "-q",
                  "--set", "data.split=[1.0,0.0,0.0]", "--set", "data.min_count=2").exit_code == 0
    return load_prepared(str(root / "prep"))


def fixed_model(prepared, bias: dict):
    """Every weight 0, output bias given per token: the next-token logits are the bias, whatever
    was read, so the argmax and the top-k set are known."""
    cfg = load_config(None, ["model.hidden_size=3", "model.embedding_size=3"])
    model = Model(cfg.model, len(prepared.vocab), dtype=np.float64)
    for p in model.params.values():
        p[...] = 0.0
    for token, value in bias.items():
        model.params["output.b"][prepared.vocab.index[token]] = value
    return model, cfg


def run(model, cfg, prepared, **kw):
    args = dict(n=4, max_tokens=12, temperature=1.0, prime="", seed=3, allow_unk=False)
    args.update(kw)
    return generate(model, prepared, cfg, **args)


def test_greedy_takes_the_argmax(words):
    model, cfg = fixed_model(words, {"c": 2.0, "d": 1.9, "<eos>": -5.0})
    texts = run(model, cfg, words, strategy="greedy")
    assert texts == ["c " * 11 + "c"] * 4
    assert run(model, cfg, words, strategy="greedy", seed=99) == texts        # no randomness at all


def test_top_k_draws_only_the_k_most_likely(words):
    model, cfg = fixed_model(words, {"a": 3.0, "b": 2.9, "c": 2.8, "d": -1.0, "e": -1.0, "f": -1.0, "<eos>": -9.0})
    texts = run(model, cfg, words, top_k=3, n=20, max_tokens=30)
    seen = {w for t in texts for w in t.split()}
    assert seen == {"a", "b", "c"}
    assert run(model, cfg, words, top_k=3, n=20, max_tokens=30) == texts       # same seed, same samples
    assert run(model, cfg, words, top_k=3, n=20, max_tokens=30, seed=4) != texts
    assert run(model, cfg, words, top_k=1, n=3) == run(model, cfg, words, strategy="greedy", n=3)
    everything = {w for t in run(model, cfg, words, n=40, max_tokens=40) for w in t.split()}
    assert {"d", "e", "f"} & everything                                         # without top_k the tail is drawn


def test_top_k_larger_than_the_vocabulary_is_all(words):
    model, cfg = fixed_model(words, {"a": 1.0})
    assert run(model, cfg, words, top_k=1000) == run(model, cfg, words, top_k=0)


def test_contradictory_or_bad_settings_are_refused(words):
    model, cfg = fixed_model(words, {})
    with pytest.raises(ConfigError, match="generate.top_k .3. restricts sampling; generate.strategy=greedy"):
        run(model, cfg, words, strategy="greedy", top_k=3)
    with pytest.raises(ConfigError, match="generate.strategy: expected one of sample, greedy"):
        run(model, cfg, words, strategy="beam")
    with pytest.raises(ConfigError, match="generate.prime: a NUL character is not text"):
        run(model, cfg, words, prime="a\0b")


def test_unknown_prime_tokens_are_warned(words):
    model, cfg = fixed_model(words, {"a": 1.0})
    said = []
    run(model, cfg, words, prime="a zebra b zebra yak", log=said.append)
    assert said == ["warning: the prime holds 2 token types not in the vocabulary, read as <unk>: 'zebra', 'yak'"]
    said.clear()
    run(model, cfg, words, prime="a b", log=said.append)
    assert said == []


def test_one_line_escapes():
    assert one_line("ab\ncd\\n\r") == "ab\\ncd\\\\n\\r"


@pytest.fixture(scope="module")
def char_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("chars")
    (root / "c.txt").write_text(CHARS, encoding="utf-8")
    (root / "w.txt").write_text(WORDS, encoding="utf-8")
    small = ["--set", "model.hidden_size=4", "--set", "model.embedding_size=4", "--set", "train.batch_size=2",
             "--set", "train.k1=4", "--set", "data.min_count=2", "--max-steps", "3", "-q"]
    for name, level in (("c", "char"), ("w", "word")):
        r = invoke("train", "--set", f"data.train={root / f'{name}.txt'}", "--set", f"data.level={level}",
                   "--set", f"data.prepared={root / f'prep-{name}'}", "--out", root / f"run-{name}", *small)
        assert r.exit_code == 0, r.output
    return root


def test_char_samples_stay_one_per_line(char_run):
    ck = char_run / "run-c" / "checkpoint.npz"
    table = invoke("generate", "--checkpoint", ck, "--n", "5", "--max-tokens", "40")
    raw = invoke("generate", "--checkpoint", ck, "--n", "5", "--max-tokens", "40", "--format", "json")
    assert table.exit_code == 0 and raw.exit_code == 0
    samples = json.loads(raw.stdout)["samples"]
    assert any("\n" in s for s in samples)                   # the model does emit newlines
    assert table.stdout.splitlines() == [one_line(s) for s in samples]


def test_cli_greedy_top_k_and_warning(char_run):
    ck = char_run / "run-w" / "checkpoint.npz"
    greedy = invoke("generate", "--checkpoint", ck, "--greedy", "--n", "3")
    assert greedy.exit_code == 0 and len(set(greedy.stdout.splitlines())) == 1
    assert invoke("generate", "--checkpoint", ck, "--set", "generate.strategy=greedy", "--n", "3").stdout == \
        greedy.stdout
    a = invoke("generate", "--checkpoint", ck, "--top-k", "2", "--n", "4", "--seed", "5")
    b = invoke("generate", "--checkpoint", ck, "--top-k", "2", "--n", "4", "--seed", "5")
    assert a.exit_code == 0 and a.stdout == b.stdout
    both = invoke("generate", "--checkpoint", ck, "--greedy", "--top-k", "2")
    assert (both.exit_code, both.stdout) == (2, "")
    assert both.stderr == ("Error: generate.top_k (2) restricts sampling; generate.strategy=greedy always takes "
                           "the most likely token: set one of them\n")
    bad = invoke("generate", "--checkpoint", ck, "--set", "generate.strategy=beam")
    assert bad.exit_code == 2 and bad.stderr.startswith("Error: --set generate.strategy=beam: generate.strategy: "
                                                        "expected one of sample, greedy, got 'beam'") or \
        bad.stderr.startswith("Error: generate.strategy: expected one of sample, greedy, got 'beam'")
    neg = invoke("generate", "--checkpoint", ck, "--set", "generate.top_k=-1")
    assert neg.exit_code == 2 and "generate.top_k: expected a value >= 0, got -1" in neg.stderr
    warned = invoke("generate", "--checkpoint", ck, "--prime", "a zebra")
    assert warned.exit_code == 0 and warned.stdout.startswith("a zebra")
    assert warned.stderr == ("warning: the prime holds 1 token type not in the vocabulary, read as <unk>: "
                             "'zebra'\n")
