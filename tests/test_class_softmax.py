"""Class-factorised softmax: frequency binning, exact normalisation, a plain reference loss,
finite differences for every cell, factored gradients and sparse SGD, checkpoint round trip."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from rnnlm_cli.nn.cells import CELLS
from rnnlm_cli.config import ModelConfig, load_config
from rnnlm_cli.analysis.gradcheck import _check_one, run_gradcheck
from rnnlm_cli.nn import kernels
from rnnlm_cli.nn.gradients import ClassFactored, RowSparse
from rnnlm_cli.nn.model import Model
from rnnlm_cli.train.optim import SGD, clip_gradients, global_norm
from rnnlm_cli.nn.output import default_num_classes, even_classes, frequency_classes

V, H = 23, 4
# sorted descending, as the vocabulary is: a dominant word, a few frequent ones, a long tail
COUNTS = [400, 90, 60, 50, 30, 20, 15, 12, 10, 8, 7, 6, 5, 4, 4, 3, 3, 2, 2, 2, 1, 1, 1]


def make(cell="tanh", tie=False, C=5, counts=COUNTS, seed=0, dtype=np.float64):
    cfg = ModelConfig(cell=cell, embedding_size=H, hidden_size=H, softmax="class", num_classes=C, tie_weights=tie)
    model = Model(cfg, V, dtype=dtype, rng=np.random.default_rng(seed), class_counts=counts)
    rng = np.random.default_rng(seed + 1)
    for p in model.params.values():          # move biases off zero, weights up a little
        p += rng.uniform(-0.5, 0.5, size=p.shape)
    return model


def batch(T=5, B=4, seed=2):
    rng = np.random.default_rng(seed)
    return rng.integers(0, V, size=(T, B)), rng.integers(0, V, size=(T, B))


# --------------------------------------------------------------------------- class assignment

def test_frequency_binning_follows_mikolov():
    # cumulative mass .5 .7 .8 .9 .95 .98 1.0 with C = 3: the boundary word joins the class it
    # crosses, then the next class begins
    assert frequency_classes([50, 20, 10, 10, 5, 3, 2], 3).tolist() == [0, 1, 2, 7]
    bounds = frequency_classes(COUNTS, 5)
    assert bounds[0] == 0 and bounds[-1] == V and np.all(np.diff(bounds) > 0)
    assert bounds.tolist()[:3] == [0, 1, 2]                  # the dominant words get classes of their own


def test_binning_splits_the_mass_into_nearly_equal_parts():
    counts = np.sort(np.random.default_rng(0).zipf(1.3, size=5000))[::-1]
    C = 40
    bounds = frequency_classes(counts, C)
    assert len(bounds) == C + 1 and np.all(np.diff(bounds) > 0)
    mass = np.add.reduceat(counts.astype(float), bounds[:-1]) / counts.sum()
    single = np.diff(bounds) == 1
    # a class of several words never holds much more than 1/C plus its last word
    assert np.all(mass[~single] <= 1 / C + counts.max() / counts.sum())
    # rare words share big classes, frequent words small ones
    assert np.diff(bounds)[-1] > 100 * np.diff(bounds)[0]


def test_defaults_and_fallbacks():
    assert default_num_classes(ModelConfig(), 10000) == 100
    assert default_num_classes(ModelConfig(num_classes=7), 10000) == 7
    assert even_classes(7, 3).tolist() == [0, 2, 5, 7]
    model = Model(ModelConfig(softmax="class", embedding_size=3, hidden_size=3), 10)   # no counts
    assert model.class_bounds == even_classes(10, 3).tolist()


def test_binning_mass_exactly_on_a_boundary_stays_in_the_class():
    # The rule: word i joins the current class a; a moves on once the cumulative mass PASSES
    # (a+1)/C (strictly). Four equal words, C = 4, cumulative mass .25 .5 .75 1 (exact in binary):
    #   word 0 -> class 0; .25 does not pass 1/4, a stays 0
    #   word 1 -> class 0; .5 passes 1/4, a = 1
    #   word 2 -> class 1; .75 passes 2/4, a = 2
    #   word 3 -> class 2
    # so the boundaries are 0, 2, 3, 4 (a ">=" rule would give four classes of one word)
    assert frequency_classes([1, 1, 1, 1], 4).tolist() == [0, 2, 3, 4]
    # C = 5 is capped at V = 2; mass .5 does not pass 1/2, so both words share class 0
    assert frequency_classes([1, 1], 5).tolist() == [0, 2]


# --------------------------------------------------------------------------- probabilities

@pytest.mark.parametrize("tie", [False, True])
def test_probabilities_sum_to_one_and_match_the_training_path(tie):
    model = make(tie=tie)
    x, y = batch()
    logp, _ = model.log_probs(x, y)
    state = None
    for t in range(len(x)):
        full, state = model.step_logits(x[t], state)        # (B, V) log P(w | h)
        np.testing.assert_allclose(np.exp(full).sum(axis=1), 1.0, rtol=1e-12)
        np.testing.assert_allclose(full[np.arange(x.shape[1]), y[t]], logp[t], rtol=1e-10, atol=1e-12)


def reference_nll(model, h, y):
    """-log P(y | h) written out: class softmax times softmax within the class's words."""
    p, out = model.params, model.output
    W = p["embedding"].T if model.cfg.tie_weights else p["output.W"].T      # stored (V, H)
    zc = h @ p["output.class_W"] + p["output.class_b"]
    c = out.class_of[y]
    pc = np.exp(zc[c]) / np.exp(zc).sum()
    lo, hi = out.bounds[c], out.bounds[c + 1]
    zw = h @ W[:, lo:hi] + p["output.b"][lo:hi]
    pw = np.exp(zw[y - lo]) / np.exp(zw).sum()
    return -np.log(pc * pw)


