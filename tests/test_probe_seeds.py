"""`rnnlm probe --over-seeds` and the probe tables of the docs: statistics over seeds (mean,
range, per-seed values) on hand-built per-seed results, the command on tiny trained models,
horizons over seeds, and the generated tables of README.md and results/probe.md."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from rnnlm_cli.analysis import probe as P
from rnnlm_cli.cli import cli
from rnnlm_cli.config import build_config
from rnnlm_cli.errors import ConfigError
from rnnlm_cli.render import probe as R
from rnnlm_cli.train.trainer import train
from test_probe import oracle, prefers_singular, synthetic
import test_probe

tiny_run = test_probe.tiny_run      # the tiny trained GRU and probe file of test_probe.py (a fixture)

ROOT = Path(__file__).resolve().parents[1]


def invoke(*args):
    return CliRunner().invoke(cli, list(map(str, args)), prog_name="rnnlm")


def anti_oracle(items):
    """Always prefers the wrong form: accuracy 0, margin -2.4."""
    lc, lw = oracle(items)
    return lw, lc


def right_first(k):
    """A scorer that gets exactly the first k items right (margin +1) and the rest wrong (-1)."""
    def score(items):
        margin = np.where(np.arange(len(items)) < k, 1.0, -1.0)   # (N,)
        return margin, np.zeros(len(items))
    return score


# --------------------------------------------------------------------------- statistics over seeds

def test_spread_is_mean_range_and_values():
    s = P.spread([0.5, 0.75, 1.0])
    assert s == {"mean": 0.75, "min": 0.5, "max": 1.0, "per_seed": [0.5, 0.75, 1.0]}
    assert P.spread([3]) == {"mean": 3.0, "min": 3.0, "max": 3.0, "per_seed": [3.0]}
    # a value missing for one seed leaves the statistic without a spread, but keeps the values
    assert P.spread([2.0, None]) == {"mean": None, "min": None, "max": None, "per_seed": [2.0, None]}


def test_aggregate_hand_built_seeds_in_seed_order():
    items = synthetic(2, distances=[1, 2, 9])       # bins 1, 2 and 9-16, two items each
    # given out of order: seed 3 always right, seed 1 blind to the subject (half right), seed 2 always wrong
    result = P.run_probe(items, [("s3", oracle, {"seed": 3, "cell": "tanh", "valid_ppl": 20.0}),
                                 ("s1", prefers_singular, {"seed": 1, "cell": "tanh", "valid_ppl": 21.0}),
                                 ("s2", anti_oracle, {"seed": 2, "cell": "tanh", "valid_ppl": 25.0})])
    model = P.aggregate_seeds("tanh", result["models"])
    assert model["label"] == "tanh" and model["cell"] == "tanh" and model["seeds"] == [1, 2, 3]
    assert [run["label"] for run in model["runs"]] == ["s1", "s2", "s3"]
    assert model["valid_ppl"] == {"mean": 22.0, "min": 20.0, "max": 25.0, "per_seed": [21.0, 25.0, 20.0]}
    assert [b["bin"] for b in model["bins"]] == ["1", "2", "9-16"] and [b["n"] for b in model["bins"]] == [2, 2, 2]
    for row in model["bins"] + [model["overall"]]:
        assert row["accuracy"] == {"mean": 0.5, "min": 0.0, "max": 1.0, "per_seed": [0.5, 0.0, 1.0]}
        margin = row["mean_margin"]
        assert margin["per_seed"] == pytest.approx([0.0, -2.4, 2.4])
        assert (margin["mean"], margin["min"], margin["max"]) == pytest.approx((0.0, -2.4, 2.4))
    assert model["overall"]["n"] == 6 and [d["distance"] for d in model["distances"]] == [1, 2, 9]


def test_aggregate_unequal_seeds_and_the_renderers():
    items = synthetic(4, distances=[1])              # one bin of 4 items
    runs = P.run_probe(items, [(f"s{s}", right_first(k), {"seed": s}) for s, k in ((1, 1), (2, 2), (3, 4))])
    result = {**runs, "data": "x.jsonl", "over_seeds": True, "models": [P.aggregate_seeds("m", runs["models"])]}
    acc = result["models"][0]["bins"][0]["accuracy"]
    assert acc["per_seed"] == [0.25, 0.5, 1.0] and acc["mean"] == pytest.approx(1.75 / 3)
    assert (acc["min"], acc["max"]) == (0.25, 1.0)
    # margins: seed 1 = (1 - 3) / 4, seed 2 = 0, seed 3 = +1
    assert result["models"][0]["bins"][0]["mean_margin"]["per_seed"] == [-0.5, 0.0, 1.0]
    lines = R.render_table(result).splitlines()
    assert lines[0] == "probe: x.jsonl, 4 items, distance 1-1"
    assert lines[1].startswith("acc: mean over seeds") and lines[2].split() == ["m"]
    assert lines[3].split() == ["distance", "n", "acc", "range", "margin"]
    assert lines[4].split() == ["1", "4", "0.583", "[0.25,1.00]", "+0.17"]
    assert lines[-1].split() == ["seeds", "1,2,3"]
    csv_lines = R.render_csv(result).splitlines()
    assert csv_lines[0] == ",".join(R.SEED_CSV_FIELDS)
    assert csv_lines[1] == f"m,1,1,1,4,1 2 3,{1.75 / 3!r},0.25,1.0,{0.5 / 3!r},-0.5,1.0"
    assert csv_lines[2].startswith("m,all,1,1,4,1 2 3,")


def test_same_seed_twice_is_refused():
    items = synthetic(1, distances=[1])
    runs = P.run_probe(items, [("a", oracle, {"seed": 1, "path": "a/best.npz"}),
                               ("b", oracle, {"seed": 1, "path": "b/best.npz"})])["models"]
    with pytest.raises(ConfigError, match=r"a/best.npz and b/best.npz are the same model with the same "
                                          r"train.seed \(1\): give each seed once"):
        P.aggregate_seeds("m", runs)


def test_group_labels_name_the_folder_holding_the_runs():
    assert P.group_label(["runs/probe/gru/seed1/best.npz", "runs/probe/gru/seed2/best.npz"]) == "gru"
    assert P.group_label(["a/gru/best.npz", "b/gru-2/best.npz"]) == "gru"   # no common folder: the first run


# --------------------------------------------------------------------------- horizons over seeds

def _seed_result(tmp_path, accuracies):
    """A probe result over seeds of one model `tanh` whose runs sit in tmp_path/tanh/seedS."""
    items = synthetic(4, distances=[1])
    scorers = [(f"s{s}", right_first(k), {"seed": s, "path": str(tmp_path / "tanh" / f"seed{s}" / "best.npz")})
               for s, k in accuracies]
    runs = P.run_probe(items, scorers)
    return {**runs, "over_seeds": True, "models": [P.aggregate_seeds("tanh", runs["models"])]}


def _diagnosis(horizon, bound, half_life):
    return {"steps": 50, "threshold": 0.001,
            "models": [{"horizon": horizon, "horizon_is_lower_bound": bound, "half_life": half_life}]}


def test_horizons_over_seeds_by_run_folder(tmp_path):
    result = _seed_result(tmp_path, [(1, 1), (2, 2), (3, 4)])
    diagnoses = {str(tmp_path / "tanh" / "seed1"): _diagnosis(30, False, 3.0),
                 str(tmp_path / "tanh" / "seed3"): _diagnosis(49, True, None),
                 str(tmp_path / "tanh" / "seed2"): _diagnosis(36, False, 4.0)}
    merged = P.add_horizons(result, diagnoses)
    assert "horizon" not in result["models"][0]                  # the input is left as it was
    model = merged["models"][0]
    assert [r["horizon"] for r in model["runs"]] == [30, 36, 49]
    assert model["horizon"] == {"mean": pytest.approx(115 / 3), "min": 30.0, "max": 49.0, "per_seed": [30.0, 36.0, 49.0]}
    assert model["horizon_is_lower_bound"] == [False, False, True]
    assert model["half_life"]["per_seed"] == [3.0, 4.0, None] and model["half_life"]["mean"] is None
    assert (merged["horizon_steps"], merged["horizon_threshold"]) == (50, 0.001)
    lines = R.horizon_table(merged).splitlines()
    assert lines[0].endswith("; mean over seeds [lowest, highest seed]")
    assert lines[1].split() == ["model", "seeds", "horizon", "half-life", "acc", "1"]
    assert lines[2].split() == ["tanh", "3", ">=38.3", "[30,>=49]", "-", "0.583", "[0.25,1.00]"]
    # a run without a diagnosis has no horizon, and the model none over seeds
    partial = P.add_horizons(result, {str(tmp_path / "tanh" / "seed1"): _diagnosis(30, False, 3.0)})
    assert partial["models"][0]["horizon"]["mean"] is None and "-" in R.horizon_table(partial).splitlines()[2].split()


def test_readme_and_seed_tables_from_a_hand_built_result(tmp_path):
    result = _seed_result(tmp_path, [(1, 4), (2, 2)])
    result["models"][0].update({"cell": "relu", "recurrent_init": "identity", "bptt": "stream", "k1": 5, "k2": 5})
    merged = P.add_horizons(result, {str(tmp_path / "tanh" / f"seed{s}"): _diagnosis(49, True, None) for s in (1, 2)})
    assert R.readme_table(merged).splitlines() == [
        "| model | cell | BPTT | seeds | acc d = 1 | gradient horizon |",
        "|---|---|---|---|---|---|",
        "| tanh | ReLU, identity init (IRNN) | stream, k1 = k2 = 5 | 2 | 0.750 [0.500, 1.000] | >=49 (every seed) |"]
    seeds = R.seed_table(merged).splitlines()
    assert seeds[0] == "| model | seed | valid ppl | acc d = 1 | horizon |"
    low, high = P.wilson_interval(2, 4)
    assert seeds[3] == f"| tanh | 2 | - | 0.500 [{low:.2f}, {high:.2f}] | >=49 |"


def test_regions_are_replaced_between_their_markers():
    text = "a\n<!-- t: begin -->\nold\n<!-- t: end -->\nb\n"
    assert R.region(text, "t") == "old" and R.region(text, "u") is None
    new = R.replace_regions(text, {"t": "| x |\n| 1 |", "u": "ignored"})
    assert new == "a\n<!-- t: begin -->\n| x |\n| 1 |\n<!-- t: end -->\nb\n"
    assert R.region(new, "t") == "| x |\n| 1 |"


# --------------------------------------------------------------------------- the command on tiny trained models

@pytest.fixture(scope="module")
def seed_runs(tiny_run):
    """Two seeds of a tiny GRU and one of a tiny tanh RNN, laid out as runs/MODEL/seedS, trained
    on tiny_run's data (one epoch each)."""
    root = tiny_run["root"]
    paths = {}
    for cell, seed in (("gru", 1), ("gru", 2), ("tanh", 1)):
        out = root / "seeds" / cell / f"seed{seed}"
        train(build_config({
            "data": {"train": str(root / "train.txt"), "valid": str(root / "valid.txt"),
                     "prepared": str(root / "data")},
            "model": {"cell": cell, "embedding_size": 8, "hidden_size": 16},
            "train": {"out": str(out), "seed": seed, "bptt": "full", "batch_size": 16, "epochs": 1,
                      "optimizer": "adam", "lr": 0.01, "log_every": 100}}), progress=False)
        paths[cell, seed] = str(out / "best.npz")
    return {**tiny_run, "runs": paths}


