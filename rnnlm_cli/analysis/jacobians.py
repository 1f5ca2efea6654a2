"""Step Jacobians J_j = ds_j/ds_{j-1} of a recurrent cell, and their spectral norms.

s_j is the state after input j: h_j, or (h_j, c_j) for the LSTM, as P = H or 2H numbers
(row p of J_j: the derivative of state unit p). From the forward record of one batch:

    vjp(u)   u^T J_j, the cell's own backward step (`Cell.backward_apply`): what BPTT multiplies by
    jvp(v)   J_j v, the exact transpose of that step (`Cell.tangent`: the linearised forward step)

`top_singular_values` finds ||J||_2 = sqrt(lambda_max(J^T J)) of many maps at once by Lanczos
on J^T J through jvp and vjp, never forming J: an iteration costs two (n, H) x (H, GH) products
where forming J costs P backward steps and a dense eigen-solver O(P^3) (H = 650 LSTM: 1300 x 1300
per position). It stops when the Ritz residual bounds the error of lambda_max by `tol` relative
(so sigma by tol / 2), after P iterations (Lanczos is then exact) or after `max_iter`.

Everything here works for any cell: the maps use only the cell's backward step and tangent
(and, for stacked layers, its `input_tangent`).
"""

from __future__ import annotations

import numpy as np


# --------------------------------------------------------------------------- the maps

class StepMaps:
    """u^T J and J v for every position (j, b) of a forward record with T steps of B sequences,
    position (j, b) at flat index j * B + b; `idx` picks positions, u and v are (len(idx), P).

    StepMaps(cell, cache) for one layer; StepMaps(cells, caches, W_x) for a stacked model
    (`StepMaps.of_model(model, fwd)`): the state is then s_t = (s^0_t, ..., s^{L-1}_t), P = L
    times a layer's state size, layer l at columns l*P_l .. (l+1)*P_l. Its step Jacobian is not
    block diagonal: s^l_t reads h^{l-1}_t through xproj^l_t = h^{l-1}_t W_x^l + b^l, so

        jvp   bottom first: ds^l = tangent^l(v^l) + input_tangent^l(dh^{l-1} W_x^l)
        vjp   top first: layer l's backward step on u^l (plus what the layer above sends), its
              da^l W_x^l^T added to the h part of u^{l-1}

    (no dropout: the diagnostics run without it). With one layer both are the cell's own maps.
    """

    def __init__(self, cells, caches, W_x=None):
        if not isinstance(cells, (list, tuple)):
            cells, caches = [cells], [caches]
        self.cells, self.L = list(cells), len(cells)
        self.cell = self.cells[-1]
        self.T, self.B = caches[0].arrays["h"].shape[:2]
        self.P_layer = self.cell.state_size
        self.P = self.L * self.P_layer
        self.facs = [tuple(f.reshape((self.T * self.B,) + f.shape[2:]) for f in c.backward_factors(k))
                     for c, k in zip(self.cells, caches)]
        self.W_hs = [k.weights["W_h"] for k in caches]                  # (H, GH) each
        self.W_hTs = [c.w_hT(k) for c, k in zip(self.cells, caches)]    # (GH, H) contiguous, as the backward uses it
        self.W_xs = list(W_x) if W_x is not None else [None] * self.L   # layer l's (in, GH); [0] unused
        self.fac, self.W_h, self.W_hT = self.facs[-1], self.W_hs[-1], self.W_hTs[-1]

    @classmethod
    def of_model(cls, model, fwd) -> "StepMaps":
        """The maps of a model's forward record, every layer (one layer: StepMaps(cell, cache))."""
        if model.L == 1:
            return cls(model.cell, fwd.cache)
        W_x = [model.params[model.layer_prefix(l) + "W_x"] for l in range(model.L)]
        return cls(model.cells, fwd.caches, W_x)

    def _layer(self, l: int, u: np.ndarray) -> np.ndarray:
        return u[:, l * self.P_layer:(l + 1) * self.P_layer]

    def vjp(self, u: np.ndarray, idx: np.ndarray) -> np.ndarray:
        H = self.cell.H
        out = np.empty_like(u) if self.L > 1 else None
        from_above = None                                       # dE/dh^l_t through the layer above
        for l in range(self.L - 1, -1, -1):
            cell, ul = self.cells[l], self._layer(l, u)
            dh = ul[:, :H] if from_above is None else ul[:, :H] + from_above
            da = np.empty((len(idx), cell.gates * H), dtype=u.dtype)
            dc = ul[:, H:] if cell.has_c else None
            _, dh_prev, dc_prev = cell.backward_apply(tuple(f[idx] for f in self.facs[l]), self.W_hTs[l],
                                                      dh, dc, da)
            prev = dh_prev if dc_prev is None else np.concatenate([dh_prev, dc_prev], axis=1)
            if self.L == 1:
                return prev
            out[:, l * self.P_layer:(l + 1) * self.P_layer] = prev
            if l > 0:
                from_above = da @ self.W_xs[l].T                # undoes xproj^l = h^{l-1} W_x^l + b
        return out

    def jvp(self, v: np.ndarray, idx: np.ndarray) -> np.ndarray:
        if self.L == 1:
            return self.cell.tangent(tuple(f[idx] for f in self.fac), self.W_h, v)
        H = self.cell.H
        out = np.empty_like(v)
        below = None                                            # change of h^{l-1}_t
        for l, cell in enumerate(self.cells):
            fac = tuple(f[idx] for f in self.facs[l])
            ds = cell.tangent(fac, self.W_hs[l], self._layer(l, v))
            if below is not None:
                ds = ds + cell.input_tangent(fac, below @ self.W_xs[l])
            out[:, l * self.P_layer:(l + 1) * self.P_layer] = ds
            below = ds[:, :H]
        return out

    def products(self, spans):
        """(jvp, vjp) of the products ds_{T-1}/ds_{T-1-span} = J_{T-1} ... J_{T-span} for every
        span and sequence: map i * B + b is spans[i] of sequence b. One pass over the positions
        serves all the maps of a call (each position's W_h is read once)."""
        span_of = np.repeat(np.asarray(spans), self.B)
        seq_of = np.tile(np.arange(self.B), len(spans))

        def chain(w, idx, positions, step):
            w = w.copy()
            span, seq = span_of[idx], seq_of[idx]
            for j in positions(self.T - span.max()):
                rows = np.flatnonzero(span >= self.T - j)          # the maps whose product holds J_j
                w[rows] = step(w[rows], j * self.B + seq[rows])
            return w

        def jvp(v, idx):                                 # J_{T-span} first
            return chain(v, idx, lambda first: range(first, self.T), self.jvp)

        def vjp(u, idx):                                 # J_{T-1}^T first, as BPTT
            return chain(u, idx, lambda first: range(self.T - 1, first - 1, -1), self.vjp)

        return jvp, vjp


