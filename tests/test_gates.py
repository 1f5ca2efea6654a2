"""The gradient gates of diagnose-gradients pass only on a measurement: NaN/inf in a model's lag
profile, or no model at all, fail the gate and say why."""

from __future__ import annotations

import math

import numpy as np
import pytest
from click.testing import CliRunner

from rnnlm_cli.analysis.diagnostics import gate_failures, recurrent_bound
from rnnlm_cli.cli import cli
from rnnlm_cli.nn.cells import make_cell


def model(label="m", horizon=3, ratio=0.5, raw=(1.0, 0.1, 0.01), normalised=(1.0, 0.1, 0.01)):
    return {"label": label, "horizon": horizon, "max_norm_ratio": ratio,
            "lag_profile": {"raw": list(raw), "normalised": list(normalised)}}


def test_measured_models_pass_and_fail_as_before():
    assert gate_failures({"models": [model()]}, 2, 1.0) == []
    assert gate_failures({"models": [model()]}, 4, 0.1) == ["m: vanishing gradient: horizon 3 < 4",
                                                            "m: exploding gradient: max norm ratio 0.5 > 0.1"]


@pytest.mark.parametrize("profile", [
    {"normalised": (None, None, None)},                   # NaN everywhere: null in the JSON result
    {"normalised": (1.0, None, 0.01)},                    # one lag
    {"raw": (1.0, math.inf, 0.5)},                        # inf in a not yet JSON-safe result
    {"raw": (math.nan, 0.1, 0.01)},
])
def test_a_nan_measurement_fails_every_gate(profile):
    m = model(horizon=0, **profile)
    for gates in ((0, None), (None, 1e308), (0, 1e308)):
        failures = gate_failures({"models": [m]}, *gates)
        assert len(failures) == 1 and failures[0].startswith("m: cannot measure the gradient: its lag profile "
                                                              "holds NaN or inf")
    assert gate_failures({"models": [m]}) == []           # no gate, nothing to fail


def test_a_gate_with_no_model_fails():
    assert gate_failures({"history": {}}, 3) == ["no model was measured, so the gradient gates check nothing"]


def test_recurrent_bound_of_huge_weights_is_finite_or_inf_not_a_crash():
    cell = make_cell("relu", 3)
    W = np.eye(3) * 1e300
    assert recurrent_bound(cell, W)["blocks"][0]["sigma_max"] == pytest.approx(1e300)
    assert recurrent_bound(cell, np.full((3, 3), np.inf))["blocks"][0]["sigma_max"] == math.inf


@pytest.mark.parametrize("scale", ["1e10", "1e300"])
def test_cli_overflowing_model_fails_the_gates(tmp_path, scale):
    args = ["diagnose-gradients", "--set", "model.cell=relu", "--set", f"model.recurrent_scale={scale}",
            "--set", "model.init_scale=1e3", "--set", f"data.prepared={tmp_path / 'none'}", "--quiet",
            "--fail-if-vanishing", "0", "--format", "json"]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 1, res.output
    assert ("FAILED: defaults: cannot measure the gradient: its lag profile holds NaN or inf (the model "
            "overflows, or dE_t/ds_t is 0), so --fail-if-vanishing cannot pass") in res.stderr
    assert "Warning" not in res.stderr and "Traceback" not in res.output


def test_cli_gate_with_run_only_is_refused(tmp_path):
    res = CliRunner().invoke(cli, ["diagnose-gradients", "--run", str(tmp_path), "--fail-if-exploding", "2"],
                             prog_name="rnnlm")
    assert res.exit_code == 2 and res.stdout == ""
    assert res.stderr == ("Error: --fail-if-vanishing and --fail-if-exploding gate a model's gradients: add "
                          "--checkpoint (with --run alone nothing is measured) (see 'rnnlm diagnose-gradients -h')\n")
