"""rnnlm longrange: the study file, the plan, the cache by hash, the summary and the command."""

from __future__ import annotations

import json
import os

import pytest
import yaml
from click.testing import CliRunner

from rnnlm_cli.cli import cli
from rnnlm_cli.errors import ConfigError
from rnnlm_cli.render.longrange import markdown, summary_table
from rnnlm_cli.studies import longrange as lr

TINY = {"common": ["model.hidden_size=4", "model.embedding_size=4", "train.batch_size=4", "train.epochs=1"],
        "models": {"tanh": ["model.cell=tanh"], "gru": ["model.cell=gru"]},
        "truncations": {"full": ["train.bptt=full"], "k3": ["train.bptt=stream", "train.k1=3"]},
        "only": {"k3": ["gru"]},
        "copy": {"symbols": 2, "alphabet": 3, "delays": [0, 2], "train": 10, "valid": 3, "test": 4},
        "agreement": {"distances": [1], "train": 10, "valid": 3, "test": 4}}


def test_plan_and_hashes(tmp_path):
    study = lr.parse_study(TINY)
    specs = lr.plan(study, str(tmp_path))
    # 3 task lengths x (tanh full, gru full, gru k3)
    assert [s.key for s in specs[:3]] == ["copy/0/tanh/full", "copy/0/gru/full", "copy/0/gru/k3"]
    assert len(specs) == 9 and len({s.hash for s in specs}) == 9
    assert [s.key for s in lr.plan(study, str(tmp_path), only="agreement/")] == [
        "agreement/1/tanh/full", "agreement/1/gru/full", "agreement/1/gru/k3"]
    again = {s.key: s.hash for s in lr.plan(lr.parse_study(TINY), str(tmp_path / "elsewhere"))}
    assert again == {s.key: s.hash for s in specs}                 # the folder is not part of the hash
    changed = lr.plan(lr.parse_study({**TINY, "models": {**TINY["models"], "gru": ["model.cell=gru",
                                                                                  "model.hidden_size=5"]}}), "x")
    same = {s.key for s in changed if again[s.key] == s.hash}
    assert same == {"copy/0/tanh/full", "copy/2/tanh/full", "agreement/1/tanh/full"}
    with pytest.raises(ConfigError, match="no run of the study matches --only"):
        lr.plan(study, str(tmp_path), only="nothing")


def fake_runner(calls):
    def runner(spec):
        calls.append(spec.key)
        result = {"key": spec.key, "hash": spec.hash, "task": spec.task, "length": spec.length, "model": spec.model,
                  "truncation": spec.truncation, "accuracy": 1.0 if spec.length == 0 else 0.5,
                  "solved": spec.length == 0, "horizon_init": {"horizon": 3, "window": 9},
                  "horizon_trained": {"horizon": 4, "window": 9}, "train_wall_s": 1.0, "wall_time_s": 1.0,
                  "failed": None}
        os.makedirs(spec.folder, exist_ok=True)
        with open(os.path.join(spec.folder, "result.json"), "w", encoding="utf-8") as fh:
            json.dump(result, fh)
        return result
    return runner


def test_a_rerun_skips_finished_runs_and_redoes_changed_ones(tmp_path):
    calls = []
    first = lr.run_study(lr.parse_study(TINY), str(tmp_path), runner=fake_runner(calls))
    assert len(calls) == 9 and first["runs_computed"] == 9
    # the corpora were written and prepared once each
    for name in ("copy-T0", "copy-T2", "agreement-d1"):
        assert os.path.isfile(tmp_path / "corpora" / name / "prepared" / "meta.json")
    calls.clear()
    second = lr.run_study(lr.parse_study(TINY), str(tmp_path), runner=fake_runner(calls))
    assert calls == [] and second["runs_computed"] == 0 and second["runs"] == first["runs"]
    changed = {**TINY, "truncations": {**TINY["truncations"], "k3": ["train.bptt=stream", "train.k1=3",
                                                                      "train.lr=0.05"]}}
    lr.run_study(lr.parse_study(changed), str(tmp_path), runner=fake_runner(calls))
    assert sorted(calls) == ["agreement/1/gru/k3", "copy/0/gru/k3", "copy/2/gru/k3"]
    # a result file whose hash is not the run's is not used
    calls.clear()
    path = tmp_path / "copy-T0" / "tanh-full" / "result.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "hash": "other"}))
    lr.run_study(lr.parse_study(changed), str(tmp_path), runner=fake_runner(calls))
    assert calls == ["copy/0/tanh/full"]


def test_summary_longest_solved(tmp_path):
    result = lr.run_study(lr.parse_study(TINY), str(tmp_path), runner=fake_runner([]))
    rows = {(r["model"], r["truncation"]): r for r in result["summary"]}
    assert set(rows) == {("tanh", "full"), ("gru", "full"), ("gru", "k3")}
    row = rows[("gru", "k3")]
    assert row["copy_longest_solved"] == 0 and row["copy_accuracy"] == {"0": 1.0, "2": 0.5}
    assert row["agreement_longest_solved"] is None and row["horizon_task"] == "copy 2"
    table = summary_table(result)
    assert "| gru | k3 | 0 | 1.00 | 0.50 | none | 0.50 | 3 -> 4 (9) |" in table


def test_corpora_are_the_same_bytes_for_the_same_seed(tmp_path):
    for folder in ("a", "b"):
        for task, length in (("copy", 2), ("agreement", 3)):
            params = lr.task_params(lr.parse_study(TINY), task, length)
            lr.write_task_corpus(task, params, str(tmp_path / folder / task))
    for task, files in (("copy", ("train.txt", "test.txt")), ("agreement", ("train.txt", "test.txt", "probe.jsonl"))):
        for f in files:
            assert (tmp_path / "a" / task / f).read_bytes() == (tmp_path / "b" / task / f).read_bytes()
    lines = (tmp_path / "a" / "agreement" / "probe.jsonl").read_text().splitlines()
    assert lines and all(json.loads(line)["distance"] == 3 for line in lines)


