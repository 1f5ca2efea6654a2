"""Gradient types (RowSparse, ClassFactored, dense arrays): each operation against a hand-built
case, and training with per-parameter norm logging keeping the factored path."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from rnnlm_cli.nn import gradients as G
from rnnlm_cli.nn.gradients import ClassFactored, Gradients, RowSparse
from rnnlm_cli.train.optim import Adam, clip_gradients, find_nonfinite, global_norm


def row_sparse():
    # rows 1 and 3 of a (5, 3) matrix: [1, 2, 2] and [0, 3, 4]; squares sum to 9 + 25 = 34
    return RowSparse((5, 3), np.array([1, 3]), np.array([[1.0, 2.0, 2.0], [0.0, 3.0, 4.0]]))


def class_factored():
    # rows 2..3: d^T h with d = [[1, 2]], h = [[3, 4, 0]] -> [3, 4, 0] and [6, 8, 0] (squares: 125);
    # row 5: d = [[1], [1]], h = [[1, 0, 0], [0, 1, 0]] -> [1, 1, 0] (squares: 2)
    return ClassFactored((7, 3), np.float64, [(2, np.array([[1.0, 2.0]]), np.array([[3.0, 4.0, 0.0]])),
                                              (5, np.array([[1.0], [1.0]]), np.array([[1.0, 0, 0], [0, 1.0, 0]]))])


FACTORED_DENSE = np.array([[0, 0, 0], [0, 0, 0], [3, 4, 0], [6, 8, 0], [0, 0, 0], [1, 1, 0], [0, 0, 0]], float)
SPARSE_DENSE = np.array([[0, 0, 0], [1, 2, 2], [0, 0, 0], [0, 3, 4], [0, 0, 0]], float)


def test_row_sparse_by_hand():
    g = row_sparse()
    np.testing.assert_array_equal(g.dense(), SPARSE_DENSE)
    assert g.sq_norm() == 34.0
    g.scale_(0.5)                                          # pending: every element halved
    assert g.sq_norm() == 34.0 * 0.25
    p = np.ones((5, 3))
    g.sgd_apply(p, 2.0)                                    # p -= 2 * 0.5 * rows
    np.testing.assert_array_equal(p, 1.0 - SPARSE_DENSE)
    clipped = g.clip_(0.75)                                # 0.5 * [1 2 2; 0 3 4] clamped to 0.75
    np.testing.assert_array_equal(clipped.dense()[[1, 3]], [[0.5, 0.75, 0.75], [0.0, 0.75, 0.75]])
    assert not g.nonfinite()
    g.values[0, 1] = np.nan
    assert g.nonfinite()


def test_class_factored_by_hand():
    g = class_factored()
    assert g.rows().tolist() == [2, 3, 5]
    np.testing.assert_array_equal(g.dense(), FACTORED_DENSE)
    assert g.sq_norm() == 127.0
    g.scale_(0.5)
    assert g.sq_norm() == 127.0 * 0.25
    np.testing.assert_array_equal(g.dense(), 0.5 * FACTORED_DENSE)
    p = np.zeros((7, 3))
    g.sgd_apply(p, 0.1)
    np.testing.assert_allclose(p, -0.05 * FACTORED_DENSE, rtol=1e-15)
    clipped = g.clip_(2.0)                                 # 0.5 * rows, clamped to 2: needs the rows formed
    assert isinstance(clipped, RowSparse) and clipped.rows.tolist() == [2, 3, 5]
    np.testing.assert_array_equal(clipped.dense(), np.clip(0.5 * FACTORED_DENSE, -2, 2))
    assert not g.nonfinite()
    g.blocks[0][2][0, 0] = np.inf
    assert g.nonfinite()


def test_dense_arrays_follow_the_same_protocol():
    a = np.array([[3.0, -4.0]])
    assert G.sq_norm(a) == 25.0 and G.dense(a) is a and not G.nonfinite(a)
    G.scale_(a, 2.0)
    np.testing.assert_array_equal(a, [[6.0, -8.0]])
    assert G.clip_(a, 7.0) is a
    np.testing.assert_array_equal(a, [[6.0, -7.0]])


def test_gradients_return_what_is_stored_and_form_only_on_request(monkeypatch):
    grads = Gradients({"w": np.array([1.0, 2.0]), "emb": row_sparse(), "out": class_factored()})
    assert isinstance(grads["emb"], RowSparse) and isinstance(grads["out"], ClassFactored)
    assert "ClassFactored" in repr(grads)
    np.testing.assert_array_equal(grads.dense("out"), FACTORED_DENSE)
    assert isinstance(grads["out"], ClassFactored)                  # still stored as factors
    dense = grads.as_dense()
    assert dense["w"] is grads["w"] and np.array_equal(dense["emb"], SPARSE_DENSE)
    # norms, the global norm and clipping never form a compact gradient
    for cls in (RowSparse, ClassFactored):
        monkeypatch.setattr(cls, "dense", lambda self: pytest.fail("formed"))
    monkeypatch.setattr(ClassFactored, "_formed", lambda self: pytest.fail("formed"))
    assert grads.norms() == {"w": math.sqrt(5.0), "emb": math.sqrt(34.0), "out": math.sqrt(127.0)}
    assert global_norm(grads) == math.sqrt(5.0 + 34.0 + 127.0)
    pre, post = clip_gradients(grads, "norm", 1.0)
    assert pre == math.sqrt(166.0) and post == pytest.approx(1.0, rel=1e-15)
    assert grads.norms()["out"] == pytest.approx(math.sqrt(127.0 / 166.0), rel=1e-15)


def test_value_clipping_and_nonfinite_name_the_entry():
    grads = Gradients({"w": np.array([5.0, -0.5]), "out": class_factored()})
    clip_gradients(grads, "value", 2.5)
    np.testing.assert_array_equal(grads["w"], [2.5, -0.5])
    np.testing.assert_array_equal(grads.dense("out"), np.clip(FACTORED_DENSE, -2.5, 2.5))
    assert find_nonfinite(grads) is None
    grads["emb"] = row_sparse()
    grads["emb"].values[1, 2] = -np.inf
    assert find_nonfinite(grads) == "emb"


def test_optimizers_with_moments_get_the_dense_gradient():
    # Adam has no sparse update: the factored gradient reaches it formed, with the same numbers
    params = {"out": np.zeros((7, 3))}
    a, b = Adam(params), Adam({"out": np.zeros((7, 3))})
    a.step(params, Gradients({"out": class_factored()}), 0.1)
    ref = {"out": np.zeros((7, 3))}
    b.step(ref, {"out": FACTORED_DENSE.copy()}, 0.1)
    np.testing.assert_array_equal(params["out"], ref["out"])


# --------------------------------------------------------------------------- through the trainer

def _train(tmp_path, name, norms_every):
    from rnnlm_cli.config import load_config
    from rnnlm_cli.runs import load_model
    from rnnlm_cli.train.trainer import train
    lines = [f"the {n} {v} home today" for n, v in [("dog", "runs"), ("dogs", "run"), ("cat", "sleeps"),
                                                     ("cats", "sleep"), ("bird", "sings")] * 20]
    for split in ("train", "valid", "test"):
        (tmp_path / f"{split}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / name
    cfg = load_config(None, [f"data.train={tmp_path / 'train.txt'}", f"data.valid={tmp_path / 'valid.txt'}",
                             f"data.test={tmp_path / 'test.txt'}", f"data.prepared={tmp_path / 'prep'}",
                             f"train.out={out}", "model.softmax=class", "model.num_classes=3",
                             "model.hidden_size=8", "model.embedding_size=8", "train.batch_size=4",
                             "train.k1=5", "train.max_steps=6", "train.optimizer=sgd", "train.lr=0.5",
                             "train.clip=norm", "train.clip_threshold=0.5", "train.dtype=float64",
                             f"train.log_param_norms_every={norms_every}", "train.log_every=1"])
    train(cfg, progress=False)
    model, _, _ = load_model(str(out / "checkpoint.npz"))
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return model.params, [m for m in metrics if "step" in m and "grad_norm" in m]


def test_param_norm_logging_keeps_the_factored_update(tmp_path, monkeypatch):
    applied = []
    for cls in (RowSparse, ClassFactored):
        real = cls.sgd_apply
        monkeypatch.setattr(cls, "sgd_apply", lambda self, p, lr, real=real: (applied.append(type(self)), real(self, p, lr)))
        monkeypatch.setattr(cls, "dense", lambda self: pytest.fail("a compact gradient was formed"))
    plain, _ = _train(tmp_path, "plain", 0)
    assert applied == [RowSparse, ClassFactored] * 6        # parameter order: embedding, ..., output.W
    applied.clear()
    logged, lines = _train(tmp_path, "logged", 1)
    assert applied == [RowSparse, ClassFactored] * 6        # the sparse update on every step
    assert set(plain) == set(logged)
    for k in plain:
        np.testing.assert_array_equal(logged[k], plain[k], err_msg=k)
    assert [m["step"] for m in lines] == [1, 2, 3, 4, 5, 6]
    for m in lines:                                          # logged after clipping: they make up its norm
        norms = m["param_grad_norms"]
        assert set(norms) == set(plain)
        assert math.sqrt(sum(v * v for v in norms.values())) == pytest.approx(m["grad_norm_clipped"], rel=1e-12)