@pytest.mark.parametrize("tie", [False, True])
def test_loss_equals_a_plain_reference(tie):
    model = make(tie=tie, seed=3)
    x, y = batch(seed=4)
    mask = np.ones(x.shape)
    mask[3:, 1] = 0
    fwd = model.forward(x, y, mask=mask)
    hs = fwd.hs
    ref = sum(reference_nll(model, hs[t, b], y[t, b]) for t in range(x.shape[0]) for b in range(x.shape[1])
              if mask[t, b])
    assert fwd.loss == pytest.approx(ref, rel=1e-12)
    assert fwd.count == mask.sum()


# --------------------------------------------------------------------------- gradients

def test_gradcheck_passes_for_every_cell_with_class_softmax():
    cfg = load_config(None)
    result = run_gradcheck(cfg, cells=list(CELLS), modes=["full", "window", "stream"], tying=[False, True],
                           softmaxes=["class"])
    assert result["passed"], [c for c in result["checks"] if not c["passed"]]
    params = {c["param"] for c in result["checks"]}
    assert {"output.class_W", "output.class_b", "output.W", "output.b"} <= params


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("tie", [False, True])
def test_finite_differences_with_one_word_classes_and_lone_positions(cell, tie):
    """Frequency-binned classes (several of one word) and a batch where most classes hold a single
    position: the paths gradcheck's equal classes never take."""
    model = make(cell=cell, tie=tie, seed=5)
    assert 1 in np.diff(model.class_bounds)
    rng = np.random.default_rng(6)
    x = rng.integers(0, V, size=(3, 2))
    y = np.array([[0, 5], [21, 1], [9, 14]])                   # classes 0, one-word ones, the tail class
    state = tuple(rng.uniform(-0.5, 0.5, size=(2, H)) for _ in model.initial_state(2))
    rows = _check_one(model, lambda: model.forward(x, y, state).loss,
                      lambda: model.backward(model.forward(x, y, state)), 1e-5, 0, rng)
    worst = {name: err for name, err, *_ in rows}
    assert max(worst.values()) < 1e-6, worst


def test_word_matrix_gradient_is_compact_and_exact():
    model = make(seed=7)
    x, y = batch(T=2, B=2, seed=8)
    grads = model.backward(model.forward(x, y))
    word = grads["output.W"]
    assert isinstance(word, ClassFactored) and word.shape == (V, model.H)   # rows of the (V, H) matrix
    touched = set(np.unique(model.output.class_of[y.ravel()]).tolist())
    expect = [w for w in range(V) if model.output.class_of[w] in touched and np.diff(model.class_bounds)[
        model.output.class_of[w]] > 1]
    assert word.rows().tolist() == expect
    dense = grads.dense("output.W")                             # formed on request only
    assert grads["output.W"] is word                            # the stored gradient is unchanged
    untouched = np.setdiff1d(np.arange(V), expect)
    assert np.all(dense[untouched] == 0) and np.any(dense[expect] != 0)
    emb = grads["embedding"]
    assert isinstance(emb, RowSparse) and emb.rows.tolist() == sorted(set(x.ravel().tolist()))


