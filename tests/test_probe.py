"""`rnnlm probe`: scoring rule, bins, Wilson intervals, the checkpoint path, the CLI, the probe set."""

from __future__ import annotations

import importlib
import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, strategies as st

from rnnlm_cli.data import agreement as A
from rnnlm_cli.analysis import probe as P
from rnnlm_cli.render import probe as R
from rnnlm_cli.cli import cli
from rnnlm_cli.config import build_config
from rnnlm_cli.errors import ConfigError, DataError
from rnnlm_cli.runs import load_model
from rnnlm_cli.train.trainer import train

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "corpora" / "agreement"


def invoke(*args):
    return CliRunner().invoke(cli, list(map(str, args)), prog_name="rnnlm")


def assert_error(result, start, code):
    assert result.exit_code == code, result.output
    assert result.stderr.startswith(f"Error: {start}") and result.stderr.count("\n") == 1, result.stderr
    assert result.stdout == "" and "Traceback" not in result.output


def synthetic(per_distance: int, distances=range(1, 31)) -> list[A.AgreementItem]:
    """Balanced items (alternating number) with prefixes of the right shape; words are dummies."""
    items = []
    for d in distances:
        for i in range(per_distance):
            plural = i % 2 == 1
            items.append(A.AgreementItem(prefix=["the", "dogs" if plural else "dog"] + ["x"] * d,
                                         verb="are" if plural else "is", wrong="is" if plural else "are",
                                         suffix=[], distance=d, plural=plural, subject_index=1))
    return items


# --------------------------------------------------------------------------- scoring rule and statistics

def oracle(items):
    """Knows the grammar: the correct form always gets the higher log-probability."""
    return np.full(len(items), -0.1), np.full(len(items), -2.5)


def prefers_singular(items):
    """Ignores the subject: always prefers the singular form (correct exactly for singular subjects)."""
    lc = np.where([not item.plural for item in items], -0.5, -1.5)
    return lc, np.where([not item.plural for item in items], -1.5, -0.5)


def test_oracle_is_always_right():
    items = synthetic(4)
    result = P.run_probe(items, [("oracle", oracle, {})])
    model = result["models"][0]
    assert [b["bin"] for b in model["bins"]] == ["1", "2", "3-4", "5-8", "9-16", "17-30"]
    assert [b["n"] for b in model["bins"]] == [4, 4, 8, 16, 32, 56]
    assert all(b["accuracy"] == 1.0 and b["mean_margin"] == pytest.approx(2.4) for b in model["bins"])
    assert model["overall"] == {**model["overall"], "n": 120, "correct": 120, "accuracy": 1.0}
    assert all(d["accuracy"] == 1.0 for d in model["distances"]) and len(model["distances"]) == 30


def test_subject_blind_models_sit_at_chance():
    items = synthetic(100)                                    # 3000 items, balanced in every bin
    constant = P.summarize(items, *prefers_singular(items))
    assert all(b["accuracy"] == 0.5 for b in constant["bins"]) and constant["overall"]["mean_margin"] == 0.0
    rng = np.random.default_rng(0)
    noise = P.summarize(items, rng.normal(size=len(items)), rng.normal(size=len(items)))
    overall = noise["overall"]
    assert overall["ci_low"] <= 0.5 <= overall["ci_high"]
    assert overall["ci_high"] - overall["ci_low"] < 0.04     # a large set gives a tight interval
    assert abs(overall["mean_margin"]) < 0.1


def test_a_tie_counts_as_wrong():
    items = synthetic(2, distances=[1])
    result = P.summarize(items, np.zeros(2), np.zeros(2))
    assert result["overall"]["correct"] == 0 and result["overall"]["mean_margin"] == 0.0


