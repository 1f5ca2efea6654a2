"""Result records written by `rnnlm train --record`."""

import json
import os
import shlex

import pytest
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
    # the command that trained it, as given (here: no --resume, no --force to drop)
    assert shlex.split(r["command"]) == ["rnnlm", "train", "--config", str(cfg), "--record", str(record)]
    # parameters: embedding V x 8, W_x 8 x 8, W_h 8 x 8, b 8, output 8 x V + V (untied)
    V = len((tmp_path / "p" / "vocab.txt").read_text(encoding="utf-8").splitlines())
    assert r["summary"]["params"] == V * 8 + 64 + 64 + 8 + 8 * V + V
    table = results_table([r], {"run": "anchor 1.0"})
    cells = [c.strip() for c in table.splitlines()[2].strip("|").split("|")]
    assert cells[:3] == ["run", "tanh E=8 H=8", f"{r['summary']['params'] / 1e3:.0f}k"]
    assert cells[3:6] == [f"{r['summary']['valid_ppl']:.1f}", f"{r['summary']['test_ppl']:.1f}", "-"]  # no dynamic
    assert cells[-2:] == ["anchor 1.0", f"`{r['command']}`"]


def test_dynamic_figures_after_training_sit_beside_the_static_ones(tmp_path):
    """evaluate.dynamic_after_training adds the best checkpoint's dynamic figures, exactly what
    `rnnlm evaluate --dynamic` reports for it, without changing a static figure; a finished run
    resumed with the key set gains them, its training untouched."""
    corpus = tmp_path / "c.txt"
    corpus.write_text("".join(f"w{i % 7} w{i % 5} w{i % 3}\n" for i in range(300)), encoding="utf-8")
    cfg = tmp_path / "run.yaml"
    cfg.write_text(f"data: {{train: {corpus}, prepared: {tmp_path / 'p'}, split: [0.8, 0.1, 0.1]}}\n"
                   f"model: {{hidden_size: 8, embedding_size: 8}}\n"
                   f"train: {{out: {tmp_path / 'out'}, batch_size: 4, k1: 5, epochs: 2}}\n"
                   f"evaluate: {{dynamic_lr: 0.05, dynamic_chunk: 7}}\n", encoding="utf-8")
    base = ["train", "--config", str(cfg), "--quiet", "--format", "json"]
    plain = CliRunner().invoke(cli, base)
    assert plain.exit_code == 0, plain.output
    static = json.loads(plain.output)
    assert "dynamic" not in static
    again = CliRunner().invoke(cli, base + ["--resume", "--set", "evaluate.dynamic_after_training=true",
                                            "--record", str(tmp_path / "r.json")])
    assert again.exit_code == 0, again.output
    summary = json.loads(again.output)
    dyn = summary.pop("dynamic")
    timing = ("wall_time_s", "tokens_per_sec")         # the resumed part's few microseconds are added
    assert {k: v for k, v in summary.items() if k not in timing} == {k: v for k, v in static.items() if k not in timing}
    assert summary["wall_time_s"] == pytest.approx(static["wall_time_s"], abs=0.05)
    for split in ("valid", "test"):
        ev = CliRunner().invoke(cli, ["evaluate", "--config", str(cfg), "--checkpoint", str(tmp_path / "out" / "best.npz"),
                                      "--split", split, "--dynamic", "--format", "json"])
        assert ev.exit_code == 0, ev.output
        ev = json.loads(ev.output)
        assert ev["protocol"] == "dynamic" and dyn[f"{split}_loss"] == ev["loss"] and dyn[f"{split}_ppl"] == ev["ppl"]
        assert dyn[f"{split}_loss"] != summary[f"{split}_loss"]                   # it did learn
    assert {k: dyn["protocol"][k] for k in ("method", "lr", "chunk")} == {"method": "sgd", "lr": 0.05, "chunk": 7}
    r = json.loads((tmp_path / "r.json").read_text())
    cells = [c.strip() for c in results_table([r]).splitlines()[2].strip("|").split("|")]
    assert cells[4:6] == [f"{summary['test_ppl']:.1f}", f"{dyn['test_ppl']:.1f}"]
    assert "--set evaluate.dynamic_after_training=true" in r["command"] and "--resume" not in r["command"]


