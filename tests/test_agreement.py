"""Tests for the agreement corpus generator, the committed corpus, and scripts/fetch_corpora.sh."""

import json
import shutil
import subprocess
from collections import Counter
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from rnnlm_cli.cli import cli
from rnnlm_cli.data import agreement as A
from rnnlm_cli.errors import ConfigError, DataError

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "corpora" / "agreement"
FILES = ["train.txt", "valid.txt", "test.txt", "probe.jsonl"]
SHIPPED_PROBE = resources.files("rnnlm_cli.data").joinpath("agreement_probe.jsonl")   # package data
SINGULAR = {pair[0] for pair in A.NOUNS}
PLURAL = {pair[1] for pair in A.NOUNS}


def items_at_every_distance(max_distance=40, seeds=(0, 1, 2)):
    for seed in seeds:
        rng = np.random.default_rng(seed)
        for distance in range(max_distance + 1):
            for plural in (False, True):
                yield A.generate_sentence(rng, distance, plural)


def test_same_seed_same_output_and_different_seed_differs():
    first = A.generate_corpus(3, 200, 20, 20, 30)
    assert first == A.generate_corpus(3, 200, 20, 20, 30)
    assert first["train"] != A.generate_corpus(4, 200, 20, 20, 30)["train"]
    probe = A.generate_probe_set(3, 4, range(1, 6), set())
    assert probe == A.generate_probe_set(3, 4, range(1, 6), set())
    assert probe != A.generate_probe_set(4, 4, range(1, 6), set())


def test_verb_is_exactly_distance_words_after_the_subject_head():
    for item in items_at_every_distance():
        assert item.verb_index - item.subject_index - 1 == item.distance
        assert item.words[item.verb_index] == item.verb
        assert item.text == " ".join(item.prefix + [item.verb] + item.suffix)
        head = item.prefix[item.subject_index]
        assert head in (PLURAL if item.plural else SINGULAR), item.text


def test_correct_and_wrong_forms_have_the_right_number():
    for item in items_at_every_distance(10):
        pair = (item.wrong, item.verb) if item.plural else (item.verb, item.wrong)
        assert pair in A.VERB_PAIRS


def test_no_agreeing_verb_form_before_the_verb():
    for item in items_at_every_distance():
        assert not A.AGREEING_FORMS & set(item.prefix), item.text


def test_vocabularies_keep_agreeing_forms_out_of_the_grammar():
    other = set(A.ADJECTIVES + A.ADVERBS + A.PREPOSITIONS + A.PAST_TRANSITIVE
                + A.PAST_INTRANSITIVE + A.SINGULAR_DETERMINERS + A.PLURAL_DETERMINERS)
    assert not A.AGREEING_FORMS & (SINGULAR | PLURAL | other)
    assert not SINGULAR & PLURAL  # every noun shows its number


def test_attractors_of_the_opposite_number_occur_but_not_always():
    rng = np.random.default_rng(5)
    items = [A.generate_sentence(rng, 10, bool(i % 2)) for i in range(200)]
    opposite = [any(w in (SINGULAR if it.plural else PLURAL)
                    for w in it.prefix[it.subject_index + 1:]) for it in items]
    assert 0.3 < np.mean(opposite) < 0.95


def test_verb_pairs_restriction_and_negative_distance():
    rng = np.random.default_rng(0)
    item = A.generate_sentence(rng, 4, True, verb_pairs=[("sings", "sing")])
    assert (item.verb, item.wrong) == ("sing", "sings")
    with pytest.raises(ConfigError):
        A.generate_sentence(rng, -1, False)
    with pytest.raises(ConfigError):
        A.generate_sentence(rng, 2, False, verb_pairs=[])
    with pytest.raises(ConfigError):
        A.generate_corpus(-1, 1, 1, 1, 5)


def corpus_cli(*args):
    return CliRunner().invoke(cli, ["corpus", "agreement", *map(str, args)], prog_name="rnnlm")


def test_corpus_command_reports_errors_in_one_line(tmp_path):
    result = corpus_cli("--out", tmp_path, "--seed", "-1")
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr == "Error: agreement seed, corpus sizes and max_distance must be >= 0\n"
    (tmp_path / "file").write_text("x")
    result = corpus_cli("--out", tmp_path / "file" / "sub")
    assert result.exit_code == 1 and result.stderr.startswith(f"Error: cannot write the agreement corpus to {tmp_path}")
    assert result.stderr.count("\n") == 1
    result = corpus_cli()
    assert result.exit_code == 2 and "Missing option '--out'" in result.stderr


def test_corpus_command_help_has_an_example():
    result = corpus_cli("-h")
    assert result.exit_code == 0
    assert "Example:\n    rnnlm corpus agreement --out corpora/agreement\n" in result.stdout


def test_corpus_distance_distribution_covers_the_range_weighted_short():
    weights = A.distance_weights(30)
    assert weights.sum() == pytest.approx(1.0)
    assert np.all(np.diff(weights) < 0) and weights[-1] > 0
    items = A.generate_corpus(1, 3000, 0, 0, 30)["train"]
    counts = Counter(item.distance for item in items)
    assert set(counts) == set(range(31))
    assert counts[0] > counts[5] > counts[25]
    assert 0.45 < np.mean([item.plural for item in items]) < 0.55


