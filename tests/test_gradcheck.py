"""Gradient check: every cell x mode x tying passes; a deliberately wrong backward fails."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from helpers import SHIPPED_CELLS

from rnnlm_cli.nn import cells
from rnnlm_cli.cli import cli
from rnnlm_cli.config import load_config
from rnnlm_cli.analysis.gradcheck import all_combinations, run_gradcheck
from rnnlm_cli.render.gradcheck import render_table


@pytest.fixture(scope="module")
def all_result():
    return run_gradcheck(load_config(None), **all_combinations())


def checked_params(cell, tie, softmax):
    """The parameters gradcheck checks for one combination, from the model's documented layout
    (nn/model.py): embedding, the cell's W_x, W_h, b (GRU: b_h), the output layer."""
    names = ["embedding", "cell.W_x", "cell.W_h", "cell.b"] + (["cell.b_h"] if cell == "gru" else [])
    names += [] if tie else ["output.W"]
    names += ["output.b"] + (["output.class_W", "output.class_b"] if softmax == "class" else [])
    return names


def test_every_cell_mode_and_tying_passes(all_result):
    assert all_result["passed"], [c for c in all_result["checks"] if not c["passed"]]
    combos = {(c["cell"], c["bptt"], c["tie_weights"], c["softmax"]) for c in all_result["checks"]}
    assert combos == {(c, m, t, s) for c in SHIPPED_CELLS for m in ("full", "window", "stream")
                      for t in (False, True) for s in ("full", "class")}
    for cell, mode, tie, softmax in combos:
        rows = [c["param"] for c in all_result["checks"]
                if (c["cell"], c["bptt"], c["tie_weights"], c["softmax"]) == (cell, mode, tie, softmax)]
        assert sorted(rows) == sorted(checked_params(cell, tie, softmax) + ["direction"])
    assert all_result["tolerance"] == 1e-6
    directions = [c for c in all_result["checks"] if c["param"] == "direction"]
    assert len(directions) == 48 and max(c["max_rel_error"] for c in directions) < 1e-7
    gru = {c["param"] for c in all_result["checks"] if c["cell"] == "gru" and not c["tie_weights"]}
    assert {"cell.b_h", "output.W", "embedding"} <= gru
    tied = {c["param"] for c in all_result["checks"] if c["tie_weights"]}
    assert "output.W" not in tied


def test_result_rows_have_the_documented_keys(all_result):
    row = all_result["checks"][0]
    assert set(row) == {"cell", "bptt", "tie_weights", "softmax", "setting", "param", "max_rel_error", "checked",
                        "passed"}
    stream = {c["setting"] for c in all_result["checks"] if c["bptt"] == "stream"}
    assert stream == {"k1=3,k2=6"}                     # a k2 > k1 chunk


def scaled_backward(cls, factor):
    """The cell's backward step (every BPTT mode goes through backward_apply) with da off by `factor`."""
    original = cls.backward_apply

    def wrong(self, fac, wt, dh, dc, da):
        da, dh_prev, dc_prev = original(self, fac, wt, dh, dc, da)
        da *= factor
        return da, dh_prev, dc_prev

    return wrong


@pytest.mark.parametrize("cell", ["tanh", "gru", "lstm"])
def test_a_wrong_backward_fails(monkeypatch, cell):
    cls = type(cells.make_cell(cell, 1))
    monkeypatch.setattr(cls, "backward_apply", scaled_backward(cls, 1.01))
    result = run_gradcheck(load_config(None), cells=[cell], modes=["full", "window", "stream"])
    assert not result["passed"]
    failed = {c["param"] for c in result["checks"] if not c["passed"]}
    assert "cell.W_h" in failed and "direction" in failed


def test_samples_limit_the_checked_elements():
    result = run_gradcheck(load_config(None), cells=["lstm"], modes=["window"], samples=3,
                           rng=np.random.default_rng(1))
    assert result["passed"]
    for c in result["checks"]:
        assert c["checked"] == (1 if c["param"] == "direction" else 3)


def test_defaults_come_from_the_config():
    cfg = load_config(None, ["model.cell=gru", "train.bptt=full", "gradcheck.steps=3", "gradcheck.tolerance=1e-5"])
    result = run_gradcheck(cfg)
    assert {(c["cell"], c["bptt"]) for c in result["checks"]} == {("gru", "full")}
    assert result["tolerance"] == 1e-5 and result["passed"]


def test_table_rendering(all_result):
    text = render_table(all_result)
    assert text.splitlines()[0].split() == ["cell", "bptt", "tied", "softmax", "setting", "param", "max_rel_error",
                                            "checked", "result"]
    # one row per parameter of each checked model, plus its directional check
    n = sum(len(checked_params(cell, tie, softmax)) + 1 for cell in SHIPPED_CELLS for tie in (False, True)
            for softmax in ("full", "class")) * 3                          # x 3 BPTT modes
    assert text.splitlines()[-1].startswith(f"PASSED: {n} checks")


# --------------------------------------------------------------------------- CLI

def test_cli_bare_gradcheck_passes():
    res = CliRunner().invoke(cli, ["gradcheck"])
    assert res.exit_code == 0, res.output
    assert "PASSED" in res.output and "tanh" in res.output and "stream" in res.output


def test_cli_all_json():
    res = CliRunner().invoke(cli, ["gradcheck", "--all", "--samples", "2", "--format", "json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["passed"] and len({(c["cell"], c["bptt"], c["tie_weights"]) for c in doc["checks"]}) == 24


def test_cli_options_select_and_size():
    res = CliRunner().invoke(cli, ["gradcheck", "--cell", "gru", "--cell", "relu", "--bptt", "window",
                                   "--tie-weights", "--hidden", "3", "--vocab", "5", "--steps", "4",
                                   "--batch", "2", "--tolerance", "1e-5", "--format", "json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert {(c["cell"], c["bptt"], c["tie_weights"]) for c in doc["checks"]} == {("gru", "window", True),
                                                                                ("relu", "window", True)}
    emb = [c for c in doc["checks"] if c["param"] == "embedding"][0]
    assert emb["checked"] == 5 * 3 and doc["tolerance"] == 1e-5


def test_cli_wrong_backward_exits_1(monkeypatch):
    monkeypatch.setattr(cells.LSTMCell, "backward_apply", scaled_backward(cells.LSTMCell, 1.01))
    res = CliRunner().invoke(cli, ["gradcheck", "--cell", "lstm", "--bptt", "full"])
    assert res.exit_code == 1
    assert "FAIL" in res.output and res.output.splitlines()[-1].startswith("FAILED")


def test_cli_refuses_conflicting_and_bad_options():
    res = CliRunner().invoke(cli, ["gradcheck", "--all", "--cell", "gru"])
    assert res.exit_code == 2 and "--all" in res.output
    res = CliRunner().invoke(cli, ["gradcheck", "--cell", "elman"])
    assert res.exit_code == 2
    res = CliRunner().invoke(cli, ["gradcheck", "--set", "gradcheck.eps=0"])
    assert res.exit_code == 2 and "gradcheck.eps" in res.output