@pytest.mark.parametrize("change, message", [
    ({"models": {}}, "models: expected a mapping of names to lists of settings"),
    ({"models": {"x": "model.cell=tanh"}}, "models.x: expected a list of section.key=value settings"),
    ({"models": {"tanh": ["model.cell=tanh"], "gru": ["model.cell=lstmm"]}}, "model.cell: expected one of"),
    ({"copy": {"delays": [-1]}}, "copy.delays: expected a non-empty list of integers >= 0"),
    ({"copy": {"alphabet": 1}}, "copy.alphabet: expected an integer >= 2"),
    ({"copy": {"symbols": 0}}, "copy.symbols: expected an integer >= 1"),
    ({"copy": {"colour": 1}}, "copy: unknown key 'colour'"),
    ({"agreement": {"distances": [0]}}, "agreement.distances: expected distances >= 1"),
    ({"only": {"k9": ["gru"]}}, "only.k9: no such truncation"),
    ({"solved": 2}, "solved: expected a number in (0, 1]"),
    ({"budget": 3}, "unknown key 'budget'"),
])
def test_bad_study_files(tmp_path, change, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        lr.parse_study({**TINY, **change})
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({**TINY, **change}))
    result = CliRunner().invoke(cli, ["longrange", "--config", str(path), "--out", str(tmp_path / "o")],
                                prog_name="rnnlm")
    assert result.exit_code == 2 and result.stdout == "" and result.stderr.count("\n") == 1
    assert result.stderr.startswith("Error: ") and not (tmp_path / "o").exists()


def test_command_refuses_bad_jobs_and_missing_file(tmp_path):
    result = CliRunner().invoke(cli, ["longrange", "--config", str(tmp_path / "none.yaml"), "-j", "1"],
                                prog_name="rnnlm")
    assert result.exit_code == 2 and result.stderr.startswith("Error: cannot read study file")
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(TINY))
    result = CliRunner().invoke(cli, ["longrange", "--config", str(path), "-j", "0", "--out", str(tmp_path / "o")],
                                prog_name="rnnlm")
    assert result.exit_code == 2 and result.stderr == "Error: --jobs: expected an integer >= 1, got 0\n"
    assert not (tmp_path / "o").exists()


def test_the_shipped_study_file_is_valid():
    study = lr.load_study(os.path.join(os.path.dirname(__file__), "..", "configs", "longrange.yaml"))
    delays = study.copy["delays"]
    assert delays == sorted(delays) and delays[0] <= 5 and delays[-1] >= 80       # a ladder of doublings
    assert all(b == 2 * a for a, b in zip(delays, delays[1:])) and max(study.agreement["distances"]) >= 30
    assert set(study.models) == {"tanh", "tanh-orth", "irnn", "gru", "lstm"}


def test_markdown_renders_a_real_tiny_study(tmp_path):
    # the real runs (train, score, measure), on a tiny study: the markdown holds every run
    small = {**TINY, "copy": {**TINY["copy"], "delays": [0]}, "agreement": {}}
    result = lr.run_study(lr.parse_study(small), str(tmp_path), jobs=1, runner=lr.run_one)
    text = markdown(result)
    assert text.count("| copy | 0 |") == 3
    for r in result["runs"]:
        assert 0.0 <= r["accuracy"] <= 1.0 and r["scores"]["sequences"] == 4
        assert r["horizon_init"]["window"] == 2 * 2 + 0 + 2


def test_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    from rnnlm_cli.render.longrange import plot
    study = lr.parse_study(TINY)
    result = lr.run_study(study, str(tmp_path), runner=fake_runner([]))
    result["study"] = lr.study_echo(study)
    plot(result, str(tmp_path / "lr.png"))
    assert (tmp_path / "lr.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_diverging_run_is_a_result(tmp_path):
    boom = {**TINY, "models": {"boom": ["model.cell=relu", "model.recurrent_init=identity", "model.recurrent_scale=5",
                                        "train.lr=1e30", "train.optimizer=sgd"]},
            "truncations": {"full": ["train.bptt=full"]}, "only": {}, "agreement": {},
            "copy": {**TINY["copy"], "delays": [0]}}
    result = lr.run_study(lr.parse_study(boom), str(tmp_path), jobs=1, runner=lr.run_one)
    (run,) = result["runs"]
    assert run["failed"].startswith("non-finite") and run["accuracy"] is None and not run["solved"]
    assert run["scores"] is None and run["horizon_trained"] is None and run["horizon_init"]["window"] == 6
    assert result["summary"][0]["copy_longest_solved"] is None and result["summary"][0]["horizon_trained"] is None
    assert "| copy | 0 | boom | full | failed |" in markdown(result)
    assert lr.cached(lr.plan(lr.parse_study(boom), str(tmp_path.resolve()))[0]) == run     # cached like any result


def test_the_committed_record_matches_its_schema_and_its_runs():
    path = os.path.join(os.path.dirname(__file__), "..", "results", "longrange.json")
    if not os.path.exists(path):
        pytest.skip("results/longrange.json not written yet (make longrange)")
    from test_reference import Walker
    with open(path, encoding="utf-8") as fh:
        record = json.load(fh)
    walker = Walker()
    walker.document("longrange", record)
    assert not walker.problems, walker.problems[:5]
    study = lr.parse_study(record["study"])
    assert json.loads(json.dumps(lr.summarise(study, record["runs"]))) == record["summary"]
    assert len(record["runs"]) == len(lr.plan(study, "runs/longrange"))