def test_wilson_interval_hand_computed():
    # computed by hand (30-digit decimals) from the equivalent form
    # (k + z^2/2)/(n + z^2) -+ z sqrt(n)/(n + z^2) sqrt(p(1-p) + z^2/4n), z = 1.959963984540054
    assert P.wilson_interval(15, 30) == pytest.approx((0.331541, 0.668459), abs=1e-6)
    assert P.wilson_interval(25, 30) == pytest.approx((0.664356, 0.926635), abs=1e-6)
    assert P.wilson_interval(0, 10) == pytest.approx((0.0, 0.277533), abs=1e-6)
    assert P.wilson_interval(30, 30) == pytest.approx((0.886487, 1.0), abs=1e-6)
    assert all(math.isnan(v) for v in P.wilson_interval(0, 0))


@given(st.integers(1, 2000), st.data())
def test_wilson_interval_contains_the_estimate_inside_unit_range(n, data):
    k = data.draw(st.integers(0, n))
    low, high = P.wilson_interval(k, n)
    assert 0.0 <= low <= k / n <= high <= 1.0 and high - low > 0


def test_bins_from_edges_and_the_data_range():
    assert P.make_bins([1, 2, 4, 8, 16, 30]) == [(1, 1), (2, 2), (3, 4), (5, 8), (9, 16), (17, 30)]
    assert P.make_bins([0, 5]) == [(0, 0), (1, 5)]
    # the first bin takes shorter distances, the last longer ones
    assert P.make_bins([2, 10], [0, 3, 40]) == [(0, 2), (3, 40)]
    for bad in ([], [3, 3], [4, 2], [-1, 2]):
        with pytest.raises(ConfigError, match="probe.bins"):
            P.make_bins(bad)


def test_bins_count_hand_built_items_and_skip_empty_bins():
    items = synthetic(2, distances=[1, 3, 4, 20])
    margin = np.array([1.0, -1.0, 2.0, 2.0, 3.0, -3.0, 0.5, 0.5])
    result = P.summarize(items, margin, np.zeros(8), edges=[1, 2, 4, 8])
    assert [(b["bin"], b["n"], b["correct"]) for b in result["bins"]] == [("1", 2, 1), ("3-4", 4, 3), ("5-20", 2, 2)]
    three_four = result["bins"][1]
    assert three_four["accuracy"] == 0.75 and three_four["mean_margin"] == pytest.approx(1.0)
    assert (three_four["ci_low"], three_four["ci_high"]) == pytest.approx(P.wilson_interval(3, 4))
    assert [d["distance"] for d in result["distances"]] == [1, 3, 4, 20]


def test_run_probe_schema_table_and_csv():
    items = synthetic(2, distances=[1, 2, 9])
    result = P.run_probe(items, [("oracle", oracle, {"cell": "none"}), ("blind", prefers_singular, {})],
                         data="x.jsonl")
    assert set(result) == {"data", "items", "distance_range", "bin_edges", "confidence", "interval", "rule",
                           "models"}
    assert result["distance_range"] == [1, 9] and result["items"] == 6 and result["interval"] == "wilson"
    assert [m["label"] for m in result["models"]] == ["oracle", "blind"] and result["models"][0]["cell"] == "none"
    table = R.render_table(result).splitlines()
    assert table[0] == "probe: x.jsonl, 6 items, distance 1-9"
    assert table[2].split() == ["oracle", "blind"]
    assert table[4].split() == ["1", "2", "1.000", "[0.34,1.00]", "+2.40", "0.500", "[0.09,0.91]", "+0.00"]
    assert table[-1].split()[:3] == ["all", "6", "1.000"]
    csv_lines = R.render_csv(result).splitlines()
    assert csv_lines[0] == ",".join(R.CSV_FIELDS)
    assert csv_lines[1].startswith("oracle,1,1,1,2,2,1.0,") and csv_lines[4].startswith("oracle,all,1,9,6,6,1.0,")
    assert len(csv_lines) == 1 + 2 * 4


def test_checkpoint_labels_are_run_folders():
    assert P.checkpoint_labels(["runs/probe/gru/best.npz", "x/lstm/best.npz"]) == ["gru", "lstm"]
    assert P.checkpoint_labels(["a/tanh/best.npz", "b/tanh/best.npz"]) == ["a/tanh/best.npz", "b/tanh/best.npz"]


# --------------------------------------------------------------------------- a tiny trained checkpoint

