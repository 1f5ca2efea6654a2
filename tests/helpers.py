"""Helpers shared by the tests (fixtures live in conftest.py): small float64 models, random
tokens, and explicit references the package itself never needs (explicit step Jacobians,
per-state gradients)."""

from __future__ import annotations

import numpy as np

# the cells the package ships, named here rather than read from the registry, so a cell that
# goes missing from the registry fails the tests
SHIPPED_CELLS = ("tanh", "relu", "gru", "lstm")


# --------------------------------------------------------------------------- small float64 models

def jittered_model(cell, V, E, H, seed=0, dtype=np.float64, **kw):
    """A Model (float64 by default) with every parameter moved by U(-0.3, 0.3) (biases off zero,
    weights a little larger), for exact-gradient and diagnostics tests; kw: ModelConfig keys."""
    from rnnlm_cli.config import ModelConfig
    from rnnlm_cli.nn.model import Model
    model = Model(ModelConfig(cell=cell, embedding_size=E, hidden_size=H, **kw), V, dtype=dtype,
                  rng=np.random.default_rng(seed))
    rng = np.random.default_rng(seed + 100)
    for p in model.params.values():
        p += rng.uniform(-0.3, 0.3, size=p.shape).astype(p.dtype)
    return model


def random_tokens(V, steps, batch, seed=1):
    """(x, y), each (steps, batch), uniform over V ids."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, V, size=(steps, batch)), rng.integers(0, V, size=(steps, batch))


def random_state(model, batch, seed=2, bound=0.8):
    """A state tuple for `model`, each part (batch, H) uniform in [-bound, bound]."""
    rng = np.random.default_rng(seed)
    return tuple(rng.uniform(-bound, bound, size=(batch, model.H)) for _ in model.initial_state(batch))


# --------------------------------------------------------------------------- explicit step Jacobians

def probes(cell, B: int, dtype=np.float64):
    """Identity basis over the state: dh (P, B, H) and dc (P, B, H) or None; P = H or 2H."""
    H, P = cell.H, cell.state_size
    dh = np.zeros((P, B, H), dtype=dtype)
    dh[np.arange(H), :, np.arange(H)] = 1
    dc = None
    if cell.has_c:
        dc = np.zeros((P, B, H), dtype=dtype)
        dc[H + np.arange(H), :, np.arange(H)] = 1
    return dh, dc


def step_jacobian(cell, cache, j: int, basis=None) -> np.ndarray:
    """ds_j/ds_{j-1} (B, P, P) of position j, row p = the derivative of state unit p, from the
    cell's own backward step applied to every basis vector (`probes`) at once."""
    if basis is None:
        basis = probes(cell, cache.arrays["h"].shape[1])
    dh, dc = basis
    _, dh_prev, dc_prev = cell.backward_step(cache[j], dh, dc)           # (P, B, H) each
    rows = dh_prev if dc_prev is None else np.concatenate([dh_prev, dc_prev], axis=-1)
    return rows.transpose(1, 0, 2)


def spectral_norms(J: np.ndarray) -> np.ndarray:
    """||J[b]||_2 for a stack J (B, P, P) by the SVD (np.linalg.norm(., 2))."""
    return np.array([np.linalg.norm(m, 2) for m in J])


# --------------------------------------------------------------------------- per-state gradients

def state_gradients(model, fwd):
    """Total gradients of the SUM loss w.r.t. every visited state, from the window backward with
    k = T (full BPTT) and its lag hook: dE/ds_i = sum over lags d of dE_{i+d}/ds_i. Returns
    (dh (T, B, H), dc (T, B, H) or None, dh0, dc0): dh0/dc0 w.r.t. the initial state, one more
    backward step of the cell from the totals at position 0."""
    T = fwd.x.shape[0]
    dh = np.zeros_like(fwd.hs)                                           # (T, B, H)
    dc = np.zeros_like(fwd.hs) if model.cell.has_c else None

    def on_lag(layer, d, dh_lag, dc_lag, da_lag):
        dh[:T - d] += dh_lag
        if dc is not None and dc_lag is not None:
            dc[:T - d] += dc_lag

    model.backward(fwd, truncation=T, on_lag=on_lag)
    _, dh0, dc0 = model.cell.backward_step(fwd.cache[0], dh[:1], None if dc is None else dc[:1])
    return dh, dc, dh0[0], None if dc0 is None else dc0[0]