def test_cli_over_seeds_groups_by_model_and_keeps_each_seed(seed_runs):
    runs, probe = seed_runs["runs"], seed_runs["probe"]
    order = [runs["gru", 2], runs["tanh", 1], runs["gru", 1]]
    out = invoke("probe", "--over-seeds", *[a for ck in order for a in ("--checkpoint", ck)], "--data", probe,
                 "--set", "probe.bins=[2,6,12]", "--format", "json")
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout)
    assert doc["over_seeds"] is True and doc["bin_edges"] == [2, 6, 12]
    assert [(m["label"], m["seeds"]) for m in doc["models"]] == [("gru", [1, 2]), ("tanh", [1])]
    gru = doc["models"][0]
    assert [r["path"] for r in gru["runs"]] == [runs["gru", 1], runs["gru", 2]] and gru["cell"] == "gru"
    # each seed's numbers are those of probing that checkpoint alone
    alone = [P.probe_checkpoints([runs["gru", s]], data=probe, edges=[2, 6, 12])["models"][0] for s in (1, 2)]
    for i, row in enumerate(gru["bins"]):
        per_seed = [a["bins"][i]["accuracy"] for a in alone]
        assert row["accuracy"]["per_seed"] == per_seed
        assert row["accuracy"]["mean"] == pytest.approx(sum(per_seed) / 2)
        assert (row["accuracy"]["min"], row["accuracy"]["max"]) == (min(per_seed), max(per_seed))
        assert row["n"] == alone[0]["bins"][i]["n"]
    assert gru["overall"]["accuracy"]["per_seed"] == [a["overall"]["accuracy"] for a in alone]
    assert gru["valid_ppl"]["per_seed"] == [a["valid_ppl"] for a in alone]
    # table and CSV
    table = invoke("probe", "--over-seeds", "--checkpoint", runs["gru", 1], "--checkpoint", runs["gru", 2],
                   "--data", probe)
    assert table.exit_code == 0, table.output
    assert table.stdout.splitlines()[2].split() == ["gru"] and table.stdout.splitlines()[-1].split() == ["seeds", "1,2"]
    csv_out = invoke("probe", "--over-seeds", "--checkpoint", runs["tanh", 1], "--data", probe, "--format", "csv")
    assert csv_out.exit_code == 0 and csv_out.stdout.splitlines()[0] == ",".join(R.SEED_CSV_FIELDS)


