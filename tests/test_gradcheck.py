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


def checked_params(cell, tie, softmax, layers=1):
    """The parameters gradcheck checks for one combination, from the model's documented layout
    (nn/model.py): embedding, the cell's W_x, W_h, b (GRU: b_h) per layer (prefix cell. with one
    layer, cell.<l>. with more), the output layer."""
    prefixes = ["cell."] if layers == 1 else [f"cell.{l}." for l in range(layers)]
    names = ["embedding"]
    for prefix in prefixes:
        names += [prefix + k for k in ("W_x", "W_h", "b")] + ([prefix + "b_h"] if cell == "gru" else [])
    names += [] if tie else ["output.W"]
    names += ["output.b"] + (["output.class_W", "output.class_b"] if softmax == "class" else [])
    return names


def test_every_cell_mode_and_tying_passes(all_result):
    assert all_result["passed"], [c for c in all_result["checks"] if not c["passed"]]
    combos = {(c["num_layers"], c["cell"], c["bptt"], c["tie_weights"], c["softmax"]) for c in all_result["checks"]}
    assert combos == {(n, c, m, t, s) for n in (1, 2) for c in SHIPPED_CELLS for m in ("full", "window", "stream")
                      for t in (False, True) for s in ("full", "class")}
    for layers, cell, mode, tie, softmax in combos:
        rows = [c["param"] for c in all_result["checks"]
                if (c["num_layers"], c["cell"], c["bptt"], c["tie_weights"], c["softmax"]) ==
                (layers, cell, mode, tie, softmax)]
        assert sorted(rows) == sorted(checked_params(cell, tie, softmax, layers) + ["direction"])
    assert all_result["tolerance"] == 1e-6
    directions = [c for c in all_result["checks"] if c["param"] == "direction"]
    assert len(directions) == 96 and max(c["max_rel_error"] for c in directions) < 1e-7
    gru = {c["param"] for c in all_result["checks"] if c["cell"] == "gru" and not c["tie_weights"]}
    assert {"cell.b_h", "cell.1.b_h", "output.W", "embedding"} <= gru
    tied = {c["param"] for c in all_result["checks"] if c["tie_weights"]}
    assert "output.W" not in tied


def test_result_rows_have_the_documented_keys(all_result):
    row = all_result["checks"][0]
    assert set(row) == {"cell", "bptt", "tie_weights", "softmax", "num_layers", "setting", "param", "max_rel_error",
                        "checked", "passed"}
    stream = {c["setting"] for c in all_result["checks"] if c["bptt"] == "stream"}
    assert stream == {"k1=3,k2=6"}                     # a k2 > k1 chunk


def test_a_kink_within_eps_is_measured_closer_and_a_wrong_gradient_still_fails():
    """f(theta) = relu(theta - c) + theta^2 with the kink c at 0.3 eps from theta: the quotient at
    eps straddles the kink, the one at eps / 10 does not."""
    from rnnlm_cli.analysis.gradcheck import _Probe, _refine

    eps = 1e-5
    theta = np.array([1.0])
    c = 1.0 - 0.3 * eps                                   # theta sits just right of the kink
    loss = lambda: float(max(theta[0] - c, 0.0) + theta[0] ** 2)      # noqa: E731

    class Holder:
        params = {"theta": theta}

    probe = _Probe(Holder(), loss, eps)
    right = np.array([1.0 + 2.0 * theta[0]])              # the derivative on the kink's right side
    num = probe.element(theta, 0, eps)[2]
    err = probe.error(right[0], num)
    assert err > 1e-2                                     # straddling the kink: a large error
    assert _refine(probe, theta, right, [0], [err], eps, 1e-6) < 1e-6
    wrong = right * 1.01
    assert _refine(probe, theta, wrong, [0], [probe.error(wrong[0], num)], eps, 1e-6) > 1e-3


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
    assert text.splitlines()[0].split() == ["layers", "cell", "bptt", "tied", "softmax", "setting", "param",
                                            "max_rel_error", "checked", "result"]
    # one row per parameter of each checked model, plus its directional check
    n = sum(len(checked_params(cell, tie, softmax, layers)) + 1 for layers in (1, 2) for cell in SHIPPED_CELLS
            for tie in (False, True) for softmax in ("full", "class")) * 3     # x 3 BPTT modes
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


