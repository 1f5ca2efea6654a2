"""Step Jacobians (jacobians.py): the explicit Jacobian (tests/helpers.py) against finite
differences, the matrix-free J v / u^T J (the cell's tangent and backward step) against it, and
Lanczos norms against the SVD."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import SHIPPED_CELLS as CELLS, jittered_model, probes, random_tokens, spectral_norms, step_jacobian

from rnnlm_cli.analysis.diagnostics import diagnose_model, first_sequences
from rnnlm_cli.analysis.jacobians import StepMaps, top_singular_values
V, E, T, B = 7, 3, 6, 2


def make_model(cell, H=4, seed=0, **kw):
    return jittered_model(cell, V, E, H, seed, **kw)


def tokens(seed=1, steps=T, batch=B):
    return random_tokens(V, steps, batch, seed)


def explicit(model, cache, steps):
    """Explicit J_j (T, B, P, P) of every position."""
    basis = probes(model.cell, cache.arrays["h"].shape[1], np.float64)
    return np.stack([step_jacobian(model.cell, cache, j, basis) for j in range(steps)])


@pytest.mark.parametrize("cell", CELLS)
def test_step_jacobian_equals_finite_differences(cell):
    H = 4
    model = make_model(cell, H)
    x, y = tokens()
    fwd = model.forward(x, y)
    j, eps = 3, 1e-6
    J = step_jacobian(model.cell, fwd.cache, j, probes(model.cell, B, np.float64))
    flat = np.concatenate(model.cell.state_at(fwd.cache, j), axis=-1)       # s_{j-1} (B, P)

    def step(f):
        s = tuple(f[:, i * H:(i + 1) * H] for i in range(flat.shape[1] // H))
        return np.concatenate(model.forward(x[j:j + 1], y[j:j + 1], state=s).state, axis=-1)

    for q in range(flat.shape[1]):
        plus, minus = flat.copy(), flat.copy()
        plus[:, q] += eps
        minus[:, q] -= eps
        np.testing.assert_allclose(J[:, :, q], (step(plus) - step(minus)) / (2 * eps), atol=1e-8)


@pytest.mark.parametrize("cell", CELLS)
def test_jvp_and_vjp_are_the_explicit_jacobian(cell):
    model = make_model(cell, H=5)
    fwd = model.forward(*tokens())
    J = explicit(model, fwd.cache, T)                                  # (T, B, P, P)
    maps = StepMaps(model.cell, fwd.cache)
    P = maps.P
    idx = np.arange(T * B)
    rng = np.random.default_rng(0)
    v, u = rng.standard_normal((T * B, P)), rng.standard_normal((T * B, P))
    Jf = J.reshape(T * B, P, P)                                        # flat index j * B + b
    np.testing.assert_allclose(maps.jvp(v, idx), np.einsum("npq,nq->np", Jf, v), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(maps.vjp(u, idx), np.einsum("npq,np->nq", Jf, u), rtol=1e-12, atol=1e-14)
    some = np.array([7, 2])                                            # a subset, in any order
    np.testing.assert_allclose(maps.jvp(v[:2], some), np.einsum("npq,nq->np", Jf[some], v[:2]), atol=1e-14)
    # products from the end, J_{T-1} ... J_{T-span}: map i * B + b is spans[i] of sequence b
    jvp, vjp = maps.products([1, 3, T])
    whole = np.stack([np.linalg.multi_dot(list(J[::-1, b])) for b in range(B)])   # J_{T-1} ... J_0
    prods = np.concatenate([J[T - 1], J[T - 1] @ J[T - 2] @ J[T - 3], whole])
    for idx in (np.arange(3 * B), np.array([5, 0, 3])):
        w = v[:len(idx)]
        np.testing.assert_allclose(jvp(w, idx), np.einsum("npq,nq->np", prods[idx], w), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(vjp(w, idx), np.einsum("npq,np->nq", prods[idx], w), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("cell", CELLS)
def test_lanczos_norms_equal_the_dense_eigen_solver(cell):
    model = make_model(cell, H=24, seed=3)
    fwd = model.forward(*tokens(steps=8, batch=3))
    J = explicit(model, fwd.cache, 8).reshape(24, *([48 if cell == "lstm" else 24] * 2))
    maps = StepMaps(model.cell, fwd.cache)
    got = top_singular_values(maps.jvp, maps.vjp, 24, maps.P, np.random.default_rng(1))
    want = spectral_norms(J)
    np.testing.assert_allclose(got, want, rtol=1e-10)


def test_lanczos_on_explicit_matrices_zero_identity_and_tiny():
    rng = np.random.default_rng(0)
    P = 30
    mats = np.stack([rng.standard_normal((P, P)), np.zeros((P, P)), 0.7 * np.eye(P),
                     1e-200 * rng.standard_normal((P, P)), np.diag(np.r_[1.0, 1.0 - 1e-9, np.zeros(P - 2)])])

    def jvp(v, idx):
        return np.einsum("npq,nq->np", mats[idx], v)

    def vjp(u, idx):
        return np.einsum("npq,np->nq", mats[idx], u)

    got = top_singular_values(jvp, vjp, len(mats), P, rng)
    want = [np.linalg.norm(mats[0], 2), 0.0, 0.7, 1e-200 * np.linalg.norm(mats[3] * 1e200, 2), 1.0]
    np.testing.assert_allclose(got, want, rtol=1e-10)
    assert got[1] == 0.0


def test_first_sequences_and_the_sampled_jacobian_entry():
    a, b = tokens(batch=3), tokens(seed=2, batch=3)
    picked = first_sequences([a, b], 4)
    assert [p[0].shape[1] for p in picked] == [3, 1]
    np.testing.assert_array_equal(picked[1][0], b[0][:, :1])
    assert first_sequences([a, b], 0) == [a, b] and len(first_sequences([a, b], 2)) == 1
    model = make_model("gru")
    all_seqs = diagnose_model(model, [a, b], 1e-3, [1], jacobian_sequences=0)["jacobian"]
    two = diagnose_model(model, [a, b], 1e-3, [1], jacobian_sequences=2)["jacobian"]
    assert all_seqs["sequences"] == 6 and two["sequences"] == 2
    J = explicit(model, model.forward(a[0][:, :2], a[1][:, :2]).cache, T)
    np.testing.assert_allclose(two["spectral_norm"]["max"], spectral_norms(J.reshape(-1, 4, 4)).reshape(T, 2).max(1),
                               rtol=1e-10)
