"""Result records written by `rnnlm train --record`."""

import json

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
    assert r["curve"][-1]["ppl"] == r["summary"]["best_valid_ppl"] or r["curve"][0]["ppl"] == r["summary"]["best_valid_ppl"]
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
