"""Result records written by `rnnlm train --record`."""

import json
import os

from click.testing import CliRunner

from rnnlm_cli.cli import cli
from rnnlm_cli.render.results import results_table


def test_train_record_holds_config_hash_curve_and_summary(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("the cat sat\nthe dog ran\n" * 200, encoding="utf-8")
    cfg = tmp_path / "run.yaml"
    cfg.write_text(f"data: {{train: {corpus}, prepared: {tmp_path / 'p'}}}\n"
                   f"model: {{hidden_size: 8, embedding_size: 8}}\n"
                   f"train: {{out: {tmp_path / 'out'}, batch_size: 4, k1: 5, epochs: 2}}\n", encoding="utf-8")
    record = tmp_path / "results" / "run.json"
    result = CliRunner().invoke(cli, ["train", "--config", str(cfg), "--quiet", "--record", str(record)])
    assert result.exit_code == 0, result.output
    r = json.loads(record.read_text())
    assert r["name"] == "run"
    assert len(r["config_sha256"]) == 64
    assert [c["epoch"] for c in r["curve"]] == [1, 2]
    # the best validation perplexity is the smallest of the evaluations in metrics.jsonl
    metrics = [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    valid = [m["ppl"] for m in metrics if m.get("split") == "valid" and not m.get("final")]
    assert [c["ppl"] for c in r["curve"]] == valid
    assert r["summary"]["best_valid_ppl"] == min(valid)
    assert set(r["machine"]) == {"cpu", "cores", "python", "numpy"} and r["machine"]["cores"] == os.cpu_count()
    assert r["config"]["model"]["hidden_size"] == 8
    table = results_table([r], {"run": "anchor 1.0"})
    row = table.splitlines()[2]
    assert row.startswith("| run | tanh E=8 H=8 | ") and row.endswith("| anchor 1.0 |")
    assert f"{r['summary']['valid_ppl']:.1f}" in row


def test_curves_table_and_plot(tmp_path):
    import pytest
    from rnnlm_cli.render.results import curves_table, plot_curves
    rec = {"name": "x", "curve": [{"elapsed": 60.0, "ppl": 200.0}, {"elapsed": 120.0, "ppl": 150.5}]}
    assert curves_table([rec]) == "x: 1.0 min 200.0, 2.0 min 150.5"
    pytest.importorskip("matplotlib", reason="plot extra not installed")
    plot_curves([rec], str(tmp_path / "c.png"))
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def record(name, level="word", valid_ppl=150.0):
    return {"name": name, "config": {"model": {"cell": "lstm", "embedding_size": 4, "hidden_size": 8},
                                     "data": {"level": level}},
            "summary": {"valid_loss": 5.0, "valid_ppl": valid_ppl, "epochs": 3, "wall_time_s": 90.0,
                        "tokens_per_sec": 12345.6},
            "curve": [{"elapsed": 30.0, "loss": 5.5, "ppl": 250.0}, {"elapsed": 90.0, "loss": 5.0, "ppl": valid_ppl}]}


def test_results_command_prints_the_table_and_curves(tmp_path):
    paths = []
    for name in ("ptb-lstm", "mine"):
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(record(name)), encoding="utf-8")
    result = CliRunner().invoke(cli, ["results", *map(str, paths)])
    assert result.exit_code == 0, result.output
    # the row, built by hand: 90 s = 1.5 min, no test figures, the published anchor of ptb-lstm
    from rnnlm_cli.render.results import ANCHORS
    assert result.stdout.splitlines() == [
        "| config | model | valid | test | epochs | wall time | tokens/s | published anchor |",
        "|---|---|---|---|---|---|---|---|",
        f"| ptb-lstm | lstm E=4 H=8 | 150.0 | - | 3 | 1.5 min | 12,346 | {ANCHORS['ptb-lstm']} |",
        "| mine | lstm E=4 H=8 | 150.0 | - | 3 | 1.5 min | 12,346 |  |",
        "",
        "ptb-lstm: 0.5 min 250.0, 1.5 min 150.0",
        "mine: 0.5 min 250.0, 1.5 min 150.0"]
    assert "Example:\n    rnnlm results " in CliRunner().invoke(cli, ["results", "-h"]).stdout


def test_results_command_errors_are_one_line(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "x"}), encoding="utf-8")
    result = CliRunner().invoke(cli, ["results", str(bad)])
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr == (f"Error: {bad}: not a result record of `rnnlm train --record` "
                             "(needs the fields name, summary, config, curve)\n")
    result = CliRunner().invoke(cli, ["results", str(tmp_path / "none.json")])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1


def test_results_command_plot(tmp_path):
    import pytest
    pytest.importorskip("matplotlib", reason="plot extra not installed")
    path = tmp_path / "r.json"
    path.write_text(json.dumps(record("r")), encoding="utf-8")
    result = CliRunner().invoke(cli, ["results", str(path), "--plot", str(tmp_path / "c.png")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
