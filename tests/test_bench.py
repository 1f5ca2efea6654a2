"""scripts/bench.py's functions at tiny sizes. Timings are not checked; the figures are, on a
clock that advances one second per reading (a rate is then the work itself)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("rnnlm_bench", ROOT / "scripts" / "bench.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Ticks:
    """A perf_counter that reads 0, 1, 2, ... seconds."""

    def __init__(self):
        self.now = -1.0

    def perf_counter(self):
        self.now += 1.0
        return self.now


@pytest.fixture
def ticking(bench, monkeypatch):
    monkeypatch.setattr(bench, "time", Ticks())


def test_flop_counts(bench):
    # the full-softmax reference figure: ~12.3 MFLOP per token, the output layer's 6 H V dominating
    fpt = bench.flops_per_token("tanh", 200, 200, 10000)
    assert fpt == 6 * 200 * 10000 + 6 * 400 * 200
    assert bench.flops_per_token("lstm", 200, 200, 10000) - fpt == 6 * 400 * 600
    cls = bench.flops_per_token("tanh", 200, 200, 10000, "class", C=100, mean_class_size=100.0)
    assert cls == 6 * 200 * 200 + 6 * 400 * 200
    assert bench.flops_per_token("tanh", 200, 200, 10000, train=False) == fpt / 3
    counts = [400, 90, 60, 50, 30, 20, 15, 12, 10, 8]
    assert 1.0 <= bench.mean_class_size(counts, 3) <= len(counts)


def test_gemm_rate_is_the_flops_of_one_product_per_second(bench, ticking):
    # one call per reading pair (1 s each, so 0.01 s / 2 repeats fits one call): 2 m k n FLOPs / 1 s
    assert bench.gemm_rate((16, 8, 32), seconds=0.01, repeats=2) == 2 * 16 * 8 * 32 / 1e9


def test_tiny_run_and_table(bench, tmp_path, ticking):
    corpus, prepared = tmp_path / "corpus", tmp_path / "prepared"
    bench.synthetic_corpus(str(corpus), vocab=40, tokens=3000)
    bench.prepare(str(corpus), str(prepared))
    results = []
    for softmax, kind in (("full", "train"), ("class", "train"), ("full", "eval")):
        spec = {"kind": kind, "cell": "lstm", "softmax": softmax, "classes": 4, "k1": 5, "steps": 3, "warmup": 1,
                "tokens": 300, "E": 6, "H": 8, "B": 3}
        r = bench.run_ours(spec, str(prepared), repeats=2)
        # one timed second per repeat: training processes steps x B x k1 tokens, evaluation `tokens`
        expect = spec["steps"] * spec["B"] * spec["k1"] if kind == "train" else spec["tokens"]
        assert r["runs"] == [expect, expect]
        results.append({"name": f"{softmax}-{kind}", **r, "summary": bench.summarise(r["runs"]), "peak_rss_mb": 1.0,
                        "bound_fraction": 0.5, "note": softmax})
    pre = bench.run_preprocess(str(corpus), repeats=1)
    size = sum((corpus / f).stat().st_size for f in bench.PTB_FILES)
    assert pre["runs"] == [size / 1e6]                            # MB in one timed second
    results.append({"name": "preprocess", **pre, "summary": bench.summarise(pre["runs"]), "peak_rss_mb": 1.0})
    report = {"machine": bench.machine(), "data": "synthetic", "gemm_gflops": 1.0, "gemm_runs": [1.0],
              "repeats": 2, "results": results, "load_before": "0", "load_after": "0"}
    text = bench.render_table(report)
    assert "full-train" in text and "class-train" in text and "MB/s" in text
    assert report["results"][0]["summary"]["median"] == 3 * 3 * 5
    assert [ln.split()[1] for ln in text.splitlines() if ln.startswith(("full-train", "full-eval"))] == ["45", "300"]


def test_time_to_quality_reports_the_crossing(bench, tmp_path):
    # a target every model meets: the first validation line is the crossing; the run is then stopped
    corpus, prepared = tmp_path / "corpus", tmp_path / "prepared"
    bench.synthetic_corpus(str(corpus), vocab=40, tokens=20000)
    bench.prepare(str(corpus), str(prepared))
    small = ["model.embedding_size=8", "model.hidden_size=8", "model.num_classes=4"]
    r = bench.time_to_quality(str(prepared), target=1e9, epochs=1, eval_every=2, extra=small, softmax="class")
    assert "error" not in r, r
    # the trainer's clock at the crossing lies within the bench's wall clock around the whole run
    assert r["step"] == 2 and r["ppl"] <= 1e9 and r["seconds"] <= r["wall_s"]
    assert r["tokens"] == 2 * bench.TTQ_B * 35                    # tokens at the TTQ run's own batch size
    assert "B=40" in r["config"] and "train.batch_size=40" in r["command"]
