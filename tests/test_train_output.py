"""What train tells a user: a plain progress line every train.log_every updates when stderr is not a
terminal, a warning when many valid/test tokens are <unk> that training never saw, and a summary
that names the checkpoints that exist and the one the final evaluation used."""

from __future__ import annotations

import json
import os
import re

from click.testing import CliRunner

from rnnlm_cli.cli import cli
from rnnlm_cli.cli.progress_bars import _LineBar, progress_bars

TRAIN = "the dog runs home\nthe cats run home\nthe man is here\n" * 20
SMALL = ["--set", "model.hidden_size=4", "--set", "model.embedding_size=4", "--set", "train.batch_size=2",
         "--set", "train.k1=4"]


def train(tmp_path, *extra, valid=None):
    (tmp_path / "train.txt").write_text(TRAIN, encoding="utf-8")
    args = ["train", "--set", f"data.train={tmp_path / 'train.txt'}", "--set", f"data.prepared={tmp_path / 'prep'}",
            "--out", str(tmp_path / "run"), *SMALL, *extra]
    if valid is not None:
        (tmp_path / "valid.txt").write_text(valid, encoding="utf-8")
        args += ["--set", f"data.valid={tmp_path / 'valid.txt'}"]
    return CliRunner().invoke(cli, args, prog_name="rnnlm")


LINE = re.compile(r"^epoch 1/1, step (\d+): loss [\d.]+, ppl [\d.]+, grad norm [\d.]+, lr 0\.1, tokens/s \d+$")


def test_a_plain_progress_line_every_log_every_updates_off_a_terminal(tmp_path):
    result = train(tmp_path, "--set", "train.log_every=5", "--max-steps", "12")
    assert result.exit_code == 0, result.output
    steps = [int(m.group(1)) for m in map(LINE.match, result.stderr.splitlines()) if m]
    assert steps == [5, 10], result.stderr


def test_quiet_prints_no_progress_lines(tmp_path):
    result = train(tmp_path, "--set", "train.log_every=5", "--max-steps", "12", "-q")
    assert result.exit_code == 0 and result.stderr == ""


def test_line_bar_and_factory():
    said = []
    bar = _LineBar(said.append, "epoch 2/3")
    bar.set_postfix(step=40, loss="3.210", tok_s="512")
    bar.update(5)
    bar.close()
    assert said == ["epoch 2/3, step 40: loss 3.210, tokens/s 512"]
    assert progress_bars(quiet=True, lines=said.append)(total=3).set_postfix(step=1) is None and len(said) == 1


def test_oov_warning_when_training_never_saw_unk(tmp_path):
    valid = "the zebra eats grass\nthe yak sleeps now\n" * 3          # 6 of 10 tokens unseen
    warning = ("warning: 60.0% of the valid tokens are not in the vocabulary and are read as <unk>, which the "
               "training split never holds, so the model cannot learn to predict them; map rare training words "
               "to <unk> with data.min_count (e.g. 2) or data.vocab_size")
    result = train(tmp_path, "--max-steps", "2", valid=valid)
    assert result.exit_code == 0, result.output
    assert warning in result.stderr.splitlines()
    (tmp_path / "calm").mkdir()
    calm = train(tmp_path / "calm", "--max-steps", "2", "--set", "data.min_count=25", valid=valid)
    assert calm.exit_code == 0, calm.output
    assert "warning:" not in calm.stderr                            # training holds <unk> now


def test_summary_names_the_checkpoints_that_exist(tmp_path):
    result = train(tmp_path, "--max-steps", "3", "--format", "json", "-q")
    summary = json.loads(result.stdout)
    run = tmp_path / "run"
    assert summary["checkpoints"] == {"last": "checkpoint.npz", "best": None, "evaluated": "checkpoint.npz"}
    assert not (run / "best.npz").exists()
    assert json.loads((run / "summary.json").read_text())["checkpoints"] == summary["checkpoints"]
    finals = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if '"final"' in line]
    assert finals and all(m["checkpoint"] == "checkpoint.npz" for m in finals)


def test_summary_after_a_validation_uses_best(tmp_path):
    result = train(tmp_path, "--max-steps", "4", "--set", "train.eval_every=2", "--format", "json", "-q",
                   valid="the dog runs home\n" * 4)
    summary = json.loads(result.stdout)
    run = tmp_path / "run"
    assert summary["checkpoints"] == {"last": "checkpoint.npz", "best": "best.npz", "evaluated": "best.npz"}
    assert all(os.path.exists(run / p) for p in (summary["checkpoints"]["last"], summary["checkpoints"]["best"]))
    text = train(tmp_path, "--max-steps", "4", "--set", "train.eval_every=2", "-q", "--force",
                 valid="the dog runs home\n" * 4)
    assert "checkpoints.best    best.npz" in text.stdout.splitlines()
    assert "checkpoints.evaluated best.npz" in text.stdout.splitlines()