# --------------------------------------------------------------------------- checks that cannot measure

class Toy:
    """A hand-built 'model': one parameter vector w and a loss whose gradient is known exactly."""

    def __init__(self, w):
        self.params = {"w": np.array(w, dtype=np.float64)}


def toy_rows(w, loss, grad, eps, tolerance=1e-6):
    from rnnlm_cli.analysis.gradcheck import _check_one
    model = Toy(w)
    return {r[0]: r for r in _check_one(model, lambda: loss(model.params["w"]), lambda: {"w": grad(model.params["w"])},
                                        eps, 0, np.random.default_rng(0), tolerance)}


def test_a_right_gradient_passes_at_a_sound_eps():
    rows = toy_rows([0.3, -0.2], lambda w: float(np.sum(w ** 3)), lambda w: 3 * w ** 2, 1e-5)
    assert all(r[3] and r[4] is None for r in rows.values()), rows


def test_a_wrong_gradient_fails_without_blaming_eps():
    rows = toy_rows([0.3, -0.2], lambda w: float(np.sum(w ** 3)), lambda w: 3.03 * w ** 2, 1e-5)
    assert not rows["w"][3] and rows["w"][4] is None and rows["w"][1] > 1e-3


def test_nan_in_the_analytic_gradient_fails_saying_so():
    rows = toy_rows([0.3, -0.2], lambda w: float(np.sum(w ** 3)), lambda w: np.array([np.nan, 0.12]), 1e-5)
    assert not rows["w"][3] and rows["w"][1] is None
    assert rows["w"][4] == "the analytic gradient holds NaN or inf"
    assert not rows["direction"][3] and rows["direction"][4] == "the analytic gradient holds NaN or inf"


def test_inf_in_the_loss_fails_saying_so():
    rows = toy_rows([0.3], lambda w: float(np.sum(w ** 3)) if w[0] < 0.31 else np.inf, lambda w: 3 * w ** 2, 0.02)
    assert not rows["w"][3] and rows["w"][4].startswith("the loss at theta +- eps is NaN or inf")


@pytest.mark.parametrize("eps", [1e-300, 1e-20, 5e-324])
def test_an_eps_below_the_loss_resolution_fails(eps):
    """f = 1e6 + g.w: with eps this small the difference of f is pure rounding (or exactly 0, as
    theta +- eps rounds back to theta), and the old floor, 1e-3 * |f| / eps, made anything pass."""
    rows = toy_rows([0.3, -0.2], lambda w: 1e6 + float(w @ [0.5, -0.25]), lambda w: np.array([0.5, -0.25]), eps)
    for name in ("w", "direction"):
        assert not rows[name][3]
        assert rows[name][4].startswith(f"eps {eps:.3g} is below the loss's resolution: a difference quotient "
                                        f"rounds to ~"), rows[name]


def test_the_resolution_rule_sits_where_rounding_meets_the_gradient():
    """f = F + g.w: the rounding of one quotient is r = 1e-15 F / eps and the floor 1e6 r; the
    check lets absolute errors up to tolerance * floor pass (r itself at tolerance 1e-6), so it
    measures only while g exceeds that: eps > 1e-15 F / g."""
    F, g = 1e3, 0.5
    loss, grad = (lambda w: F + g * float(w[0])), (lambda w: np.array([g]))
    limit = 1e-15 * F / g                      # 2e-12
    assert toy_rows([0.3], loss, grad, limit * 3)["w"][3]
    assert toy_rows([0.3], loss, grad, limit / 3)["w"][4].startswith("eps 6.67e-13 is below the loss's resolution")
    assert toy_rows([0.3], loss, grad, limit * 3, tolerance=1e-3)["w"][4].startswith("eps 6e-12 is below")