def test_sparse_sgd_and_clipping_equal_the_dense_path():
    model = make(seed=9, dtype=np.float32)
    x, y = batch(seed=10)
    grads = model.backward(model.forward(x, y), scale=1 / x.size)
    dense = {k: np.array(v) for k, v in grads.as_dense().items()}   # formed copies
    assert isinstance(grads["output.W"], ClassFactored) and isinstance(grads["embedding"], RowSparse)
    assert global_norm(grads) == pytest.approx(global_norm(dense), rel=1e-5)
    pre, post = clip_gradients(grads, "norm", 0.1)
    pre_d, post_d = clip_gradients(dense, "norm", 0.1)
    assert (pre, post) == pytest.approx((pre_d, post_d), rel=1e-5)
    p_sparse = {k: v.copy() for k, v in model.params.items()}
    p_dense = {k: v.copy() for k, v in model.params.items()}
    SGD(p_sparse).step(p_sparse, grads, 0.5)
    SGD(p_dense).step(p_dense, dense, 0.5)
    for k in p_dense:
        np.testing.assert_allclose(p_sparse[k], p_dense[k], rtol=1e-6, atol=1e-7)


def never_formed(monkeypatch):
    """Make forming a factored gradient's rows an error."""
    def refuse(self, *args):
        raise AssertionError("the factored gradient was formed")
    for method in ("dense", "_formed", "clip_"):
        monkeypatch.setattr(ClassFactored, method, refuse)


