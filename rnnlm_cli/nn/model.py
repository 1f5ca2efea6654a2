"""The language model: embedding -> recurrent cell -> output layer, with the loss.

    e_t     = embedding[x_t]                     (dropout_embedding when training)
    s^0_t   = cell_0(e_t, s^0_{t-1})             (timeloop.forward_sequence)
    s^l_t   = cell_l(h^{l-1}_t, s^l_{t-1})       l = 1..L-1 (dropout_between on h^{l-1}_t)
    y_hat   = softmax(h^{L-1}_t V + c)           (dropout_output on h^{L-1}_t when training;
                                                  or class-factorised: output.py)
    E       = -sum_t mask_t log y_hat_t[y_t]

L = model.num_layers, every layer of the same cell and hidden_size H; layer 0 reads the
embedding (E), layer l > 0 the h of layer l-1 at the same step.

Parameters (`model.params`, one dict of arrays, the names are the checkpoint format):
    embedding   (V, E)
    cell.W_x    (E, G*H)    cell.W_h (H, G*H)    cell.b (G*H,)    cell.b_h (H,) GRU only
                            one layer; with L >= 2 layer l's are cell.<l>.W_x (input size E
                            for l = 0, H above), cell.<l>.W_h, ... (`layer_prefix`)
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
    state  final state (tuple of (B, H) copies) to carry, as a constant, into the next chunk:
           every layer's parts, bottom layer first ((h,) or (h, c) per layer)
    hs     (T, B, H) hidden states of the top layer (before output dropout)
    nll    (T, B) -log p[y] per position (0 where not scored: before loss_start or masked)
    caches the cells' records, one per layer, bottom first (see cells.Cache)
    cache  the top layer's record (the only one with one layer)
    inputs each layer's input (T, B, in) after dropout: the embeddings, then the h below
    between_masks  dropout_between masks of the inputs of layers 1.. (index l; None: no dropout)
    weight_masks   per layer, the weight_drop mask of W_h (None: none)
    reg    training only: the activation regularisers' value R (model.ar, model.tar), and
    reg_grad  dR/dh of the top layer's scored positions; the backward adds count * R to the
           loss it differentiates (so with scale = 1/count: the mean loss per token plus R)
    """

    loss: float
    count: float
    state: tuple
    hs: np.ndarray
    nll: np.ndarray
    caches: list
    x: np.ndarray
    loss_start: int
    emb: np.ndarray = field(repr=False)
    emb_mask: np.ndarray | None = field(repr=False)
    out_mask: np.ndarray | None = field(repr=False)
    out_cache: dict = field(repr=False)
    cells: list = field(repr=False)
    inputs: list = field(repr=False)
    between_masks: list = field(repr=False)
    weight_masks: list = field(repr=False)
    reg: float = 0.0
    reg_grad: np.ndarray | None = field(default=None, repr=False)

    @property
    def cache(self) -> Cache:
        return self.caches[-1]

    @property
    def cell(self):
        return self.cells[-1]

    def state_after(self, n: int) -> tuple:
        """The state after the first n inputs (n = 0: the initial state, n = T: `state`), every
        layer's parts in order."""
        parts = []
        for cell, cache in zip(self.cells, self.caches):
            parts.extend(cell.state_at(cache, n))
        return tuple(parts)


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
        self.L = int(cfg.num_layers)
        if self.L < 1:
            raise ConfigError(f"model.num_layers must be >= 1, got {self.L}")
        self.dtype = np.dtype(dtype)
        self.cells = [make_cell(cfg.cell, self.H) for _ in range(self.L)]
        self.cell = self.cells[0]
        self.output = make_output(cfg, self.H, self.V, class_bounds=class_bounds, class_counts=class_counts)
        shapes = self.param_shapes()
        if params is None:
            rng = rng if rng is not None else np.random.default_rng(0)
            params = {"embedding": input_init(rng, self.E, self.V, (self.V, self.E), cfg.init,
                                              cfg.init_scale * cfg.embedding_scale, self.dtype)}
            for layer, cell in enumerate(self.cells):
                prefix = self.layer_prefix(layer)
                params.update({prefix + k: v for k, v in
                               cell.init_params(self.layer_input_size(layer), cfg, rng, self.dtype).items()})
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
        for layer, cell in enumerate(self.cells):
            prefix = self.layer_prefix(layer)
            shapes.update({prefix + k: v for k, v in cell.param_shapes(self.layer_input_size(layer)).items()})
        shapes.update(self.output.param_shapes())
        return shapes

    def layer_prefix(self, layer: int) -> str:
        """The parameter-name prefix of a layer's cell: 'cell.' with one layer, else 'cell.<l>.'."""
        return "cell." if self.L == 1 else f"cell.{layer}."

    def layer_input_size(self, layer: int) -> int:
        return self.E if layer == 0 else self.H

    def layer_params(self, layer: int) -> dict:
        """A layer's cell parameters without the prefix (W_x, W_h, b, ...)."""
        prefix = self.layer_prefix(layer)
        return {k[len(prefix):]: v for k, v in self.params.items() if k.startswith(prefix)}

    @property
    def parts_per_layer(self) -> int:
        """Arrays in one layer's state: 1 (h) or 2 (h, c)."""
        return 1 + self.cell.has_c

    def layer_states(self, state: tuple) -> list[tuple]:
        """The flat state tuple split per layer, bottom first."""
        P = self.parts_per_layer
        return [tuple(state[l * P:(l + 1) * P]) for l in range(self.L)]

    @property
    def class_bounds(self) -> list[int] | None:
        """softmax=class: the C+1 word-id boundaries of the classes (for checkpoints); else None."""
        return [int(b) for b in self.output.bounds] if isinstance(self.output, ClassSoftmax) else None

    def num_params(self) -> int:
        return int(sum(p.size for p in self.params.values()))

    def initial_state(self, batch: int) -> tuple:
        """Zero state: (h,) or (h, c) per layer, each (B, H), bottom layer first."""
        parts = []
        for cell in self.cells:
            parts.extend(cell.initial_state(batch, self.dtype))
        return tuple(parts)

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
        between = cfg.dropout_between if self.L > 1 else 0.0
        words, wdrop, locked = cfg.dropout_words, cfg.weight_drop, cfg.dropout_locked
        if train and (cfg.dropout_embedding > 0 or cfg.dropout_output > 0 or between > 0 or words > 0
                      or wdrop > 0) and rng is None:
            raise ValueError("dropout needs a random generator (rng)")

        def mask_shape(shape):                                          # locked: one mask per sequence
            return (1,) + tuple(shape[1:]) if locked else tuple(shape)

        # embedding lookup (and dropout) for all steps at once
        emb = p["embedding"][x]                                        # (T, B, E)
        emb_mask = None
        if train and words > 0:                                        # whole word types, for this batch
            word_keep = self._dropout_mask(rng, (self.V,), words)
            emb_mask = word_keep[x][..., None]                          # (T, B, 1)
        if train and cfg.dropout_embedding > 0:
            m = self._dropout_mask(rng, mask_shape(emb.shape), cfg.dropout_embedding)
            emb_mask = m if emb_mask is None else emb_mask * m
        if emb_mask is not None:
            emb *= emb_mask
        states = self.layer_states(state)
        inputs, caches, between_masks, weight_masks = [], [], [None], []
        layer_in = emb
        for layer, cell in enumerate(self.cells):
            if layer > 0:                                               # the h of the layer below
                layer_in = caches[-1].seq["h"][1:]
                bmask = None
                if train and between > 0:
                    bmask = self._dropout_mask(rng, mask_shape(layer_in.shape), between)
                    layer_in = layer_in * bmask
                between_masks.append(bmask)
            lp = self.layer_params(layer)
            wmask = None
            if train and wdrop > 0:                                     # DropConnect on W_h, this batch
                wmask = self._dropout_mask(rng, lp["W_h"].shape, wdrop)
                lp = dict(lp, W_h=lp["W_h"] * wmask)
            weight_masks.append(wmask)
            n_in = layer_in.shape[-1]
            # input projection of all steps: one GEMM
            with kernels.big_gemm(T * B * n_in * lp["W_x"].shape[1]):
                xproj = layer_in.reshape(T * B, n_in) @ lp["W_x"]      # (T*B, GH)
            xproj += lp["b"]
            xproj = xproj.reshape(T, B, -1)
            # the time loop
            caches.append(timeloop.forward_sequence(cell, lp, xproj, states[layer]))
            inputs.append(layer_in)
        hs = caches[-1].seq["h"][1:]                                    # (T, B, H)
        # output layer over all scored positions at once
        hout = hs[loss_start:]
        out_mask = None
        if train and cfg.dropout_output > 0:
            out_mask = self._dropout_mask(rng, mask_shape(hout.shape), cfg.dropout_output)
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
        fwd = Forward(loss=loss, count=count, state=(), hs=hs, nll=nll, caches=caches, x=x,
                      loss_start=loss_start, emb=emb, emb_mask=emb_mask, out_mask=out_mask,
                      out_cache=out_cache, cells=self.cells, inputs=inputs, between_masks=between_masks,
                      weight_masks=weight_masks)
        fwd.state = fwd.state_after(T)
        if train and (cfg.ar > 0 or cfg.tar > 0):
            fwd.reg, fwd.reg_grad = self._activation_reg(hs[loss_start:], hout, out_mask,
                                                         None if m2 is None else mask[loss_start:])
        return fwd

    def _activation_reg(self, h, hout, out_mask, m):
        """AR and TAR of the scored positions: (R, dR/dh (T', B, H)).

            R = ar  * sum_tb m_tb ||hout_tb||^2 / (H sum_tb m_tb)                  (hout: after output dropout)
              + tar * sum_tb m_tb m_t-1,b ||h_tb - h_t-1,b||^2 / (H sum of those pairs)   (h: before it)

        m (T', B): the position weights (None: all 1)."""
        cfg, dt = self.cfg, self.dtype
        Tn, B, H = h.shape
        m = np.ones((Tn, B), dtype=dt) if m is None else np.asarray(m, dtype=dt)
        grad = np.zeros(h.shape, dtype=dt)
        R = 0.0
        if cfg.ar > 0:
            n = float(m.sum(dtype=np.float64)) * H
            if n > 0:
                R += cfg.ar * float(np.einsum("tb,tbh,tbh->", m, hout, hout, dtype=np.float64)) / n
                g = (2.0 * cfg.ar / n) * m[..., None] * hout               # dR/d hout
                grad += g if out_mask is None else g * out_mask           # hout = h * out_mask
        if cfg.tar > 0 and Tn > 1:
            pair = m[1:] * m[:-1]                                          # (T'-1, B)
            n = float(pair.sum(dtype=np.float64)) * H
            if n > 0:
                diff = h[1:] - h[:-1]
                R += cfg.tar * float(np.einsum("tb,tbh,tbh->", pair, diff, diff, dtype=np.float64)) / n
                g = (2.0 * cfg.tar / n) * pair[..., None] * diff
                grad[1:] += g
                grad[:-1] -= g
        return R, grad

    # ------------------------------------------------------------------ backward
    def backward(self, fwd: Forward, truncation: int | None = None, scale: float = 1.0, on_lag=None) -> dict:
        """Gradients (same keys as params) of scale * fwd.loss (the SUM loss; see module doc).

        truncation None: the full recursion over the forward's T steps (full and stream modes),
        layer by layer from the top; an int k: per-output window truncation, every E_t reaches
        the states of steps t .. t-k+1 of every layer (timeloop.backward_window; `on_lag` is its
        diagnostics hook, on_lag(layer, d, dh, dc, da)). The initial state is a constant.
        """
        return self._backward(fwd, truncation, scale, on_lag)

    def _backward(self, fwd, truncation, scale, on_lag):
        with kernels.loop_threads():
            return self._backward_body(fwd, truncation, scale, on_lag)

    def _input_grad(self, fwd, layer: int, da: np.ndarray) -> np.ndarray:
        """dE/d(input of `layer`) of the first len(da) positions, through that input's dropout:
        da (n, B, GH) -> (n, B, in), the gradient w.r.t. the h of the layer below (layer 0: the
        embeddings, through the embedding and word dropout)."""
        n, B, GH = da.shape
        W_x = self.params[self.layer_prefix(layer) + "W_x"]
        with kernels.big_gemm(da.size * W_x.shape[0]):
            dx = (da.reshape(n * B, GH) @ W_x.T).reshape(n, B, -1)
        mask = fwd.emb_mask if layer == 0 else fwd.between_masks[layer]
        if mask is not None:
            dx *= mask[:n]                 # (T, B, in), (1, B, in) locked, or (T, B, 1) word dropout
        return dx

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
        if fwd.reg_grad is not None:                                    # AR/TAR: count * R, times scale
            dhs[fwd.loss_start:] += self.dtype.type(scale * fwd.count) * fwd.reg_grad
        # the time loop backwards -> pre-activation gradients of every position of every layer
        if truncation is None:
            da_layers = [None] * self.L
            for layer in range(self.L - 1, -1, -1):
                da_layers[layer] = timeloop.backward_full(self.cells[layer], fwd.caches[layer], dhs)
                if layer > 0:
                    dhs = self._input_grad(fwd, layer, da_layers[layer])    # the layer below's dE/dh_t
        else:
            da_layers = timeloop.backward_window(self.cells, fwd.caches, dhs, int(truncation),
                                                 input_grad=lambda layer, da: self._input_grad(fwd, layer, da),
                                                 on_lag=on_lag)
        # cell parameters from all positions at once
        for layer, cell in enumerate(self.cells):
            prefix = self.layer_prefix(layer)
            n_in = self.layer_input_size(layer)
            x2 = fwd.inputs[layer].reshape(T * B, n_in)
            for k, g in cell.param_grads(fwd.caches[layer], x2, da_layers[layer]).items():
                grads[prefix + k] = g
            if fwd.weight_masks[layer] is not None:
                grads[prefix + "W_h"] *= fwd.weight_masks[layer]         # undoes W_h * mask
        # undoes xproj = emb @ W_x: input gradient, dropout, then the embedding rows
        dx = self._input_grad(fwd, 0, da_layers[0]).reshape(T * B, self.E)
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
            h = p["embedding"][ids[0]]                                             # (B, E)
            new_state = []
            for layer, (cell, s) in enumerate(zip(self.cells, self.layer_states(state))):
                lp = self.layer_params(layer)
                xproj = (h @ lp["W_x"] + lp["b"])[None]                            # (1, B, GH)
                cache = timeloop.forward_sequence(cell, lp, xproj, s)
                h = cache.seq["h"][1]                                              # (B, H)
                new_state.extend(cell.state_at(cache, 1))
            return self.output.logits(p, h), tuple(new_state)