@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A small model trained for one epoch on 400 agreement sentences (about a second), and a
    probe file of committed items whose words it knows."""
    root = tmp_path_factory.mktemp("probe")
    lines = {name: (CORPUS / f"{name}.txt").read_text(encoding="utf-8").splitlines() for name in ("train", "valid")}
    (root / "train.txt").write_text("\n".join(lines["train"][:400]) + "\n", encoding="utf-8")
    (root / "valid.txt").write_text("\n".join(lines["valid"][:40]) + "\n", encoding="utf-8")
    cfg = build_config({
        "data": {"train": str(root / "train.txt"), "valid": str(root / "valid.txt"), "prepared": str(root / "data")},
        "model": {"cell": "gru", "embedding_size": 8, "hidden_size": 16},
        "train": {"out": str(root / "gru"), "bptt": "full", "batch_size": 16, "epochs": 1,
                  "optimizer": "adam", "lr": 0.01, "log_every": 100}})
    train(cfg, progress=False)
    known = set(" ".join(lines["train"][:400]).split())
    items = [item for item in A.read_probe_set(CORPUS / "probe.jsonl")
             if set(item.prefix) | {item.verb, item.wrong} <= known]
    picked = [item for d in range(1, 13) for item in [i for i in items if i.distance == d][:3]]
    assert len(picked) > 12
    probe_file = root / "probe.jsonl"
    probe_file.write_text("".join(json.dumps(i.probe_record()) + "\n" for i in picked), encoding="utf-8")
    return {"root": root, "checkpoint": str(root / "gru" / "best.npz"), "probe": str(probe_file), "items": picked}


def test_checkpoint_scores_equal_reading_one_item_at_a_time(tiny_run):
    score, info = P.checkpoint_scorer(tiny_run["checkpoint"])
    items = tiny_run["items"]
    lc, lw = score(items)
    assert info["cell"] == "gru" and info["bptt"] == "full" and info["oov_prefix_tokens"] == 0
    assert info["valid_ppl"] is not None
    # reference: step by step from the zero state over <eos> + prefix, one item at a time
    model, cfg, _ = load_model(tiny_run["checkpoint"])
    from rnnlm_cli.data.corpus import load_prepared
    vocab = load_prepared(cfg.data.prepared).vocab
    for i, item in enumerate(items):
        state = None
        for word in ["<eos>"] + item.prefix:
            logits, state = model.step_logits(np.array([vocab.id(word)]), state)
        z = logits[0].astype(np.float64)
        logp = z - z.max() - np.log(np.exp(z - z.max()).sum())
        assert lc[i] == pytest.approx(logp[vocab.index[item.verb]], abs=1e-4)
        assert lw[i] == pytest.approx(logp[vocab.index[item.wrong]], abs=1e-4)


def test_cli_json_schema_and_side_by_side(tiny_run):
    ck = tiny_run["checkpoint"]
    result = invoke("probe", "--checkpoint", ck, "--data", tiny_run["probe"], "--format", "json",
                    "--set", "probe.bins=[2,6,12]")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["items"] == len(tiny_run["items"]) and doc["bin_edges"] == [2, 6, 12]
    (model,) = doc["models"]
    assert model["label"] == "gru" and model["path"] == ck
    assert {"cell", "hidden_size", "bptt", "k1", "k2", "valid_ppl", "bins", "distances", "overall"} <= set(model)
    assert [b["bin"] for b in model["bins"]] == ["1-2", "3-6", "7-12"]
    for row in model["bins"] + [model["overall"]]:
        assert set(row) >= {"n", "correct", "accuracy", "ci_low", "ci_high", "mean_margin"}
        assert 0 <= row["ci_low"] <= row["accuracy"] <= row["ci_high"] <= 1
    assert sum(b["n"] for b in model["bins"]) == model["overall"]["n"] == doc["items"]
    # two checkpoints: two column groups, the same numbers in each
    table = invoke("probe", "--checkpoint", ck, "--checkpoint", ck, "--data", tiny_run["probe"])
    assert table.exit_code == 0, table.output
    rows = table.stdout.splitlines()
    labels = rows[2].split()   # the same run folder twice: the paths, shortened from the left
    assert len(labels) == 2 and all(label.startswith("...") and label.endswith("/gru/best.npz") for label in labels)
    assert all(r.split()[2:5] == r.split()[5:8] for r in rows[4:-1])
    csv_out = invoke("probe", "--checkpoint", ck, "--data", tiny_run["probe"], "--format", "csv")
    assert csv_out.stdout.splitlines()[0] == ",".join(R.CSV_FIELDS)


def test_cli_errors_are_one_line(tiny_run, tmp_path):
    ck = tiny_run["checkpoint"]
    assert_error(invoke("probe", "--checkpoint", tmp_path / "none.npz"),
                 "Invalid value for '--checkpoint': File", 2)
    assert_error(invoke("probe", "--checkpoint", ck, "--set", f"probe.data={tmp_path / 'none.jsonl'}"),
                 f"probe file not found: {tmp_path / 'none.jsonl'}", 1)
    assert_error(invoke("probe", "--checkpoint", ck, "--data", tmp_path / "none.jsonl"),
                 "Invalid value for '--data'", 2)
    bad = tmp_path / "flies.jsonl"
    bad.write_text(json.dumps({"prefix": "the man here", "verb": "flies", "wrong": "fly", "distance": 1,
                               "plural": False}) + "\n", encoding="utf-8")
    assert_error(invoke("probe", "--checkpoint", ck, "--data", bad),
                 f"verb form 'flies' (probe item 'the man here flies') is not in the vocabulary of {ck}", 1)
    assert_error(invoke("probe", "--checkpoint", ck, "--set", "probe.bins=[4,2]"),
                 "probe.bins: expected strictly increasing distances >= 0, got [4, 2]", 2)
    assert_error(invoke("probe"), "Missing option '--checkpoint'", 2)


def test_cli_plot(tiny_run, tmp_path):
    png = tmp_path / "probe.png"
    result = invoke("probe", "--checkpoint", tiny_run["checkpoint"], "--data", tiny_run["probe"], "--plot", png)
    try:
        importlib.import_module("matplotlib")
    except ImportError:
        assert_error(result, "--plot needs matplotlib", 1)
        assert not png.exists()
        return
    assert result.exit_code == 0, result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_help():
    result = invoke("probe", "-h")
    assert result.exit_code == 0
    assert result.stdout.startswith("Usage: rnnlm probe [OPTIONS]\n\n  Long-range agreement accuracy by distance")
    assert "  Example:\n    rnnlm probe --checkpoint runs/probe/tanh/best.npz\n" in result.stdout
    for option in ("--config", "--set", "--checkpoint", "--data", "--plot", "--format"):
        assert option in result.stdout


def test_probe_horizons_command_reads_probe_and_diagnose_json(tmp_path):
    result = P.run_probe(synthetic(2), [("tanh", oracle, {}), ("gru", prefers_singular, {})])
    (tmp_path / "probe.json").write_text(json.dumps(result), encoding="utf-8")
    (tmp_path / "tanh").mkdir()
    (tmp_path / "tanh" / "diagnose.json").write_text(json.dumps(
        {"steps": 50, "threshold": 0.001, "models": [{"horizon": 12, "horizon_is_lower_bound": False,
                                                      "half_life": 2.5}]}), encoding="utf-8")
    out = invoke("probe-horizons", tmp_path / "probe.json", tmp_path / "tanh" / "diagnose.json")
    assert out.exit_code == 0, out.output
    lines = out.stdout.splitlines()
    assert lines[0] == ("gradient horizon (largest lag whose normalised gradient norm stays above 0.001, T = 50) "
                        "against agreement accuracy at long distances")
    # the oracle gets all 2 x 8 items of bin 9-16 and 2 x 14 of bin 17-30 right; the rows read in
    # fixed columns of 12, 8, 10, 2 + 19 and 2 + 19 characters
    low16, low28 = P.wilson_interval(16, 16)[0], P.wilson_interval(28, 28)[0]
    assert lines[1] == "model        horizon half-life  acc 9-16             acc 17-30"
    assert lines[2] == f"tanh              12       2.5  1.000 [{low16:.2f},1.00]    1.000 [{low28:.2f},1.00]"
    assert lines[3].split()[:3] == ["gru", "-", "-"]
    missing = invoke("probe-horizons", tmp_path / "probe.json", tmp_path / "missing.json")
    assert_error(missing, "Invalid value for 'DIAGNOSE_JSONS...'", 2)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "diagnose.json").write_text("{not json", encoding="utf-8")
    assert_error(invoke("probe-horizons", tmp_path / "probe.json", tmp_path / "bad" / "diagnose.json"),
                 f"cannot read {tmp_path / 'bad' / 'diagnose.json'}: ", 1)
    assert_error(invoke("probe-horizons", tmp_path / "tanh" / "diagnose.json", tmp_path / "tanh" / "diagnose.json"),
                 f"{tmp_path / 'tanh' / 'diagnose.json'} and the diagnoses do not hold the fields", 1)
    assert "Example:\n    rnnlm probe-horizons " in invoke("probe-horizons", "-h").stdout


def test_default_probe_set_is_package_data(tiny_run, monkeypatch):
    """With no probe.data the probe reads the set shipped in rnnlm_cli/data, via importlib.resources."""
    shipped = P.default_probe_file()
    assert shipped.is_file() and shipped.name == "agreement_probe.jsonl"
    assert shipped.read_bytes() == (CORPUS / "probe.jsonl").read_bytes()
    monkeypatch.chdir(tiny_run["root"])      # a folder with no corpora/ in it
    real_load, seen = P.load_items, []

    def load_then_score_the_known_items(path):
        seen.append((path, len(real_load(path))))
        return tiny_run["items"]

    monkeypatch.setattr(P, "load_items", load_then_score_the_known_items)
    result = P.probe_checkpoints([tiny_run["checkpoint"]])
    assert seen == [(result["data"], 900)] and result["items"] == len(tiny_run["items"])
    assert Path(result["data"]).resolve() == (ROOT / "rnnlm_cli" / "data" / "agreement_probe.jsonl").resolve()


# --------------------------------------------------------------------------- the committed probe set

def test_probe_set_is_never_in_the_training_split_and_balanced():
    items = A.read_probe_set(CORPUS / "probe.jsonl")
    counts = Counter(item.distance for item in items)
    assert counts == {d: 30 for d in range(1, 31)}
    assert all(sum(i.plural for i in items if i.distance == d) == 15 for d in counts)
    # the file stores no suffix: regenerate the full sentences with the corpus's seed, check they
    # are exactly the committed items, then check none of them is a training sentence
    splits = A.generate_corpus(1, 4000, 0, 0, 30)
    full = A.generate_probe_set(1, 30, range(1, 31), {i.text for i in splits["train"]},
                                verb_pairs=A.covered_pairs(splits["train"]))
    assert [i.probe_record() for i in full] == [i.probe_record() for i in items]
    train_lines = set((CORPUS / "train.txt").read_text(encoding="utf-8").splitlines())
    assert not {item.text for item in full} & train_lines
    # both verb forms of every item occur as verbs in training
    train_words = Counter(w for line in train_lines for w in line.split())
    assert all(train_words[i.verb] and train_words[i.wrong] for i in items)


# --------------------------------------------------------------------------- probe items, field by field

GOOD_ITEM = {"prefix": "the dog near the cats", "verb": "runs", "wrong": "run", "distance": 3, "plural": False}


def with_fields(**changes):
    item = {**GOOD_ITEM, **changes}
    return {k: v for k, v in item.items() if v is not DROP}


DROP = object()
DISTANCE = "expected an integer >= 1 (the words between the subject and the verb)"


@pytest.mark.parametrize("record,message", [
    (with_fields(distance=0), f"distance is 0, {DISTANCE}"),
    (with_fields(distance=-2), f"distance is -2, {DISTANCE}"),
    (with_fields(distance=1.5), f"distance is 1.5, {DISTANCE}"),
    (with_fields(distance=2.0), f"distance is 2.0, {DISTANCE}"),
    (with_fields(distance=True), f"distance is True, {DISTANCE}"),
    (with_fields(distance="3"), f"distance is '3', {DISTANCE}"),
    (with_fields(distance=None), f"distance is None, {DISTANCE}"),
    (with_fields(distance=5), "distance 5 exceeds the prefix (5 words: the subject would lie before it)"),
    (with_fields(wrong="runs"), "verb and wrong are both 'runs': the item cannot tell right from wrong"),
    (with_fields(verb="runs away"), "verb is 'runs away', expected one word"),
    (with_fields(wrong=""), "wrong is '', expected one word"),
    (with_fields(verb=7), "verb is 7, expected one word"),
    (with_fields(prefix=""), "prefix is '', expected the words before the verb (non-empty text)"),
    (with_fields(prefix="   "), "prefix is '   ', expected the words before the verb (non-empty text)"),
    (with_fields(prefix=["the", "dog"]), "prefix is ['the', 'dog'], expected the words before the verb (non-empty text)"),
    (with_fields(plural="no"), "plural is 'no', expected true or false"),
    (with_fields(plural=0), "plural is 0, expected true or false"),
    (with_fields(plural=DROP), "missing field plural"),
    (with_fields(verb=DROP, wrong=DROP), "missing fields verb, wrong"),
    (with_fields(note="x"), "unknown field note"),
    (with_fields(prefix="x" * 1000), "distance 3 exceeds the prefix (1 words: the subject would lie before it)"),
    (with_fields(verb="v " * 1000), "verb is '" + "v " * 18 + "..., expected one word"),
    (with_fields(**{"x" * 1000: 1}), "unknown field " + "x" * 37 + "..."),
    ([1, 2], "expected a JSON object with prefix, verb, wrong, distance, plural, got [1, 2]"),
    ("item", "expected a JSON object with prefix, verb, wrong, distance, plural, got 'item'"),
])
def test_bad_probe_items_are_refused_with_the_line(tmp_path, record, message):
    from rnnlm_cli.data.agreement import read_probe_set
    p = tmp_path / "items.jsonl"
    p.write_text(json.dumps(GOOD_ITEM) + "\n\n" + json.dumps(record) + "\n", encoding="utf-8")
    with pytest.raises(DataError) as err:
        read_probe_set(p)
    assert str(err.value) == f"{p}:3: {message}"


def test_good_probe_items_and_blank_lines_read_back(tmp_path):
    from rnnlm_cli.data.agreement import read_probe_set
    p = tmp_path / "items.jsonl"
    p.write_text("\n" + json.dumps(GOOD_ITEM) + "\n  \n" + json.dumps({**GOOD_ITEM, "plural": True}), encoding="utf-8")
    items = read_probe_set(p)
    assert [(i.distance, i.plural, i.subject_index, i.prefix[i.subject_index]) for i in items] == [
        (3, False, 1, "dog"), (3, True, 1, "dog")]


@pytest.mark.parametrize("content,message", [
    (b"", "probe file {p} holds no items"),
    (b"\n \n", "probe file {p} holds no items"),
    (b'{"prefix": "the dog", "verb": "runs", "wrong": "run", "distance": 1, "plural": false}\n\xe9\n',
     "{p}: invalid UTF-8 at line 2, byte offset 86"),
    (b'{"prefix": "the dog", "verb": "runs", "wrong": "run", "distance": 0, "plural": false}\n',
     "{p}:1: distance is 0, " + DISTANCE),
    (b'{"prefix": "the dog", "verb": "runs", "wrong": "run", "distance": true, "plural": false}\n',
     "{p}:1: distance is True, " + DISTANCE),
])
def test_cli_refuses_bad_probe_files(tiny_run, tmp_path, content, message):
    p = tmp_path / "items.jsonl"
    p.write_bytes(content)
    assert_error(invoke("probe", "--checkpoint", tiny_run["checkpoint"], "--data", p), message.format(p=p), 1)