def test_cli_over_seeds_refuses_a_seed_given_twice(seed_runs):
    ck = seed_runs["runs"]["gru", 1]
    out = invoke("probe", "--over-seeds", "--checkpoint", ck, "--checkpoint", ck, "--data", seed_runs["probe"])
    assert out.exit_code == 2 and out.stdout == ""
    assert out.stderr == f"Error: {ck} and {ck} are the same model with the same train.seed (1): give each seed once\n"


def test_cli_probe_horizons_over_seeds(seed_runs, tmp_path):
    runs = seed_runs["runs"]
    out = invoke("probe", "--over-seeds", "--checkpoint", runs["gru", 1], "--checkpoint", runs["gru", 2],
                 "--data", seed_runs["probe"], "--format", "json")
    probe_json = tmp_path / "probe.json"
    probe_json.write_text(out.stdout, encoding="utf-8")
    diag = []
    for seed, horizon in ((1, 12), (2, 20)):
        path = Path(runs["gru", seed]).parent / "diagnose.json"
        path.write_text(json.dumps(_diagnosis(horizon, False, 2.0)), encoding="utf-8")
        diag.append(path)
    merged = invoke("probe-horizons", probe_json, *diag, "--format", "json")
    assert merged.exit_code == 0, merged.output
    model = json.loads(merged.stdout)["models"][0]
    assert model["horizon"] == {"mean": 16.0, "min": 12.0, "max": 20.0, "per_seed": [12.0, 20.0]}
    text = invoke("probe-horizons", probe_json, *diag)
    assert text.exit_code == 0, text.output
    assert text.stdout.splitlines()[2].split()[:5] == ["gru", "2", "16.0", "[12,20]", "2.0"]


