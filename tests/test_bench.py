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


# --------------------------------------------------------------------------- stacked layers, rounds, load

def test_flop_counts_of_stacked_layers(bench):
    # layer 0 reads E inputs, layer 1 the H below: 6 (E + H) G H + 6 (H + H) G H, plus the softmax's 6 H V
    E, H, V = 650, 650, 10000
    two = bench.flops_per_token("lstm", E, H, V, layers=2)
    assert two == 6 * 1300 * 4 * 650 + 6 * 1300 * 4 * 650 + 6 * 650 * 10000
    assert two - bench.flops_per_token("lstm", E, H, V, layers=1) == 6 * (2 * H) * 4 * H
    # a 2-layer model with E != H: the second layer's input is H wide
    assert (bench.flops_per_token("gru", 100, 300, 50, layers=2) - bench.flops_per_token("gru", 100, 300, 50)
            == 6 * 600 * 3 * 300)
    # the stacked configs run with the shapes they name, the others with the bench's default
    assert bench.shape(bench.CONFIGS["lstm2-650"]) == (650, 650, 20, 2)
    assert bench.shape(bench.CONFIGS["lstm"]) == (200, 200, 20, 1)


def test_units_group_the_configs_that_share_a_pytorch_model(bench):
    units = bench.plan_units(["tanh", "lstm2-650", "class-k35", "lstm2-650-class", "eval"], use_torch=True)
    assert units == [{"names": ["tanh"], "torch": "tanh"},
                     {"names": ["lstm2-650", "lstm2-650-class"], "torch": "lstm2-650"},
                     {"names": ["class-k35"], "torch": None}, {"names": ["eval"], "torch": None}]
    # the class config alone still brings its full-softmax PyTorch model; without torch nothing does
    assert bench.plan_units(["lstm2-650-class"], True) == [{"names": ["lstm2-650-class"], "torch": "lstm2-650"}]
    assert all(u["torch"] is None for u in bench.plan_units(["tanh", "lstm2-650"], False))
    # a round: our first config, PyTorch, our others
    assert bench.round_order({"names": ["a", "b"], "torch": "a"}) == ["a", "torch", "b"]


def test_rounds_interleave_ours_and_pytorch_under_each_load(bench):
    calls, state = [], {"busy": False}

    class FakeBusy:
        def __enter__(self):
            state["busy"] = True

        def __exit__(self, *exc):
            state["busy"] = False

    def child(job):
        calls.append((job["id"], "busy" if state["busy"] else "ambient"))
        return {"runs": [len(calls)]}

    unit = {"names": ["a", "b"], "torch": "a"}
    jobs = {"a": {"id": "a"}, "b": {"id": "b"}, "torch": {"id": "t"}}
    rounds = bench.run_rounds(unit, jobs, 3, ("ambient", "busy"), child, busy=FakeBusy)
    # every round runs a, PyTorch, b under one load, then under the other; the order of the loads
    # alternates so neither always goes first; the busy process is gone between the blocks
    expect = []
    for order in (("ambient", "busy"), ("busy", "ambient"), ("ambient", "busy")):
        for load in order:
            expect += [("a", load), ("t", load), ("b", load)]
    assert calls == expect
    assert [r["runs"][0] for r in rounds[("busy", "torch")]] == [5, 8, 17]
    assert not state["busy"]


def test_entries_pair_each_round_with_pytorch(bench, monkeypatch):
    runs = {"ours": [100.0, 300.0, 200.0], "torch": [50.0, 100.0, 100.0], "cls": [400.0, 600.0, 500.0]}
    seen = {k: 0 for k in runs}

    def child(job):
        key = "torch" if job["what"] == "torch" else ("cls" if job["spec"]["softmax"] == "class" else "ours")
        seen[key] += 1
        extra = {"torch": "x", "torch_threads": 2} if key == "torch" else {"classes": 100, "mean_class_size": 9.0}
        return {"runs": [runs[key][seen[key] - 1]], "peak_rss_mb": 10.0 * seen[key], **extra}

    unit = {"names": ["lstm2-650", "lstm2-650-class"], "torch": "lstm2-650"}
    out = bench.measure_unit(unit, "prepared", "corpus", 3, ("ambient",), {}, child=child)
    by = {e["name"]: e for e in out}
    assert set(by) == {"lstm2-650", "lstm2-650-class", "torch-lstm2-650"}
    full, cls = by["lstm2-650"], by["lstm2-650-class"]
    # medians 200 / 100 and 500 / 100; per round 100/50, 300/100, 200/100 and 400/50, 600/100, 500/100
    assert full["vs_torch"] == 2.0 and full["vs_torch_rounds"] == [2.0, 3.0, 2.0]
    assert cls["vs_torch"] == 5.0 and cls["vs_torch_rounds"] == [8.0, 6.0, 5.0]
    assert cls["vs_torch_of"] == "torch-lstm2-650"
    assert full["peak_rss_mb"] == 30.0 and full["peak_rss_runs"] == [10.0, 20.0, 30.0]
    targets = bench.check_targets(out)
    assert {(t["config"], t["figure"], t["met"]) for t in targets} == {
        ("lstm2-650", "vs_torch", True), ("lstm2-650-class", "vs_torch", True),
        ("lstm2-650", "peak_rss_mb", True), ("lstm2-650-class", "peak_rss_mb", True)}
    # the bound: FLOPs per token from the shapes (2 layers of 650) over the GEMM rate
    bench.finish_entries(out, 10000, 100.0)
    assert full["flops_per_token"] == bench.flops_per_token("lstm", 650, 650, 10000, layers=2)
    assert full["bound_fraction"] == pytest.approx(200.0 * full["flops_per_token"] / 100e9)
    assert by["torch-lstm2-650"]["flops_per_token"] == full["flops_per_token"]


