"""The language model: embedding -> recurrent cell -> output layer, with the loss.

    e_t   = embedding[x_t]                       (dropout_embedding when training)
    s_t   = cell(e_t, s_{t-1})                   (timeloop.forward_sequence)
    y_hat = softmax(h_t V + c)                   (dropout_output on h_t when training;
                                                  or class-factorised: output.py)
    E     = -sum_t mask_t log y_hat_t[y_t]

Parameters (`model.params`, one dict of arrays, the names are the checkpoint format):
    embedding   (V, E)
    cell.W_x    (E, G*H)    cell.W_h (H, G*H)    cell.b (G*H,)    cell.b_h (H,) GRU only
    output.W    (H, V)      full softmax; (V, H) class softmax (word-major, output.py);
                            absent with tie_weights: the output matrix is embedding.T and
                            its gradient is summed into `embedding`
    output.b    (V,)
    output.class_W (H, C), output.class_b (C,)   softmax=class only (output.py); the class
                            assignment is `model.class_bounds` (C+1 word-id boundaries), which a
                            checkpoint stores in its meta ("class_bounds") to rebuild the model

Gradient convention. `backward(fwd)` returns the gradient of the SUM loss `fwd.loss`
(-log p summed over the masked positions) times `scale` (default 1). Training should use the
gradient of the MEAN loss per token: `scale=1 / fwd.count` (what `train.step.batch_gradients`
does by default). The scale is folded into the output-layer gradient, so it costs nothing.

Output layers are pluggable objects with the interface of `FullSoftmax` (param_names,
init_params, forward, backward, logits); `output.make_output` picks one from the config.

Gradients come back as a `gradients.Gradients` mapping: dense arrays, except that the untied
embedding is a RowSparse (only the batch's token rows are non-zero) and the class softmax's
untied word matrix a ClassFactored (per-class factors of the rows of the classes present);
clipping and plain SGD use them as they are (optim.py), `grads.dense(name)` forms one.

The forward and the backward each run under kernels.loop_threads() (the time loop's small
products on one BLAS thread); big products take every thread back (kernels.big_gemm).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from rnnlm_cli.nn import kernels
from rnnlm_cli.nn import timeloop
from rnnlm_cli.nn.cells import Cache, input_init, make_cell
from rnnlm_cli.errors import ConfigError
from rnnlm_cli.nn.gradients import Gradients, RowSparse
from rnnlm_cli.nn.output import ClassSoftmax, make_output, scatter_rows, sum_rows


# --------------------------------------------------------------------------- forward record

@dataclass
class Forward:
    """Everything one forward pass computed and the backward needs.

    loss   SUM of -log p[y] over the masked scored positions (a Python float)
    count  number of those positions (tokens)
    state  final state (tuple of (B, H) copies) to carry, as a constant, into the next chunk
    hs     (T, B, H) hidden states (before output dropout)
    nll    (T, B) -log p[y] per position (0 where not scored: before loss_start or masked)
    cache  the cell's record (see cells.Cache)
    """

    loss: float
    count: float
    state: tuple
    hs: np.ndarray
    nll: np.ndarray
    cache: Cache
    x: np.ndarray
    loss_start: int
    emb: np.ndarray = field(repr=False)
    emb_mask: np.ndarray | None = field(repr=False)
    out_mask: np.ndarray | None = field(repr=False)
    out_cache: dict = field(repr=False)
    cell: object = field(repr=False)

    def state_after(self, n: int) -> tuple:
        """The state after the first n inputs (n = 0: the initial state, n = T: `state`)."""
        return self.cell.state_at(self.cache, n)


# --------------------------------------------------------------------------- model

class Model:
    """Model(cfg: ModelConfig, vocab_size, dtype=np.float32, rng=None, params=None,
    class_counts=None, class_bounds=None).

    With `params` (e.g. from a checkpoint) the arrays are copied and cast to `dtype`;
    otherwise they are initialised from `rng` (a np.random.Generator; default seed 0).
    softmax=class: `class_bounds` (from a checkpoint's meta) fixes the classes; otherwise they
    come from `class_counts` (the vocabulary's training counts, frequency binning) or, with
    neither, are C equal id ranges (see softmax.make_output).
    """

    def __init__(self, cfg, vocab_size: int, dtype=np.float32, rng: np.random.Generator | None = None,
                 params: dict | None = None, class_counts=None, class_bounds=None):
        if cfg.tie_weights and cfg.embedding_size != cfg.hidden_size:
            raise ConfigError(f"model.tie_weights needs model.embedding_size == model.hidden_size, "
                              f"got {cfg.embedding_size} and {cfg.hidden_size}")
        self.cfg = cfg
        self.V, self.E, self.H = int(vocab_size), cfg.embedding_size, cfg.hidden_size
        self.dtype = np.dtype(dtype)
        self.cell = make_cell(cfg.cell, self.H)
        self.output = make_output(cfg, self.H, self.V, class_bounds=class_bounds, class_counts=class_counts)
        shapes = self.param_shapes()
        if params is None:
            rng = rng if rng is not None else np.random.default_rng(0)
            params = {"embedding": input_init(rng, self.E, self.V, (self.V, self.E), cfg.init,
                                              cfg.init_scale * cfg.embedding_scale, self.dtype)}
            params.update({f"cell.{k}": v for k, v in self.cell.init_params(self.E, cfg, rng, self.dtype).items()})
            params.update(self.output.init_params(cfg, rng, self.dtype))
        else:
            missing = sorted(set(shapes) - set(params))
            extra = sorted(set(params) - set(shapes))
            if missing or extra:
                raise ConfigError(f"parameters do not match the model: missing {missing}, unexpected {extra}")
            params = {k: np.array(params[k], dtype=self.dtype) for k in shapes}
        for k, shape in shapes.items():
            if params[k].shape != shape:
                raise ConfigError(f"parameter {k}: expected shape {shape}, got {params[k].shape}")
        self.params: dict[str, np.ndarray] = {k: params[k] for k in shapes}

    def param_shapes(self) -> dict:
        shapes = {"embedding": (self.V, self.E)}
        shapes.update({f"cell.{k}": v for k, v in self.cell.param_shapes(self.E).items()})
        shapes.update(self.output.param_shapes())
        return shapes

    @property
    def class_bounds(self) -> list[int] | None:
        """softmax=class: the C+1 word-id boundaries of the classes (for checkpoints); else None."""
        return [int(b) for b in self.output.bounds] if isinstance(self.output, ClassSoftmax) else None

    def num_params(self) -> int:
        return int(sum(p.size for p in self.params.values()))

    def initial_state(self, batch: int) -> tuple:
        """Zero state: (h,) or (h, c), each (B, H)."""
        return self.cell.initial_state(batch, self.dtype)

    def _cell_params(self) -> dict:
        return {k[5:]: v for k, v in self.params.items() if k.startswith("cell.")}

    def _dropout_mask(self, rng, shape, p):
        keep = rng.random(shape, dtype=self.dtype) >= p
        return keep * self.dtype.type(1.0 / (1.0 - p))

    # ------------------------------------------------------------------ forward
    def forward(self, x, y, state=None, mask=None, train: bool = False, rng=None, loss_start: int = 0) -> Forward:
        with kernels.loop_threads():       # one BLAS thread but for the big products
            return self._forward(x, y, state, mask, train, rng, loss_start)

    def _forward(self, x, y, state, mask, train, rng, loss_start) -> Forward:
        """Run T steps on x (T, B) and score y (T, B) from `loss_start` on.

        state: the initial state tuple (None = zeros), a constant. mask: (T, B) 0/1 weights
        (None = all ones). Positions before `loss_start` are run but not scored and their
        output layer is not computed (stream mode's k2 > k1 extension). Dropout only with
        train=True, masks drawn from `rng`.
        """
        x = np.asarray(x)
        y = np.asarray(y)
        if x.ndim != 2 or x.shape != y.shape:
            raise ValueError(f"x and y must both be (T, B), got {x.shape} and {y.shape}")
        T, B = x.shape
        if not 0 <= loss_start < T:
            raise ValueError(f"loss_start must be in [0, T), got {loss_start} with T={T}")
        p, dt = self.params, self.dtype
        cfg = self.cfg
        if state is None:
            state = self.initial_state(B)
        if train and (cfg.dropout_embedding > 0 or cfg.dropout_output > 0) and rng is None:
            raise ValueError("dropout needs a random generator (rng)")
        # embedding lookup (and dropout) for all steps at once
        emb = p["embedding"][x]                                        # (T, B, E)
        emb_mask = None
        if train and cfg.dropout_embedding > 0:
            emb_mask = self._dropout_mask(rng, emb.shape, cfg.dropout_embedding)
            emb *= emb_mask
        # input projection of all steps: one GEMM
        with kernels.big_gemm(T * B * self.E * p["cell.W_x"].shape[1]):
            xproj = emb.reshape(T * B, self.E) @ p["cell.W_x"]         # (T*B, GH)
        xproj += p["cell.b"]
        xproj = xproj.reshape(T, B, -1)
        # the time loop
        cache = timeloop.forward_sequence(self.cell, self._cell_params(), xproj, state)
        hs = cache.seq["h"][1:]                                         # (T, B, H)
        # output layer over all scored positions at once
        hout = hs[loss_start:]
        out_mask = None
        if train and cfg.dropout_output > 0:
            out_mask = self._dropout_mask(rng, hout.shape, cfg.dropout_output)
            hout = hout * out_mask
        n = (T - loss_start) * B
        m2 = None
        if mask is not None:
            mask = np.asarray(mask, dtype=dt)
            if mask.shape != (T, B):
                raise ValueError(f"mask must be (T, B) = {(T, B)}, got {mask.shape}")
            m2 = np.ascontiguousarray(mask[loss_start:]).reshape(n)
        loss, nll2, out_cache = self.output.forward(p, hout.reshape(n, self.H), y[loss_start:].reshape(n), m2)
        nll = np.zeros((T, B), dtype=dt)
        nll[loss_start:] = nll2.reshape(T - loss_start, B)
        if m2 is not None:
            nll *= mask
        count = float(n if m2 is None else m2.sum(dtype=np.float64))
        return Forward(loss=loss, count=count, state=self.cell.state_at(cache, T), hs=hs, nll=nll,
                       cache=cache, x=x, loss_start=loss_start, emb=emb, emb_mask=emb_mask,
                       out_mask=out_mask, out_cache=out_cache, cell=self.cell)

    # ------------------------------------------------------------------ backward
    def backward(self, fwd: Forward, truncation: int | None = None, scale: float = 1.0, on_lag=None) -> dict:
        """Gradients (same keys as params) of scale * fwd.loss (the SUM loss; see module doc).

        truncation None: the full recursion over the forward's T steps (full and stream modes);
        an int k: per-output window truncation, every E_t reaches s_t .. s_{t-k+1}
        (timeloop.backward_window; `on_lag` is its diagnostics hook). The initial state is a constant.
        """
        return self._backward(fwd, truncation, scale, on_lag)

    def _backward(self, fwd, truncation, scale, on_lag):
        with kernels.loop_threads():
            return self._backward_body(fwd, truncation, scale, on_lag)

    def _backward_body(self, fwd, truncation, scale, on_lag):
        p = self.params
        T, B = fwd.x.shape
        grads = Gradients()
        # output layer -> dE/dh_t of the scored positions, written into dhs
        dhs = np.zeros((T, B, self.H), dtype=self.dtype)                # (T, B, H)
        dh_out = dhs[fwd.loss_start:].reshape(-1, self.H)
        self.output.backward(p, fwd.out_cache, scale, grads, dh_out=dh_out)
        if fwd.out_mask is not None:
            dhs[fwd.loss_start:] *= fwd.out_mask                       # undoes output dropout
        # the time loop backwards -> pre-activation gradients of every position
        if truncation is None:
            da_all = timeloop.backward_full(self.cell, fwd.cache, dhs)
        else:
            da_all = timeloop.backward_window(self.cell, fwd.cache, dhs, int(truncation), on_lag=on_lag)
        # cell parameters from all positions at once
        x2 = fwd.emb.reshape(T * B, self.E)
        for k, g in self.cell.param_grads(fwd.cache, x2, da_all).items():
            grads[f"cell.{k}"] = g
        # undoes xproj = emb @ W_x: input gradient, dropout, then the embedding rows
        with kernels.big_gemm(da_all.size * self.E):
            dx = da_all.reshape(T * B, -1) @ p["cell.W_x"].T            # (T*B, E)
        if fwd.emb_mask is not None:
            dx *= fwd.emb_mask.reshape(T * B, self.E)
        if "embedding" in grads:                                        # tied: dense already
            scatter_rows(grads["embedding"], fwd.x.reshape(-1), dx)
        else:                                                           # only the tokens' rows
            rows, values = sum_rows(fwd.x.reshape(-1), dx)
            grads["embedding"] = RowSparse(p["embedding"].shape, rows, values)
        return Gradients((k, grads[k]) for k in p)

    # ------------------------------------------------------------------ conveniences
    def log_probs(self, x, y, state=None, mask=None):
        """Evaluation: (log p[y] per position (T, B), final state); no dropout, no gradients."""
        fwd = self.forward(x, y, state, mask=mask, train=False)
        return -fwd.nll, fwd.state

    def step_logits(self, token_ids, state=None):
        """Generation: one step. token_ids (B,) -> (logits (B, V), new state)."""
        ids = np.asarray(token_ids).reshape(1, -1)
        B = ids.shape[1]
        if state is None:
            state = self.initial_state(B)
        p = self.params
        with kernels.loop_threads():
            xproj = (p["embedding"][ids[0]] @ p["cell.W_x"] + p["cell.b"])[None]   # (1, B, GH)
            cache = timeloop.forward_sequence(self.cell, self._cell_params(), xproj, state)
            h = cache.seq["h"][1]                                                  # (B, H)
            return self.output.logits(p, h), self.cell.state_at(cache, 1)