def test_dynamic_after_training_refuses_full_sentences(tmp_path):
    result = CliRunner().invoke(cli, ["train", "--config", "configs/tiny.yaml", "--out", str(tmp_path / "o"),
                                      "--set", "train.bptt=full", "--set", "evaluate.dynamic_after_training=true"])
    assert result.exit_code == 2 and result.output.count("Error:") == 1 and "train.bptt=full" in result.output
    assert not (tmp_path / "o").exists()


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
        r = record(name)
        if name == "mine":      # a newer record: parameters, dynamic figures and its command
            r["summary"].update(params=1_234_567, dynamic={"test_loss": 4.5, "test_ppl": 90.0171})
            r["command"] = "rnnlm train --config mine.yaml --record mine.json"
        paths[-1].write_text(json.dumps(r), encoding="utf-8")
    result = CliRunner().invoke(cli, ["results", *map(str, paths)])
    assert result.exit_code == 0, result.output
    # the row, built by hand: 90 s = 1.5 min, no test figures, the published anchor of ptb-lstm
    from rnnlm_cli.render.results import ANCHORS
    assert result.stdout.splitlines() == [
        "| config | model | params | valid | test | dynamic test | epochs | wall time | tokens/s | published anchor "
        "| command |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        f"| ptb-lstm | lstm E=4 H=8 | - | 150.0 | - | - | 3 | 1.5 min | 12,346 | {ANCHORS['ptb-lstm']} | - |",
        "| mine | lstm E=4 H=8 | 1.2M | 150.0 | - | 90.0 | 3 | 1.5 min | 12,346 |  "
        "| `rnnlm train --config mine.yaml --record mine.json` |",
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


# --------------------------------------------------------------------------- the README's claims about the records
ROOT = os.path.join(os.path.dirname(__file__), os.pardir)

# (record, figure, published bound it is said to be under, the README's words that say so)
CLAIMS = [
    ("ptb-rnn", "test_ppl", 124.7, "under the RNN LM's 124.7 static"),
    ("ptb-rnn", "dynamic.test_ppl", 114.5, "and under Zaremba et al.'s small LSTM (114.5) with dynamic evaluation"),
    ("ptb-lstm", "test_ppl", 114.5, "beats the non-regularised 2-layer LSTM's 114.5"),
    ("ptb-lstm", "test_ppl", 100.0, "and stays under 100"),
    ("ptb-lstm2", "dynamic.test_ppl", 82.7, "close to their 82.7, and under it with dynamic evaluation"),
    ("shakespeare-char", "valid_loss", 1.47, "under nanoGPT's GPU model (1.47)"),
    ("shakespeare-char", "valid_loss", 1.88, "and its small CPU model (1.88)"),
]


def _readme_results_section() -> str:
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        text = f.read()
    section = text.split("\n## Results\n", 1)[1].split("\n## ", 1)[0]
    return " ".join(section.split())          # the prose wraps lines anywhere


def _record(name: str) -> dict:
    with open(os.path.join(ROOT, "results", f"{name}.json"), encoding="utf-8") as f:
        return json.load(f)


def _figure(name: str, path: str) -> float:
    value = _record(name)["summary"]
    for key in path.split("."):
        value = value[key]
    return value


@pytest.mark.parametrize("name,path,bound,words", CLAIMS, ids=[f"{c[0]}-{c[1]}-{c[2]}" for c in CLAIMS])
def test_readme_results_claims_hold_for_the_committed_records(name, path, bound, words):
    """Each "under X" of the Results section is said in the README and true of results/NAME.json."""
    assert words in _readme_results_section()
    assert _figure(name, path) < bound


def test_readme_results_figures_quoted_in_prose_are_the_records():
    """The figures the Results bullets quote are the records' own, rounded as the table rounds them."""
    prose = _readme_results_section()
    gru = f"{_figure('ptb-gru', 'valid_ppl'):.1f} / {_figure('ptb-gru', 'test_ppl'):.1f}"
    assert f"**ptb-gru** (same shape, 6 epochs) {gru}" in prose
    assert f"**{_figure('shakespeare-char', 'valid_loss'):.3f}** nats/char" in prose


def test_readme_says_the_character_model_levelled_off_when_its_curve_did():
    """"levels off over the last five epochs": the record's last five validation losses lie within 0.001."""
    assert "Its validation loss levels off over the last five epochs." in _readme_results_section()
    last = [point["loss"] for point in _record("shakespeare-char")["curve"]][-5:]
    assert len(last) == 5 and max(last) - min(last) < 1e-3