def test_busy_process_spins_and_is_gone_afterwards(bench):
    import os
    import time
    with bench.busy_core(settle=0.0) as proc:
        pid = proc.pid
        t0 = time.monotonic()
        while time.monotonic() - t0 < 5:                       # it burns CPU time (utime, clock ticks)
            with open(f"/proc/{pid}/stat") as fh:
                utime = int(fh.read().rsplit(")", 1)[1].split()[11])
            if utime > 0:
                break
            time.sleep(0.05)
        assert utime > 0 and proc.poll() is None
    assert proc.returncode is not None and not os.path.exists(f"/proc/{pid}")     # killed and reaped
    # an exception inside the block still ends it
    with pytest.raises(RuntimeError):
        with bench.busy_core(settle=0.0) as proc:
            raise RuntimeError("boom")
    assert proc.returncode is not None and not os.path.exists(f"/proc/{proc.pid}")


def test_missing_torch_says_how_to_get_it(bench):
    assert "pip install torch" in bench.TORCH_MISSING and "cpu" in bench.TORCH_MISSING


def test_a_variant_runs_in_the_same_rounds(bench):
    calls = []

    def child(job):
        calls.append((job["spec"]["cell"], job["what"], tuple(sorted(job.get("env", {}).items()))))
        speed = {"ours": 200.0, "torch": 100.0}[job["what"]] * (1.5 if job.get("env") else 1.0)
        return {"runs": [speed], "peak_rss_mb": 1.0, "torch": "x", "torch_threads": 2}

    unit = {"names": ["lstm"], "torch": "lstm", "variant": {"RNNLM_BIG_THREADS": "auto"}}
    out = bench.measure_unit(unit, "prepared", "corpus", 2, ("ambient",), {}, child=child)
    env = (("RNNLM_BIG_THREADS", "auto"),)
    # each round: ours, PyTorch, ours with the variant's environment
    assert calls == [("lstm", "ours", ()), ("lstm", "torch", ()), ("lstm", "ours", env)] * 2
    by = {e["name"]: e for e in out}
    assert by["lstm"]["vs_torch"] == 2.0 and by["lstm[RNNLM_BIG_THREADS=auto]"]["vs_torch"] == 3.0
    assert by["lstm[RNNLM_BIG_THREADS=auto]"]["env"] == {"RNNLM_BIG_THREADS": "auto"}
    # a variant is not a target's figure
    assert {t["config"] for t in bench.check_targets(out)} == set()


def test_bound_check_puts_each_speed_target_against_the_multiply_bound():
    """Hand-built report: PyTorch at 1,000 tokens/s (bound 2,000), ours at 900 (bound 2,000) and at
    1,500 (bound 2,500): 1.3x asks 1,300 = 65% of 2,000; 3x asks 3,000 = 120% of 2,500, beyond it."""
    from rnnlm_cli.render.docs import bench_bound_check
    med = lambda v: {"median": v}                                           # noqa: E731
    report = {"results": [
        {"name": "a", "summary": med(900.0), "bound_tokens_per_s": 2000.0, "vs_torch_of": "t"},
        {"name": "b", "summary": med(1500.0), "bound_tokens_per_s": 2500.0, "vs_torch_of": "t"},
        {"name": "t", "summary": med(1000.0), "bound_tokens_per_s": 2000.0}],
        "targets": [{"config": "a", "figure": "vs_torch", "target": 1.3, "met": False, "value": 0.9},
                    {"config": "a", "figure": "peak_rss_mb", "target": 600, "met": True, "value": 300},
                    {"config": "b", "figure": "vs_torch", "target": 3.0, "met": False, "value": 1.5}]}
    assert bench_bound_check(report).splitlines() == [
        "- `a`: 1.3x PyTorch's 1,000 tokens/s is 1,300 tokens/s, 65% of its matrix-multiply bound (2,000 tokens/s); "
        "ours reached 45% (900), PyTorch's full-softmax model 50% of its own: **missed**",
        "- `b`: 3x PyTorch's 1,000 tokens/s is 3,000 tokens/s, 120% of its matrix-multiply bound (2,500 tokens/s); "
        "ours reached 60% (1,500), PyTorch's full-softmax model 50% of its own: **missed**, and beyond the bound"]
