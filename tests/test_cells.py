"""Cells: one step against the plain equations, the stacked-gate backward, the tangent, what
each cell declares for the diagnostics, the registry, initialisation."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from helpers import SHIPPED_CELLS as CELLS

from rnnlm_cli.nn.cells import CELLS as REGISTRY, Cache, make_cell, register_cell, sigmoid
from rnnlm_cli.config import ModelConfig
from rnnlm_cli.errors import ConfigError
E, H, B = 4, 3, 2


def plain_sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def reference_step(name, params, x, h, c):
    """One step written straight from the equations, gate by gate (float64): (h, c, units), units
    the saturating nonlinearities' outputs by name."""
    Wx, Wh, b = params["W_x"], params["W_h"], params["b"]
    blk = lambda W, k: W[..., k * H:(k + 1) * H]  # noqa: E731
    if name in ("tanh", "relu"):
        a = x @ Wx + h @ Wh + b
        h_new = np.tanh(a) if name == "tanh" else np.maximum(a, 0.0)
        return h_new, None, {"h": h_new}
    if name == "gru":
        r = plain_sigmoid(x @ blk(Wx, 0) + h @ blk(Wh, 0) + blk(b, 0))
        z = plain_sigmoid(x @ blk(Wx, 1) + h @ blk(Wh, 1) + blk(b, 1))
        n = np.tanh(x @ blk(Wx, 2) + blk(b, 2) + r * (h @ blk(Wh, 2) + params["b_h"]))
        return (1 - z) * n + z * h, None, {"r": r, "z": z, "n": n}
    i = plain_sigmoid(x @ blk(Wx, 0) + h @ blk(Wh, 0) + blk(b, 0))
    f = plain_sigmoid(x @ blk(Wx, 1) + h @ blk(Wh, 1) + blk(b, 1))
    g = np.tanh(x @ blk(Wx, 2) + h @ blk(Wh, 2) + blk(b, 2))
    o = plain_sigmoid(x @ blk(Wx, 3) + h @ blk(Wh, 3) + blk(b, 3))
    c_new = f * c + i * g
    return o * np.tanh(c_new), c_new, {"i": i, "f": f, "g": g, "o": o, "tanh(c)": np.tanh(c_new)}


def setup(name, T=1, seed=0):
    rng = np.random.default_rng(seed)
    cell = make_cell(name, H)
    params = cell.init_params(E, ModelConfig(cell=name), rng, np.float64)
    for k in params:
        params[k] = params[k] + rng.uniform(-0.3, 0.3, size=params[k].shape)
    x = rng.standard_normal((T, B, E))
    state = tuple(rng.uniform(-0.9, 0.9, size=(B, H)) for _ in cell.initial_state(B, np.float64))
    return cell, params, x, state


def run(cell, params, x, state):
    xproj = x @ params["W_x"] + params["b"]
    cache = cell.new_cache(len(x), x.shape[1], state, params)
    for t in range(len(x)):
        cell.forward_step(cache, t, xproj[t])
    return cache