# --------------------------------------------------------------------------- the committed results and docs

RESULT = json.loads((ROOT / "results" / "probe.json").read_text(encoding="utf-8"))


def test_committed_results_cover_every_probe_config_with_three_seeds():
    configs = sorted(p.stem for p in (ROOT / "configs" / "probe").glob("*.yaml"))
    assert RESULT["over_seeds"] is True and sorted(m["label"] for m in RESULT["models"]) == configs
    for m in RESULT["models"]:
        assert len(m["seeds"]) >= 3 and len(m["runs"]) == len(m["seeds"])
        assert all(run["horizon"] is not None for run in m["runs"])


@pytest.mark.parametrize("doc", ["README.md", "results/probe.md"])
def test_generated_tables_equal_what_results_probe_json_renders(doc):
    """`make probe` (scripts/probe_docs.py) rewrites these regions; a stale one fails here."""
    text = (ROOT / doc).read_text(encoding="utf-8")
    regions = {name: body for name, body in R.doc_regions(RESULT).items() if R.region(text, name) is not None}
    assert regions, f"{doc} holds no generated probe region"
    for name, body in regions.items():
        assert R.region(text, name) == body, f"{doc}: region {name} is stale; run `make probe`"


def test_prose_claims_hold_for_every_seed_in_results_probe_json():
    """The README's and results/probe.md's statements about the probe, checked against the data:
    each range is the lowest and highest seed, rounded as the prose quotes it."""
    models = {m["label"]: m for m in RESULT["models"]}

    def long_acc(label):                          # per-seed accuracy at d = 17-30
        (row,) = [b for b in models[label]["bins"] if b["bin"] == "17-30"]
        return row["accuracy"]["per_seed"]

    def quoted(values):
        return f"{min(values):.2f}-{max(values):.2f}"

    # gated cells with whole-sentence BPTT: above 0.90 for every seed, the LSTM above 0.96
    assert min(long_acc("gru") + long_acc("lstm")) > 0.90 and min(long_acc("lstm")) > 0.96
    # the stream-trained tanh: 0.51-0.60, below every seed of the whole-sentence tanh, GRU and LSTM
    stream = long_acc("tanh-k5") + long_acc("tanh-k35")
    assert quoted(stream) == "0.51-0.60"
    assert max(stream) < min(long_acc("tanh") + long_acc("gru") + long_acc("lstm"))
    # horizons: every stream seed (13-25) below every whole-sentence tanh seed (33-41)
    horizons = {label: m["horizon"]["per_seed"] for label, m in models.items()}
    stream_h = horizons["tanh-k5"] + horizons["tanh-k35"]
    assert (min(stream_h), max(stream_h)) == (13, 25) and (min(horizons["tanh"]), max(horizons["tanh"])) == (33, 41)
    assert all(models["irnn"]["horizon_is_lower_bound"])
    full = ("tanh", "irnn", "gru", "lstm")
    assert min(full, key=lambda label: models[label]["bins"][-1]["accuracy"]["mean"]) == "irnn"
    # what a seed decides: the whole-sentence tanh and IRNN, and no ordering between tanh and GRU
    assert quoted(long_acc("tanh")) == "0.62-0.96" and quoted(long_acc("irnn")) == "0.55-0.92"
    assert max(long_acc("tanh")) > min(long_acc("gru")) and min(long_acc("tanh")) < max(long_acc("gru"))
    # the earlier single-seed table was seed 1: today's seed 1
    seed1 = {label: models[label]["seeds"].index(1) for label in ("tanh", "irnn")}
    assert f"{long_acc('tanh')[seed1['tanh']]:.3f}" == "0.862" and horizons["tanh"][seed1["tanh"]] == 41
    assert f"{long_acc('irnn')[seed1['irnn']]:.3f}" == "0.814"