@pytest.mark.parametrize("shape", [(5, 4), (2, 2)])
def test_factored_word_gradient_norm_update_and_values(shape, monkeypatch):
    # the untied word matrix's gradient stays as factors d^T h: norm, clipping and SGD use them
    model = make(counts=None, seed=15, dtype=np.float32)          # 5 even classes of 4-5 words
    x, y = batch(T=shape[0], B=shape[1], seed=8)
    if shape == (2, 2):     # three targets in one multi-word class, one alone in another
        out = model.output
        multi = [c for c in range(out.C) if out.size[c] > 1]
        y = np.array([[out.bounds[multi[0]]] * 2, [out.bounds[multi[0]], out.bounds[multi[1]]]])
    grads = model.backward(model.forward(x, y), scale=1 / x.size)
    word = grads["output.W"]
    assert isinstance(word, ClassFactored)
    rows = sorted(d.shape[0] for _, d, _ in word.blocks)
    assert rows[-1] > 1 if shape == (5, 4) else rows[0] == 1          # blocks and lone rows
    # the oracle: each block d^T h as a float64 sum over its positions
    blocks = [np.einsum("rk,rh->kh", d.astype(np.float64), h.astype(np.float64)) for _, d, h in word.blocks]
    formed = word.dense()
    for (start, d, _), block in zip(word.blocks, blocks):
        np.testing.assert_allclose(formed[start:start + d.shape[1]], block, rtol=1e-5, atol=1e-9)
    assert word.sq_norm() == pytest.approx(sum(float((b ** 2).sum()) for b in blocks), rel=1e-5)
    # norm clipping sets a scale; SGD then applies the blocks without forming the rows
    never_formed(monkeypatch)
    clip_gradients(grads, "norm", 1e-3)
    assert grads["output.W"] is word and word.scale < 1
    p = {k: v.copy() for k, v in model.params.items()}
    SGD(p).step(p, grads, 0.5)
    expect = model.params["output.W"].copy()
    for (start, d, _), block in zip(word.blocks, blocks):
        expect[start:start + d.shape[1]] -= 0.5 * word.scale * block
    np.testing.assert_allclose(p["output.W"], expect, rtol=1e-5, atol=1e-8)
    monkeypatch.undo()
    # asked for densely, it is scale * d^T h block by block
    np.testing.assert_allclose(grads.dense("output.W"), word.scale * formed, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("tie", [False, True])
def test_products_in_pieces_change_no_number(monkeypatch, tie):
    # the word part's products are cut into pieces (forward: column pieces of a small-kernel
    # size; backward: pieces along the summed words; SGD: row pieces); tiny piece sizes on
    # the 16-word class give the same losses, gradients and update as whole products
    def run():
        model = make(tie=tie, C=8, seed=21)             # one class of 16 words, seven of one
        assert model.output.size.max() == 16
        x, y = batch(T=6, B=5, seed=22)
        y[:, :3] = model.output.bounds[-2] + np.arange(3)        # several rows in the big class
        fwd = model.forward(x, y)
        grads = model.backward(fwd, scale=1 / x.size)
        norm = global_norm(grads)
        dense = {k: np.array(v) for k, v in grads.as_dense().items()}
        grads = model.backward(fwd, scale=1 / x.size)
        p = {k: v.copy() for k, v in model.params.items()}
        SGD(p).step(p, grads, 0.3)
        return fwd.nll, norm, dense, p

    whole = run()
    monkeypatch.setattr(kernels, "small_columns", lambda rows, inner: 3)
    monkeypatch.setattr(kernels, "INNER_STEP", 5)
    monkeypatch.setattr(kernels, "UPDATE_ROWS", 4)
    pieces = run()
    np.testing.assert_allclose(pieces[0], whole[0], rtol=1e-12, atol=1e-13)
    assert pieces[1] == pytest.approx(whole[1], rel=1e-12)
    for k in whole[2]:
        np.testing.assert_allclose(pieces[2][k], whole[2][k], rtol=1e-10, atol=1e-13, err_msg=k)
        np.testing.assert_allclose(pieces[3][k], whole[3][k], rtol=1e-12, atol=1e-13, err_msg=k)


def test_factored_norm_survives_float32_overflow():
    # h h^T overflows float32 for states of 1e20; that block is taken again in float64
    rng = np.random.default_rng(5)
    d = rng.standard_normal((3, 4)).astype(np.float32)
    h = (rng.standard_normal((3, 6)) * 1e20).astype(np.float32)
    c = ClassFactored((10, 6), np.float32, [(2, d, h)])
    expect = float((np.einsum("rk,rh->kh", d.astype(np.float64), h.astype(np.float64)) ** 2).sum())
    assert np.isfinite(expect) and c.sq_norm() == pytest.approx(expect, rel=1e-5)


def test_backward_is_reentrant():
    model = make(seed=11)
    x, y = batch(seed=12)
    fwd = model.forward(x, y)
    a = model.backward(fwd)
    b = model.backward(fwd, scale=0.5)
    for k in a:
        np.testing.assert_allclose(b.dense(k), 0.5 * a.dense(k), rtol=1e-12, atol=1e-15)


# --------------------------------------------------------------------------- checkpoints

def test_class_bounds_rebuild_the_model():
    model = make(seed=13)
    copy = Model(model.cfg, V, dtype=np.float64, params=model.params, class_bounds=model.class_bounds)
    x, y = batch(seed=14)
    np.testing.assert_array_equal(copy.log_probs(x, y)[0], model.log_probs(x, y)[0])


def test_training_stores_the_classes_in_the_checkpoint(tmp_path):
    from rnnlm_cli.runs import load_model
    from rnnlm_cli.train.trainer import train
    lines = [f"the {n} {v} home" for n, v in [("dog", "runs"), ("dogs", "run"), ("cat", "runs"),
                                               ("cats", "run")] * 30]
    for split in ("train", "valid", "test"):
        (tmp_path / f"{split}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    cfg = load_config(None, [f"data.train={tmp_path / 'train.txt'}", f"data.valid={tmp_path / 'valid.txt'}",
                             f"data.test={tmp_path / 'test.txt'}", f"data.prepared={tmp_path / 'prep'}",
                             f"train.out={tmp_path / 'run'}", "model.softmax=class", "model.num_classes=3",
                             "model.hidden_size=8", "model.embedding_size=8", "train.batch_size=4",
                             "train.k1=5", "train.epochs=1", "train.optimizer=sgd", "train.lr=0.5"])
    summary = train(cfg, progress=False)
    model, _, meta = load_model(str(tmp_path / "run" / "checkpoint.npz"))
    assert meta["class_bounds"] == model.class_bounds and len(model.class_bounds) == 4
    assert model.params["output.class_W"].shape == (8, 3)
    assert np.isfinite(summary["valid_ppl"])
    cfg_full = dataclasses.replace(cfg.model, softmax="full")
    assert Model(cfg_full, 10).class_bounds is None


@pytest.mark.parametrize("softmax", ["full", "class"])
def test_no_float64_in_float32_training(softmax):
    from rnnlm_cli.train import step
    from rnnlm_cli.data.batching import StreamBatches
    cfg = ModelConfig(cell="gru", embedding_size=H, hidden_size=H, softmax=softmax, num_classes=5)
    model = Model(cfg, V, dtype=np.float32, rng=np.random.default_rng(0), class_counts=COUNTS)
    tokens = np.random.default_rng(1).integers(0, V, size=400)
    fwd, grads, state = step.batch_gradients(model, StreamBatches(tokens, 4, 6).batch(0), None)
    assert fwd.nll.dtype == np.float32 and all(s.dtype == np.float32 for s in state)
    for name, g in grads.items():
        arrays = [x for _, d, h in g.blocks for x in (d, h)] if isinstance(g, ClassFactored) else \
            [g.values] if isinstance(g, RowSparse) else [g]
        assert all(a.dtype == np.float32 for a in arrays), name
    clip_gradients(grads, "norm", 1e-3)
    SGD(model.params).step(model.params, grads, 0.1)
    assert all(p.dtype == np.float32 for p in model.params.values())