def test_sigmoid_cannot_overflow_and_keeps_dtype():
    a = np.array([-1e4, -50.0, 0.0, 50.0, 1e4], dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = sigmoid(a)
    assert s.dtype == np.float32
    np.testing.assert_allclose(s, [0.0, 0.0, 0.5, 1.0, 1.0], atol=1e-7)
    x = np.linspace(-30, 30, 61)
    np.testing.assert_allclose(sigmoid(x), plain_sigmoid(x), rtol=0, atol=1e-15)  # absolute precision


@pytest.mark.parametrize("name", CELLS)
def test_forward_steps_match_the_equations(name):
    cell, params, x, state = setup(name, T=3)
    cache = run(cell, params, x, state)
    h, c = state[0], (state[1] if cell.has_c else None)
    for t in range(3):
        h, c, _ = reference_step(name, params, x[t], h, c)
        np.testing.assert_allclose(cache.seq["h"][t + 1], h, rtol=1e-12, atol=1e-14)
        if cell.has_c:
            np.testing.assert_allclose(cache.seq["c"][t + 1], c, rtol=1e-12, atol=1e-14)
    final = cell.state_at(cache, 3)
    assert len(final) == (2 if cell.has_c else 1)
    np.testing.assert_array_equal(final[0], cache.seq["h"][3])


@pytest.mark.parametrize("name", CELLS)
def test_backward_step_jacobian_matches_finite_differences(name):
    """Probe rows pushed through one step at once equal d s_t / d s_{t-1} by differences."""
    cell, params, x, state = setup(name, T=1, seed=1)
    cache = run(cell, params, x, state)
    step_state = lambda s: reference_step(name, params, x[0], s[0], s[1] if cell.has_c else None)  # noqa: E731
    # probes: unit vectors e_j on h_t of every batch row at once -> rows of J_h = dh_t/dh_{t-1}
    probes = np.zeros((H, B, H))
    for j in range(H):
        probes[j, :, j] = 1.0
    da, dh_prev, dc_prev = cell.backward_step(cache[0], probes, None)
    assert da.shape == (H, B, cell.gates * H) and dh_prev.shape == (H, B, H)
    eps = 1e-6
    for k in range(H):  # perturb h_{t-1}[:, k]
        up = [s.copy() for s in state]
        dn = [s.copy() for s in state]
        up[0][:, k] += eps
        dn[0][:, k] -= eps
        num = (step_state(up)[0] - step_state(dn)[0]) / (2 * eps)  # (B, H): d h_t[:, j] / d h_{t-1}[:, k]
        np.testing.assert_allclose(dh_prev[:, :, k].T, num, rtol=1e-6, atol=1e-8)
        if cell.has_c:
            up = [s.copy() for s in state]
            dn = [s.copy() for s in state]
            up[1][:, k] += eps
            dn[1][:, k] -= eps
            num = (step_state(up)[0] - step_state(dn)[0]) / (2 * eps)
            np.testing.assert_allclose(dc_prev[:, :, k].T, num, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", CELLS)
def test_backward_step_over_n_positions_equals_single_steps(name):
    cell, params, x, state = setup(name, T=4, seed=2)
    cache = run(cell, params, x, state)
    rng = np.random.default_rng(3)
    dh = rng.standard_normal((4, B, H))
    dc = rng.standard_normal((4, B, H)) if cell.has_c else None
    da, dh_prev, dc_prev = cell.backward_step(cache[0:4], dh, dc)
    for t in range(4):
        da1, dh1, dc1 = cell.backward_step(cache[t], dh[t:t + 1], None if dc is None else dc[t:t + 1])
        np.testing.assert_allclose(da[t:t + 1], da1, rtol=1e-13)
        np.testing.assert_allclose(dh_prev[t:t + 1], dh1, rtol=1e-13)
        if cell.has_c:
            np.testing.assert_allclose(dc_prev[t:t + 1], dc1, rtol=1e-13)


def test_cache_slicing_keeps_a_time_axis():
    cell, params, x, state = setup("gru", T=3)
    cache = run(cell, params, x, state)
    assert isinstance(cache[1], Cache)
    assert cache[1].arrays["rz"].shape == (1, B, 2 * H)
    assert cache[-1].arrays["n"].shape == (1, B, H)
    np.testing.assert_array_equal(cache[-1].arrays["n"][0], cache.arrays["n"][2])
    assert len(cache[0:2]) == 2


def test_parameter_shapes_and_lstm_forget_bias():
    for name, G in (("tanh", 1), ("relu", 1), ("gru", 3), ("lstm", 4)):
        cell = make_cell(name, H)
        p = cell.init_params(E, ModelConfig(cell=name, forget_bias=2.5), np.random.default_rng(0), np.float32)
        assert p["W_x"].shape == (E, G * H) and p["W_h"].shape == (H, G * H) and p["b"].shape == (G * H,)
        assert all(v.dtype == np.float32 for v in p.values())
        assert ("b_h" in p) == (name == "gru")
    p = make_cell("lstm", H).init_params(E, ModelConfig(cell="lstm", forget_bias=2.5), np.random.default_rng(0),
                                         np.float32)
    np.testing.assert_array_equal(p["b"][H:2 * H], 2.5)
    np.testing.assert_array_equal(p["b"][:H], 0.0)


def test_recurrent_initialisations():
    rng = np.random.default_rng(0)
    cfg = ModelConfig(cell="relu", recurrent_init="identity", init_scale=0.5, recurrent_scale=0.8)
    p = make_cell("relu", 6).init_params(E, cfg, rng, np.float64)
    np.testing.assert_allclose(p["W_h"], 0.4 * np.eye(6))
    p = make_cell("gru", 6).init_params(E, ModelConfig(cell="gru", recurrent_init="orthogonal"), rng, np.float64)
    for k in range(3):
        blk = p["W_h"][:, k * 6:(k + 1) * 6]
        np.testing.assert_allclose(blk.T @ blk, np.eye(6), atol=1e-12)
    p = make_cell("tanh", 50).init_params(40, ModelConfig(), rng, np.float64)
    assert np.abs(p["W_x"]).max() <= 1 / np.sqrt(40) and np.abs(p["W_h"]).max() <= 1 / np.sqrt(50)
    p = make_cell("tanh", 50).init_params(40, ModelConfig(init="xavier", recurrent_init="xavier"), rng, np.float64)
    assert np.abs(p["W_x"]).max() <= np.sqrt(6 / 90) and np.abs(p["W_h"]).max() <= np.sqrt(6 / 100)


def test_same_generator_seed_same_parameters():
    a = make_cell("lstm", H).init_params(E, ModelConfig(), np.random.default_rng(7), np.float32)
    b = make_cell("lstm", H).init_params(E, ModelConfig(), np.random.default_rng(7), np.float32)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_unknown_cell_is_a_config_error():
    with pytest.raises(ConfigError, match="model.cell"):
        make_cell("elman", 3)


# --------------------------------------------------------------------------- what the cells declare

GATES = {"tanh": ("W_h",), "relu": ("W_h",), "gru": ("r", "z", "n"), "lstm": ("i", "f", "g", "o")}
# sup |f'| of the nonlinearity behind each block: 1 for tanh and relu, 1/4 for the logistic sigmoid
GAMMAS = {"tanh": (1.0,), "relu": (1.0,), "gru": (0.25, 0.25, 1.0), "lstm": (0.25, 0.25, 1.0, 0.25)}
KINDS = {"h": {"tanh": "tanh", "relu": "relu_zero"}, "r": "sigmoid", "z": "sigmoid", "n": "tanh",
         "i": "sigmoid", "f": "sigmoid", "g": "tanh", "o": "sigmoid", "tanh(c)": "tanh"}


def test_the_registry_holds_the_shipped_cells_by_name():
    assert list(REGISTRY) == list(CELLS)
    for name in CELLS:
        cell = make_cell(name, H)
        assert cell.name == name and cell.H == H
        assert cell.gate_names == GATES[name] and cell.gates == len(GATES[name])
        assert cell.gate_gammas == GAMMAS[name]
        assert cell.state_size == (2 * H if name == "lstm" else H)
        assert cell.simple_recurrence == (name in ("tanh", "relu"))   # ds_t/ds_{t-1} = diag(f') W_h^T
    with pytest.raises(ValueError, match="already registered"):
        register_cell("gru", type(make_cell("gru", H)))
    assert list(REGISTRY) == list(CELLS)


@pytest.mark.parametrize("name", CELLS)
def test_saturation_units_are_the_nonlinearities_of_the_equations(name):
    cell, params, x, state = setup(name, T=3, seed=4)
    cache = run(cell, params, x, state)
    h, c = state[0], (state[1] if cell.has_c else None)
    units = cell.saturation_units(cache)
    want_names = ["h"] if name in ("tanh", "relu") else list(GATES[name])
    if name == "lstm":
        want_names.append("tanh(c)")
    assert [u[0] for u in units] == want_names
    for t in range(3):
        h, c, ref = reference_step(name, params, x[t], h, c)
        for unit, kind, values in units:
            want_kind = KINDS[unit][name] if unit == "h" else KINDS[unit]
            assert kind == want_kind and values.shape == (3, B, H)
            np.testing.assert_allclose(values[t], ref[unit], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", CELLS)
def test_tangent_is_the_derivative_of_the_forward_step(name):
    """J v from the cell's tangent against (step(s + eps v) - step(s - eps v)) / 2 eps of the
    plain equations, for random directions v over the whole state (h, and c for the LSTM)."""
    cell, params, x, state = setup(name, T=1, seed=5)
    cache = run(cell, params, x, state)
    P = cell.state_size
    rng = np.random.default_rng(6)
    v = rng.standard_normal((B, P))                                   # one direction per sequence

    def step(s):                                                      # (B, P) -> (B, P)
        h, c, _ = reference_step(name, params, x[0], s[:, :H], s[:, H:] if cell.has_c else None)
        return h if c is None else np.concatenate([h, c], axis=1)

    s0 = np.concatenate(state, axis=1)                                # (B, P)
    eps = 1e-6
    num = (step(s0 + eps * v) - step(s0 - eps * v)) / (2 * eps)
    fac = tuple(f[0] for f in cell.backward_factors(cache))           # the positions (B,) of step 0
    np.testing.assert_allclose(cell.tangent(fac, params["W_h"], v), num, rtol=1e-6, atol=1e-9)
