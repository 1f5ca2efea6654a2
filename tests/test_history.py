"""Training history (history.py): gradient-norm statistics from a run's metrics.jsonl, their
text and CSV rendering, and `rnnlm diagnose-gradients --run`."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from click.testing import CliRunner

from rnnlm_cli.render import report
from rnnlm_cli.cli import cli
from rnnlm_cli.config import load_config
from rnnlm_cli.errors import DataError
from rnnlm_cli.analysis.history import history_report
from rnnlm_cli.nn.model import Model


def _metrics(path, lines):
    path.mkdir(parents=True, exist_ok=True)
    (path / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")


def test_history_report_on_a_synthetic_log(tmp_path):
    norms = [1.0, 2.0, 1.5, 2.5, 2.0, 20.0, 1.8, 2.2, 3.0, 2.6, 9.0, 2.4]
    lines = []
    for i, g in enumerate(norms):
        line = {"step": 10 * (i + 1), "epoch": 1 if i < 6 else 2, "tokens": 100 * i, "lr": 0.1, "loss": 4.0,
                "ppl": 54.6, "grad_norm": g, "grad_norm_clipped": min(g, 5.0), "clipped": g > 5.0,
                "nonfinite_skipped": 0 if i < 8 else (1 if i < 10 else 3), "tokens_per_sec": 1000.0}
        if i % 4 == 0:
            line["param_grad_norms"] = {"cell.W_h": g / 2, "embedding": g / 4}
        lines.append(line)
        if i == 5:
            lines.append({"split": "valid", "step": 60, "loss": 4.1, "ppl": 60.3})
    _metrics(tmp_path / "run", lines)
    h = history_report(str(tmp_path / "run"))
    assert h["step_lines"] == 12 and h["evaluation_lines"] == 1
    assert (h["first_step"], h["last_step"]) == (10, 120)
    want = np.percentile(norms, [5, 25, 50, 75, 95])
    assert [h["grad_norm"][k] for k in ("p5", "p25", "p50", "p75", "p95")] == pytest.approx(want)
    assert h["grad_norm"]["max"] == 20.0
    assert h["clip_rate"] == pytest.approx(2 / 12)
    assert h["nonfinite"] == {"grad_norm_lines": 0, "skipped": 3, "steps": [90, 110]}
    assert h["spikes"][0]["step"] == 60 and h["spikes"][0]["ratio"] == pytest.approx(20.0 / 2.0)
    assert h["spikes"][1]["step"] == 110 and len(h["spikes"]) == 5
    assert h["by_epoch"] == [{"epoch": 1, "lines": 6, "median_grad_norm": 2.0, "clip_rate": pytest.approx(1 / 6)},
                             {"epoch": 2, "lines": 6, "median_grad_norm": 2.5, "clip_rate": pytest.approx(1 / 6)}]
    assert h["param_grad_norms"]["cell.W_h"] == {"lines": 3, "p50": 1.0, "max": 1.5}


def test_history_report_errors_name_the_file_and_line(tmp_path):
    with pytest.raises(DataError, match="run folder not found"):
        history_report(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="metrics.jsonl not found"):
        history_report(str(tmp_path / "empty"))
    (tmp_path / "empty" / "metrics.jsonl").write_text("\n", encoding="utf-8")
    with pytest.raises(DataError, match="has no step lines"):
        history_report(str(tmp_path / "empty"))
    _metrics(tmp_path / "bad", [{"step": 1, "grad_norm": 1.0}])
    with open(tmp_path / "bad" / "metrics.jsonl", "a", encoding="utf-8") as fh:
        fh.write('{"step": 2, "grad_norm": \n')
    with pytest.raises(DataError, match=r"metrics.jsonl, line 2: not valid JSON"):
        history_report(str(tmp_path / "bad"))
    _metrics(tmp_path / "nonorm", [{"step": 1, "grad_norm": 1.0}, {"step": 2, "loss": 3.0}])
    with pytest.raises(DataError, match=r"line 2: a step line needs a number 'grad_norm'"):
        history_report(str(tmp_path / "nonorm"))


def test_history_text_and_csv(tmp_path):
    _metrics(tmp_path / "run", [{"step": s, "epoch": 1, "grad_norm": float(s), "clipped": s > 4}
                                for s in range(1, 6)])
    h = history_report(str(tmp_path / "run"))
    text = report.history_text(h)
    assert text.startswith(f"training history: {tmp_path / 'run' / 'metrics.jsonl'} (5 step lines, steps 1..5, "
                           "0 evaluations)")
    assert "clip rate 0.2; non-finite: 0 lines" in text and "largest spikes:" in text and "by epoch:" in text
    assert report.diagnostics_text({"history": h}) == text
    rows = list(csv.DictReader(io.StringIO(report.diagnostics_csv({"history": h}))))
    assert {"model": "history", "quantity": "grad_norm_max", "i": "", "j": "", "value": "5.0", "layer": ""} in rows
    assert {"model": "history", "quantity": "clip_rate", "i": "", "j": "", "value": "0.2", "layer": ""} in rows


# --------------------------------------------------------------------------- the command

def invoke(*args):
    return CliRunner().invoke(cli, list(map(str, args)), prog_name="rnnlm")


def test_checkpoint_and_run_history_together(no_data):
    from rnnlm_cli.train import checkpoint

    cfg = load_config(None, ["model.hidden_size=5", "model.embedding_size=3"])
    model = Model(cfg.model, 11, dtype=np.float64, rng=np.random.default_rng(3))
    ck = no_data / "ck.npz"
    checkpoint.save(str(ck), checkpoint.pack(model.params, {}, (), None,
                                             {"config": cfg.to_dict(), "vocab_size": 11}))
    _metrics(no_data / "run", [{"step": s, "grad_norm": float(s)} for s in range(1, 6)])
    result = invoke("diagnose-gradients", "--checkpoint", ck, "--run", no_data / "run", "--steps", 6,
                    "--format", "json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    m = doc["models"][0]
    assert m["label"] == "ck.npz" and m["model"]["vocab_size"] == 11 and m["model"]["source"].startswith("checkpoint")
    assert m["jacobian"]["recurrent"]["blocks"][0]["sigma_max"] == pytest.approx(
        np.linalg.norm(model.params["cell.W_h"], 2))
    assert doc["history"]["grad_norm"]["max"] == 5.0
    result = invoke("diagnose-gradients", "--run", no_data / "run")
    assert result.exit_code == 0 and "training history" in result.stdout and "== " not in result.stdout
    result = invoke("diagnose-gradients", "--run", no_data / "nope")
    assert result.exit_code == 1 and result.stderr == f"Error: run folder not found: {no_data / 'nope'}\n"