def test_probe_set_balanced_disjoint_and_restricted():
    train = A.generate_corpus(2, 500, 0, 0, 6)["train"]
    exclude = {item.text for item in train}
    pairs = [("is", "are"), ("goes", "go")]
    probe = A.generate_probe_set(2, 6, range(0, 8), exclude, verb_pairs=pairs)
    assert Counter(item.distance for item in probe) == {d: 6 for d in range(8)}
    for d in range(8):
        assert sum(item.plural for item in probe if item.distance == d) == 3
    texts = [item.text for item in probe]
    assert len(set(texts)) == len(texts) and not exclude & set(texts)
    assert {item.verb for item in probe} <= {form for pair in pairs for form in pair}


def test_probe_set_regenerates_on_collision():
    # Exclude everything a same-seeded run would produce first: the probe must still fill up.
    first = A.generate_probe_set(9, 4, range(0, 3), set())
    again = A.generate_probe_set(9, 4, range(0, 3), {item.text for item in first})
    assert len(again) == 12 and not {i.text for i in first} & {i.text for i in again}


def test_committed_files_equal_a_fresh_regeneration(tmp_path):
    result = corpus_cli("--out", tmp_path, "--seed", 1)
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == [str(tmp_path / name) for name in FILES]
    for name in FILES:
        assert (tmp_path / name).read_bytes() == (COMMITTED / name).read_bytes(), (
            f"corpora/agreement/{name} is stale: run rnnlm corpus agreement --out corpora/agreement")
    # the probe set `rnnlm probe` reads by default is the package's copy: the same bytes
    assert (tmp_path / "probe.jsonl").read_bytes() == SHIPPED_PROBE.read_bytes()


def test_committed_files_sizes_format_and_vocabulary():
    sizes = {name: (COMMITTED / name).stat().st_size for name in FILES}
    assert sum(sizes.values()) < 400_000
    assert 150_000 < sizes["train.txt"] < 250_000
    lines = {name: (COMMITTED / name).read_text(encoding="utf-8").splitlines() for name in FILES}
    assert 4000 <= len(lines["train.txt"]) <= 6000
    assert len(lines["valid.txt"]) == len(lines["test.txt"]) == len(lines["train.txt"]) // 10
    for name in FILES:
        raw = (COMMITTED / name).read_bytes()
        assert raw.endswith(b"\n") and b"\r" not in raw
    words = {w for name in FILES[:3] for line in lines[name] for w in line.split(" ")}
    assert "" not in words and all(w == w.lower() for w in words)
    assert 100 <= len(words) <= 300
    # probe.jsonl: the documented fields, every d = 1..30 with 15 + 15 items, none from training
    probe = [json.loads(line) for line in lines["probe.jsonl"]]
    assert all(set(r) == {"prefix", "verb", "wrong", "distance", "plural"} for r in probe)
    assert Counter((r["distance"], r["plural"]) for r in probe) == {
        (d, p): 15 for d in range(1, 31) for p in (False, True)}
    train = set(lines["train.txt"])
    assert not any(f"{r['prefix']} {r['verb']}" in train for r in probe)


def test_read_probe_set_round_trip_and_errors(tmp_path):
    items = A.read_probe_set(COMMITTED / "probe.jsonl")
    assert len(items) == 900
    for item in items:
        assert item.prefix[item.subject_index] in (PLURAL if item.plural else SINGULAR)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prefix": "the man", "verb": "goes"}\n')
    with pytest.raises(DataError, match="bad.jsonl:1"):
        A.read_probe_set(bad)


# scripts/fetch_corpora.sh: checksum verification, offline (file:// mirrors stand in for the web).
SCRIPT = ROOT / "scripts" / "fetch_corpora.sh"
SHARED = ROOT.parent / "shared" / "corpora"
needs_tools = pytest.mark.skipif(not (shutil.which("bash") and shutil.which("curl")
                                      and (shutil.which("md5sum") or shutil.which("md5"))),
                                 reason="needs bash, curl and md5sum")


def fetch(*args, env=None):
    return subprocess.run(["bash", str(SCRIPT), *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=60)


@needs_tools
def test_fetch_script_verify_only_reports_mismatch_and_missing(tmp_path):
    (tmp_path / "ptb").mkdir()
    (tmp_path / "ptb" / "ptb.train.txt").write_text("not the treebank\n")
    result = fetch("--verify-only", tmp_path)
    assert result.returncode == 1
    assert "checksum mismatch" in result.stderr and "ptb.train.txt" in result.stderr
    assert "missing" in result.stderr


@needs_tools
def test_fetch_script_keeps_a_bad_download_aside(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for name in ("ptb.train.txt", "ptb.valid.txt", "ptb.test.txt", "input.txt"):
        (mirror / name).write_text("corrupted\n")
    env = {"PATH": "/usr/bin:/bin", "PTB_BASE_URL": mirror.as_uri(),
           "SHAKESPEARE_URL": (mirror / "input.txt").as_uri()}
    result = fetch(tmp_path / "out", env=env)
    assert result.returncode == 1 and "checksum mismatch" in result.stderr
    assert (tmp_path / "out" / "ptb" / "ptb.train.txt.bad").exists()
    assert not (tmp_path / "out" / "ptb" / "ptb.train.txt").exists()


@needs_tools
@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/corpora is absent")
def test_fetch_script_accepts_the_real_corpora(tmp_path):
    assert fetch("--verify-only", SHARED).returncode == 0
    env = {"PATH": "/usr/bin:/bin", "PTB_BASE_URL": (SHARED / "ptb").as_uri(),
           "SHAKESPEARE_URL": (SHARED / "tinyshakespeare" / "input.txt").as_uri()}
    result = fetch(tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "tinyshakespeare" / "input.txt").stat().st_size == 1115394