def layer_state_fd_norms(model, x, y, t: int, k: int, layer: int, eps: float = 1e-6) -> np.ndarray:
    """||dE_t/ds^layer_k|| per sequence (B,) by central differences, for a model of any depth;
    E_t = the SUM loss of output t only. Step k is run layer by layer with s^layer_k replaced
    (the layers above read its h), then the steps k+1..t from the whole state."""
    from rnnlm_cli.nn import timeloop

    B = x.shape[1]
    before = model.layer_states(model.forward(x[:k], y[:k]).state if k > 0 else model.initial_state(B))
    base = model.layer_states(model.forward(x[:k + 1], y[:k + 1]).state)[layer]
    flat = np.concatenate(base, axis=-1)                                  # (B, P) s^layer_k
    H = model.H

    def E_t(f):
        h_in, state = model.params["embedding"][x[k]], []
        for l, cell in enumerate(model.cells):
            if l == layer:
                s = tuple(f[:, i * H:(i + 1) * H] for i in range(len(base)))
            else:
                lp = model.layer_params(l)
                cache = timeloop.forward_sequence(cell, lp, (h_in @ lp["W_x"] + lp["b"])[None], before[l])
                s = cell.state_at(cache, 1)
            h_in = s[0]
            state.extend(s)
        if t == k:
            return model.output.forward(model.params, h_in, y[t], None)[0]
        return float(model.forward(x[k + 1:t + 1], y[k + 1:t + 1], state=tuple(state)).nll[-1].sum())

    grad = np.zeros_like(flat)
    for idx in np.ndindex(*flat.shape):
        plus, minus = flat.copy(), flat.copy()
        plus[idx] += eps
        minus[idx] -= eps
        grad[idx] = (E_t(plus) - E_t(minus)) / (2 * eps)
    return np.linalg.norm(grad, axis=1)


def stacked_step_jacobian(model, x, y, j: int, eps: float = 1e-6) -> np.ndarray:
    """The dense ds_j/ds_(j-1) (B, P, P) of the whole stacked state (every layer's parts in
    order, P = L times a layer's), by central differences of one forward step."""
    B = x.shape[1]
    s_prev = model.forward(x[:j], y[:j]).state if j > 0 else model.initial_state(B)
    flat = np.concatenate(s_prev, axis=-1)                                # (B, P)
    H = model.H

    def step(f):
        s = tuple(f[:, i * H:(i + 1) * H] for i in range(flat.shape[1] // H))
        return np.concatenate(model.forward(x[j:j + 1], y[j:j + 1], state=s).state, axis=-1)

    J = np.zeros((B, flat.shape[1], flat.shape[1]))
    for q in range(flat.shape[1]):
        plus, minus = flat.copy(), flat.copy()
        plus[:, q] += eps
        minus[:, q] -= eps
        J[:, :, q] = (step(plus) - step(minus)) / (2 * eps)
    return J


# --------------------------------------------------------------------------- crafted checkpoints

DELETE = object()     # meta_set's value that removes the key


def meta_set(path, value):
    """A change of checkpoint arrays that sets meta[path...] = value (a missing key is added;
    value DELETE removes it); the caller re-saves the arrays, which recomputes the checksum."""
    import json

    def change(arrays):
        meta = json.loads(str(arrays["meta"]))
        target = meta
        for key in path[:-1]:
            target = target[key]
        if value is DELETE:
            del target[path[-1]]
        else:
            target[path[-1]] = value
        arrays["meta"] = np.array(json.dumps(meta))
    return change


# --------------------------------------------------------------------------- a small word corpus

def agreement_lines(n_sent=300, seed=0) -> list[str]:
    """Sentences 'the NOUN VERB home' with subject-verb agreement over a few nouns: a small,
    learnable word corpus."""
    rng = np.random.default_rng(seed)
    lines = []
    for _ in range(n_sent):
        plural = rng.random() < 0.5
        noun = rng.choice(["dogs", "cats", "men"] if plural else ["dog", "cat", "man"])
        lines.append(f"the {noun} {'run' if plural else 'runs'} home")
    return lines


def agreement_corpus(tmp_path, n_sent=300, seed=0):
    """agreement_lines split 80/10/10 into tmp_path/corpus/{train,valid,test}.txt; returns
    (the folder, {split: its lines})."""
    lines = agreement_lines(n_sent, seed)
    folder = tmp_path / "corpus"
    folder.mkdir(exist_ok=True)
    n = len(lines)
    parts = {"train": lines[: n * 8 // 10], "valid": lines[n * 8 // 10: n * 9 // 10], "test": lines[n * 9 // 10:]}
    for name, part in parts.items():
        (folder / f"{name}.txt").write_text("\n".join(part) + "\n", encoding="utf-8")
    return folder, parts