# --------------------------------------------------------------------------- Lanczos

def _top_ritz(alphas: list, betas: list) -> tuple[np.ndarray, np.ndarray]:
    """Largest eigenvalue of each Lanczos tridiagonal (n, k, k) and its residual bound
    beta_k |last component of its eigenvector|."""
    a = np.stack(alphas, axis=1)                         # (n, k)
    b = np.stack(betas, axis=1)                          # (n, k)
    n, k = a.shape
    T = np.zeros((n, k, k))
    i = np.arange(k)
    T[:, i, i] = a
    T[:, i[:-1], i[1:]] = T[:, i[1:], i[:-1]] = b[:, :-1]
    w, V = np.linalg.eigh(T)
    return w[:, -1], np.abs(b[:, -1] * V[:, -1, -1])


def _safe_norms(a: np.ndarray) -> np.ndarray:
    """Row norms of a (n, P) that do not underflow when the entries' squares would (~1e-160)."""
    big = np.abs(a).max(axis=1)
    big = np.where(big > 0, big, 1.0)
    return big * np.linalg.norm(a / big[:, None], axis=1)


def top_singular_values(jvp, vjp, n: int, P: int, rng: np.random.Generator, tol: float = 1e-10,
                        max_iter: int = 300, check_every: int = 5) -> np.ndarray:
    """||J_i||_2 of n linear maps on R^P given as jvp(v, idx) = J v and vjp(u, idx) = J^T u
    ((len(idx), P) arrays for the maps idx), by Lanczos on J^T J with a random start.

    Each map is scaled by c = ||J q_0|| first so that J^T J / c^2 stays far from underflow
    (products of many small Jacobians). Maps leave the batch as they converge.
    """
    sigma = np.zeros(n)
    idx = np.arange(n)
    q = rng.standard_normal((n, P))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    scale = _safe_norms(jvp(q, idx))                     # (n,) <= sigma
    live = scale > 0                                     # J q_0 = 0 for a random q_0: J = 0
    idx, q, scale = idx[live], q[live], scale[live]
    q_prev = np.zeros_like(q)
    beta = np.zeros(len(idx))
    alphas, betas = [], []
    limit = min(P, max_iter)
    k = 0
    while idx.size:
        # one Lanczos step on G = J^T J / c^2
        w = vjp(jvp(q, idx) / scale[:, None], idx) / scale[:, None]
        alpha = np.einsum("np,np->n", w, q)
        w -= alpha[:, None] * q + beta[:, None] * q_prev
        beta = np.linalg.norm(w, axis=1)
        alphas.append(alpha)
        betas.append(beta)
        k += 1
        # converged maps leave: Ritz residual small, or an invariant subspace (beta ~ 0), or k = P
        if k % check_every == 0 or k >= limit or np.any(beta <= tol * np.abs(alpha)):
            theta, resid = _top_ritz(alphas, betas)
            done = (resid <= tol * theta) | (k >= limit)
            sigma[idx[done]] = scale[done] * np.sqrt(np.maximum(theta[done], 0.0))
            keep = ~done
            idx, q, q_prev, w, beta, scale = idx[keep], q[keep], q_prev[keep], w[keep], beta[keep], scale[keep]
            alphas, betas = [x[keep] for x in alphas], [x[keep] for x in betas]
        q_prev, q = q, w / np.where(beta > 0, beta, 1.0)[:, None]
    return sigma