def test_an_eps_too_large_for_the_curvature_fails_saying_so():
    """f = w^3 at w = 1: the central difference errs by exactly eps^2 (f''' = 6), the check sees a
    'wrong' gradient 3 vs 3 + eps^2, and Richardson's estimate from eps and 2 eps names eps."""
    cube, grad = (lambda w: float(np.sum(w ** 3))), (lambda w: 3 * w ** 2)
    assert toy_rows([1.0], cube, grad, 1e-5)["w"][3]
    rows = toy_rows([1.0], cube, grad, 1e-2)
    # the element is measured again closer (eps / 100 errs by 1e-8 against 3: it passes), but the
    # directional check, which always estimates its truncation error, fails naming eps
    assert rows["w"][3] and rows["w"][1] < 1e-6
    assert not rows["direction"][3] and rows["direction"][4].startswith("eps 0.01 is too large for the loss's curvature")
    assert not all(r[3] for r in rows.values())


def test_an_eps_larger_than_the_parameters_fails():
    rows = toy_rows([0.3, -0.2], lambda w: float(np.sum(np.tanh(w))), lambda w: 1 - np.tanh(w) ** 2, 1e300)
    assert not rows["w"][3]
    assert rows["w"][4].startswith("eps 1e+300 is too large: it is not small next to the parameters")


def test_a_gradient_that_is_exactly_zero_is_measured():
    """A flat direction, perturbed for real: f does not move at all and a = 0 agrees exactly."""
    rows = toy_rows([0.3, -0.2], lambda w: float(w[0] ** 2), lambda w: np.array([2 * w[0], 0.0]), 1e-5)
    assert rows["w"][3] and rows["w"][4] is None


def test_nan_gradients_fail_the_cli(monkeypatch):
    from rnnlm_cli.nn.model import Model
    real = Model.backward

    def poisoned(self, *args, **kwargs):
        grads = real(self, *args, **kwargs)
        grads["cell.W_h"] = np.full_like(np.asarray(grads["cell.W_h"]), np.nan)
        return grads

    monkeypatch.setattr(Model, "backward", poisoned)
    res = CliRunner().invoke(cli, ["gradcheck", "--format", "json"])
    assert res.exit_code == 1, res.output
    doc = json.loads(res.stdout)
    bad = [c for c in doc["checks"] if not c["passed"]]
    assert {c["param"] for c in bad} == {"cell.W_h", "direction"}
    assert all(c["max_rel_error"] is None and "NaN" in c["reason"] for c in bad)
    res = CliRunner().invoke(cli, ["gradcheck"])
    assert res.exit_code == 1
    assert "cannot measure: the analytic gradient holds NaN or inf" in res.stdout
    assert "NaN/inf" in res.stdout.splitlines()[-1] and res.stdout.splitlines()[-1].startswith("FAILED")


@pytest.mark.parametrize("eps", ["1e-300", "1e-16", "1e300"])
def test_cli_absurd_eps_fails_saying_why(eps):
    res = CliRunner().invoke(cli, ["gradcheck", "--set", f"gradcheck.eps={eps}"])
    assert res.exit_code == 1, res.output
    lines = res.stdout.splitlines()
    assert lines[-1].startswith("FAILED (7 of 7 checks)")
    assert lines[-2].startswith(f"cannot measure: eps {float(eps):.3g} is ")
    assert "Warning" not in res.output


@pytest.mark.parametrize("tolerance", ["1", "2.5", "1e9"])
def test_a_tolerance_that_passes_everything_is_refused(tolerance):
    res = CliRunner().invoke(cli, ["gradcheck", "--tolerance", tolerance])
    assert res.exit_code == 2
    assert res.stderr.startswith("Error: gradcheck.tolerance: a relative error |a - n| / (|a| + |n|) is at most 1")
    assert res.stdout == ""
