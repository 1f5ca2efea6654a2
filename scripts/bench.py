#!/usr/bin/env python3
"""rnnlm benchmark: training/evaluation/preprocessing throughput on Penn Treebank.

    python scripts/bench.py                       # every config, 3 repeats, a table
    python scripts/bench.py --quick               # a fast smoke run (1 repeat, few steps)
    python scripts/bench.py --configs tanh,lstm --repeats 5 --format json
    python scripts/bench.py --time-to-quality     # minutes: wall time to validation ppl 150
    python scripts/bench.py --env RNNLM_LOOP_THREADS=0 --configs lstm   # A/B an env knob

Every config runs in a fresh subprocess (so its peak RSS, ru_maxrss of that child, is its own):
it warms up, then times a fixed number of REAL training steps (step.batch_gradients -> clip
-> optimizer.step) `--repeats` times; the table shows the median and the spread (min-max) of
tokens/s. "bound" is the fraction of the matrix-multiply bound: FLOPs per token (counted from
the shapes: every GEMM of the forward and backward) times tokens/s, divided by the float32
GEMM rate measured in the same run ((700x200) @ (200x10000), also in a fresh child).

When `torch` is importable, the equivalent PyTorch model (nn.Embedding + nn.RNN/GRU/LSTM +
nn.Linear, SGD + clip_grad_norm_, torch.set_num_threads(2)) is timed in the same run and the
ratio ours/PyTorch is printed beside each full-softmax config. torch is not a dependency.

Data: ../shared/corpora/ptb (relative to the repository root; --corpus to point elsewhere),
preprocessed by rnnlm itself into a temporary folder. Without it, a synthetic Zipf stream over a
10,000-word vocabulary stands in, and the output says so.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

DEFAULT_CORPUS = os.path.join(ROOT, "..", "shared", "corpora", "ptb")
PTB_FILES = ("ptb.train.txt", "ptb.valid.txt", "ptb.test.txt")

# E = H = 200, V = 10k (PTB), B = 20; steps: timed training steps per repeat
CONFIGS = {
    "tanh":      {"kind": "train", "cell": "tanh", "softmax": "full", "k1": 35, "steps": 40, "warmup": 3},
    "gru":       {"kind": "train", "cell": "gru", "softmax": "full", "k1": 35, "steps": 30, "warmup": 3},
    "lstm":      {"kind": "train", "cell": "lstm", "softmax": "full", "k1": 35, "steps": 30, "warmup": 3},
    "relu":      {"kind": "train", "cell": "relu", "softmax": "full", "k1": 35, "steps": 40, "warmup": 3},
    # the stacked PTB shape: E = H = 650, 2 layers (Zaremba's medium LSTM); the class config is
    # compared with PyTorch's full-softmax model of the same shape (`torch_ref`)
    "lstm2-650": {"kind": "train", "cell": "lstm", "softmax": "full", "k1": 35, "steps": 8, "warmup": 2,
                  "E": 650, "H": 650, "layers": 2},
    "lstm2-650-class": {"kind": "train", "cell": "lstm", "softmax": "class", "classes": 100, "k1": 35,
                        "steps": 16, "warmup": 3, "E": 650, "H": 650, "layers": 2, "torch_ref": "lstm2-650"},
    "class-k4":  {"kind": "train", "cell": "tanh", "softmax": "class", "classes": 100, "k1": 4, "steps": 600,
                  "warmup": 30},
    "class-k35": {"kind": "train", "cell": "tanh", "softmax": "class", "classes": 100, "k1": 35, "steps": 80,
                  "warmup": 5},
    "eval":      {"kind": "eval", "cell": "tanh", "softmax": "full", "k1": 35, "tokens": 40000},
    "eval-class": {"kind": "eval", "cell": "tanh", "softmax": "class", "classes": 100, "k1": 35, "tokens": 40000},
    "preprocess": {"kind": "preprocess"},
}
TORCH_CELLS = ("tanh", "gru", "lstm", "relu")
SHAPE = {"E": 200, "H": 200, "B": 20, "layers": 1}
GEMM_SHAPE = (700, 200, 10000)
TTQ_TARGET = 150.0
PEERS = {"mikolov_rnnlm_0.3e": 10900.0}     # words/s, the published figure of Mikolov's toolkit (another machine: AMD EPYC)


# --------------------------------------------------------------------------- counting

def gates(cell: str) -> int:
    """G: the gate blocks of the cell's W_h (the cell says how many)."""
    from rnnlm_cli.nn.cells import make_cell
    return make_cell(cell, 1).gates


def flops_per_token(cell: str, E: int, H: int, V: int, softmax: str = "full", C: int = 0,
                    mean_class_size: float = 0.0, train: bool = True, layers: int = 1) -> float:
    """Multiply-add FLOPs (2 per MAC) of every GEMM per token, from the shapes.

    cell: x W_x and h W_h forward; backward dW_x, dW_h, dx, dh_prev (3x the forward); layer 0
    reads the embedding (E), layers 1.. the h below (H).
    full softmax: h W (H x V) forward; dW and dh backward. class softmax: the class part
    (H x C) plus the word part over the target's class (mean_class_size words on average).
    Element-wise work (nonlinearities, exp) is not counted.
    """
    G = gates(cell)
    cell_fwd = 2 * (E + H) * G * H + (layers - 1) * 2 * (H + H) * G * H
    out_fwd = 2 * H * V if softmax == "full" else 2 * H * (C + mean_class_size)
    fwd = cell_fwd + out_fwd
    return 3 * fwd if train else fwd


def mean_class_size(counts, classes: int) -> float:
    """Average size of the target's class, weighted by the unigram counts (~V/C by design)."""
    from rnnlm_cli.nn.output import frequency_classes
    bounds = frequency_classes(counts, classes)
    size = np.diff(bounds)
    mass = np.add.reduceat(np.asarray(counts, dtype=np.float64), bounds[:-1])
    return float((mass * size).sum() / mass.sum())


def gemm_rate(shape=GEMM_SHAPE, seconds: float = 1.0, repeats: int = 5) -> float:
    """float32 GEMM rate in GFLOP/s: the best of `repeats` timings of (m x k) @ (k x n)."""
    m, k, n = shape
    rng = np.random.default_rng(0)
    a = rng.random((m, k), dtype=np.float32)
    b = rng.random((k, n), dtype=np.float32)
    c = np.empty((m, n), dtype=np.float32)
    np.matmul(a, b, out=c)
    t0 = time.perf_counter()
    np.matmul(a, b, out=c)
    per = max(time.perf_counter() - t0, 1e-6)
    calls = max(1, int(seconds / repeats / per))
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            np.matmul(a, b, out=c)
        best = min(best, (time.perf_counter() - t0) / calls)
    return 2.0 * m * k * n / best / 1e9


# --------------------------------------------------------------------------- data

def synthetic_corpus(folder: str, vocab: int = 10000, tokens: int = 1_000_000, seed: int = 0) -> None:
    """Write ptb.{train,valid,test}.txt with a Zipf(1.1) word stream over `vocab` types and
    sentences of ~20 words: a stand-in with PTB's sizes when the real corpus is absent."""
    rng = np.random.default_rng(seed)
    words = np.array([f"w{i}" for i in range(vocab)])
    ranks = np.arange(1, vocab + 1, dtype=np.float64)
    p = ranks ** -1.1
    p /= p.sum()
    os.makedirs(folder, exist_ok=True)
    for name, n in zip(PTB_FILES, (tokens, tokens // 12, tokens // 11)):
        ids = rng.choice(vocab, size=n, p=p)
        cuts = np.cumsum(rng.integers(5, 35, size=n // 5 + 2))
        lines = [" ".join(words[ids[a:b]]) for a, b in zip(np.r_[0, cuts], cuts) if a < n]
        with open(os.path.join(folder, name), "w", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")


def data_config(corpus: str, prepared: str):
    from rnnlm_cli.config import load_config
    return load_config(None, [f"data.train={os.path.join(corpus, PTB_FILES[0])}",
                              f"data.valid={os.path.join(corpus, PTB_FILES[1])}",
                              f"data.test={os.path.join(corpus, PTB_FILES[2])}",
                              f"data.prepared={prepared}"])


def prepare(corpus: str, prepared: str) -> None:
    from rnnlm_cli.data import corpus as corpus_mod
    cfg = data_config(corpus, prepared)
    corpus_mod.preprocess(cfg.data, cfg, force=True, progress=False)


# --------------------------------------------------------------------------- one config (child side)

def shape(spec: dict) -> tuple:
    """(E, H, B, layers) of a config: its own or the bench's default (SHAPE)."""
    return tuple(spec.get(k, SHAPE[k]) for k in ("E", "H", "B", "layers"))


def model_config(spec: dict, extra=()):
    from rnnlm_cli.config import load_config
    E, H, B, L = shape(spec)
    sets = [f"model.cell={spec['cell']}", f"model.embedding_size={E}", f"model.hidden_size={H}",
            f"model.num_layers={L}",
            f"model.softmax={spec['softmax']}", f"model.num_classes={spec.get('classes', 0)}",
            f"train.batch_size={B}", f"train.k1={spec['k1']}", "train.optimizer=sgd", "train.lr=1.0",
            "train.clip=norm", "train.clip_threshold=5.0", "train.eval_batch_size=10"]
    return load_config(None, sets + list(extra))


def run_ours(spec: dict, prepared: str, repeats: int) -> dict:
    """Time training steps (or evaluation) of our model; tokens/s per repeat."""
    from rnnlm_cli.train import step
    from rnnlm_cli.data.batching import StreamBatches
    from rnnlm_cli.data.corpus import load_prepared
    from rnnlm_cli.nn.model import Model
    from rnnlm_cli.train.optim import clip_gradients, make_optimizer
    from rnnlm_cli.data.corpus import separator_id
    from rnnlm_cli.evaluate import evaluate_tokens

    data = load_prepared(prepared)
    V = len(data.vocab)
    cfg = model_config(spec)
    rng = np.random.default_rng(0)
    model = Model(cfg.model, V, rng=rng, class_counts=data.vocab.counts)
    info = {"V": V, "params": model.num_params()}
    if spec["softmax"] == "class":
        info["classes"] = len(model.class_bounds) - 1
        info["mean_class_size"] = mean_class_size(data.vocab.counts, spec["classes"])
    runs = []
    if spec["kind"] == "eval":
        tokens = np.asarray(data.split("valid"), dtype=np.int64)
        tokens = np.resize(tokens, spec.get("tokens", len(tokens)))
        sep = separator_id(data)
        evaluate_tokens(model, tokens[:2000], cfg, sep)             # warm-up
        for _ in range(repeats):
            t0 = time.perf_counter()
            evaluate_tokens(model, tokens, cfg, sep)
            runs.append(len(tokens) / (time.perf_counter() - t0))
        return {"runs": runs, **info}
    tc = cfg.train
    optimizer = make_optimizer(model.params, tc)
    batches = StreamBatches(np.asarray(data.split("train"), dtype=np.int64), tc.batch_size, tc.k1)
    state, c = None, 0

    def steps(n):
        nonlocal state, c
        done = 0
        for _ in range(n):
            batch = batches.batch(c % len(batches))
            c += 1
            fwd, grads, state = step.batch_gradients(model, batch, state, mode="stream")
            clip_gradients(grads, tc.clip, tc.clip_threshold)
            optimizer.step(model.params, grads, tc.lr)
            done += int(fwd.count)
        return done

    steps(spec.get("warmup", 3))
    for _ in range(repeats):
        t0 = time.perf_counter()
        n = steps(spec["steps"])
        runs.append(n / (time.perf_counter() - t0))
    return {"runs": runs, **info}


def run_torch(spec: dict, prepared: str, repeats: int, threads: int) -> dict:
    """The same training step in PyTorch (CPU): Embedding + RNN/GRU/LSTM (num_layers as ours) +
    Linear (always the full softmax: PyTorch has no class-factorised one), SGD, clip."""
    import torch
    from torch import nn

    from rnnlm_cli.data.batching import batchify
    from rnnlm_cli.data.corpus import load_prepared

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    data = load_prepared(prepared)
    E, H, B, L = shape(spec)
    V, T = len(data.vocab), spec["k1"]
    cell = spec["cell"]
    rnn = {"tanh": lambda: nn.RNN(E, H, num_layers=L), "relu": lambda: nn.RNN(E, H, num_layers=L, nonlinearity="relu"),
           "gru": lambda: nn.GRU(E, H, num_layers=L), "lstm": lambda: nn.LSTM(E, H, num_layers=L)}[cell]()
    emb, out = nn.Embedding(V, E), nn.Linear(H, V)
    params = list(emb.parameters()) + list(rnn.parameters()) + list(out.parameters())
    opt = torch.optim.SGD(params, lr=1.0)
    loss_fn = nn.CrossEntropyLoss()
    stream = torch.from_numpy(batchify(np.asarray(data.split("train"), dtype=np.int64), B))
    n_chunks = (len(stream) - 1) // T
    state = {"h": None, "c": 0}

    def steps(n):
        for _ in range(n):
            i = state["c"] % n_chunks
            state["c"] += 1
            x, y = stream[i * T:(i + 1) * T], stream[i * T + 1:(i + 1) * T + 1]
            h = state["h"]
            if h is not None:
                h = tuple(s.detach() for s in h) if isinstance(h, tuple) else h.detach()
            opt.zero_grad()
            o, h = rnn(emb(x), h)
            loss = loss_fn(out(o).reshape(-1, V), y.reshape(-1))
            loss.backward()
            nn.utils.clip_grad_norm_(params, 5.0)
            opt.step()
            state["h"] = h
        return n * T * B

    steps(spec.get("warmup", 3))
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        n = steps(spec["steps"])
        runs.append(n / (time.perf_counter() - t0))
    return {"runs": runs, "torch": torch.__version__, "torch_threads": threads}


def run_preprocess(corpus: str, repeats: int) -> dict:
    size = sum(os.path.getsize(os.path.join(corpus, f)) for f in PTB_FILES)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(repeats + 1):
            t0 = time.perf_counter()
            prepare(corpus, os.path.join(tmp, "p"))
            if r:                                                      # the first run warms the cache
                runs.append(size / 1e6 / (time.perf_counter() - t0))
    return {"runs": runs, "bytes": size, "unit": "MB/s"}


def child_main(job: dict) -> dict:
    """Run one job (in this fresh process) and add its peak RSS."""
    kind = job["what"]
    if kind == "gemm":
        result = {"gflops": gemm_rate(tuple(job.get("shape", GEMM_SHAPE)))}
    elif kind == "preprocess":
        result = run_preprocess(job["corpus"], job["repeats"])
    elif kind == "torch":
        result = run_torch(job["spec"], job["prepared"], job["repeats"], job.get("threads", 2))
    else:
        result = run_ours(job["spec"], job["prepared"], job["repeats"])
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return result


def run_child(job: dict, env_extra: dict | None = None, timeout: float = 1800) -> dict:
    env = dict(os.environ)
    env.update(env_extra or {})
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", json.dumps(job)],
                          capture_output=True, text=True, env=env, timeout=timeout)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"error": " | ".join(tail) or f"exit {proc.returncode}"}
    return json.loads(lines[-1])


# --------------------------------------------------------------------------- machine

def machine() -> dict:
    from rnnlm_cli import machine as this_machine
    from rnnlm_cli.nn import kernels
    info = {**this_machine.describe(), "blas": kernels.info(), "threads_env": {k: os.environ[k] for k in (
                "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "RNNLM_LOOP_THREADS", "OPENBLAS_CORETYPE",
                "OPENBLAS_L2_SIZE") if k in os.environ}}
    return info


def blas_line(blas: dict) -> str:
    """The BLAS as the table's head names it (from kernels.info(), i.e. threadpoolctl)."""
    if not blas.get("library"):
        return "BLAS unknown (threadpoolctl found none)"
    big = (f", {blas['big_threads']} for the big products (RNNLM_BIG_THREADS={blas.get('big_threads_setting')})"
           if blas.get("big_threads") is not None else "")
    return (f"BLAS {blas['library']} {blas.get('version') or ''} ({blas.get('core') or '?'}, "
            f"{blas.get('threads')} threads, {blas.get('loop_threads')} in the time loop{big})")


def torch_available() -> str | None:
    try:
        import importlib.util
        return "yes" if importlib.util.find_spec("torch") else None
    except (ImportError, ValueError):
        return None


TORCH_MISSING = ("PyTorch comparison skipped: torch is not importable by " + sys.executable + ". torch is not a "
                 "dependency of rnnlm; for the side-by-side figures install a CPU build into the same "
                 "environment, e.g. `.venv/bin/pip install torch --index-url https://download.pytorch.org/whl/cpu` "
                 "(the CPU wheel; the default one pulls multi-GB CUDA libraries), then run `make bench` again.")


# --------------------------------------------------------------------------- load and rounds

BUSY_LOOP = ("import os\n"
             "parent = os.getppid()\n"
             "while os.getppid() == parent:\n"          # ends by itself when the bench is gone
             "    for _ in range(2000000):\n"
             "        pass\n")


@contextlib.contextmanager
def busy_core(settle: float = 0.2):
    """A process spinning on one core for the duration of the block (a CPU-bound neighbour like
    another training); killed and reaped when the block ends, however it ends. It also ends by
    itself when the process that started it dies (it polls its parent id)."""
    proc = subprocess.Popen([sys.executable, "-c", BUSY_LOOP], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(settle)                        # let it be scheduled before the timed child starts
        yield proc
    finally:
        proc.kill()
        proc.wait()


def torch_model_of(name: str) -> str | None:
    """The config whose PyTorch model a config is compared with (a class-softmax config: the
    full-softmax config of its shape; PyTorch has no class softmax), or None."""
    spec = CONFIGS[name]
    if spec["kind"] != "train" or spec["cell"] not in TORCH_CELLS:
        return None
    if spec["softmax"] == "full":
        return name
    return spec.get("torch_ref")


def plan_units(names, use_torch: bool) -> list[dict]:
    """Configs grouped into units timed in the same rounds: the configs compared with one PyTorch
    model share a unit (e.g. the 2-layer LSTM with full and with class softmax), every other
    config is a unit of its own. {"names": [...], "torch": config name of the PyTorch model or None}."""
    units, by_torch = [], {}
    for name in names:
        ref = torch_model_of(name) if use_torch else None
        if ref is not None and ref in by_torch:
            by_torch[ref]["names"].append(name)
            continue
        unit = {"names": [name], "torch": ref}
        if ref is not None:
            by_torch[ref] = unit
        units.append(unit)
    return units


def quick_spec(spec: dict) -> dict:
    spec = dict(spec)
    spec["steps"] = max(2, spec.get("steps", 0) // 10)
    spec["warmup"] = 1
    spec["tokens"] = 5000
    return spec


def round_order(unit: dict) -> list[str]:
    """Job keys of one round: our first config, PyTorch, our other configs (ours and PyTorch
    alternate, so a change in the machine's load hits both sides alike)."""
    keys = [unit["names"][0]] + (["torch"] if unit["torch"] else []) + unit["names"][1:]
    return keys + [f"{name}+variant" for name in unit["names"] if unit.get("variant")]


def run_rounds(unit: dict, jobs: dict, repeats: int, loads, child, busy=busy_core) -> dict:
    """Every job once per round and load, each in a fresh child (`child(job)`); the loads alternate
    their order from round to round (ambient first, then busy first, ...). Returns
    {(load, key): [result of each round]}."""
    rounds = {(load, key): [] for load in loads for key in jobs}
    for r in range(repeats):
        order = list(loads) if r % 2 == 0 else list(reversed(loads))
        for load in order:
            with (busy() if load == "busy" else contextlib.nullcontext()):
                for key in round_order(unit):
                    rounds[(load, key)].append(child(jobs[key]))
    return rounds


def entry_name(name: str, load: str) -> str:
    return name if load == "ambient" else f"{name}@{load}"


def variant_label(variant: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in variant.items())


def measure_unit(unit, prepared, corpus, repeats, loads, env, quick=False, torch_threads=2, child=None) -> list:
    """Time a unit's configs (and its PyTorch model) under each load; one entry per config and load.
    unit["variant"] (environment settings, optional): our configs are timed a second time with
    them in the same rounds (an interleaved A/B), as entries named config[KEY=VALUE]."""
    child = child or (lambda job: run_child({**job, "repeats": 1}, {**env, **job.get("env", {})}))
    specs = {name: quick_spec(CONFIGS[name]) if quick else dict(CONFIGS[name]) for name in unit["names"]}
    first = unit["names"][0]
    if CONFIGS[first]["kind"] == "preprocess":
        out = []
        for load in loads:
            with (busy_core() if load == "busy" else contextlib.nullcontext()):
                r = run_child({"what": "preprocess", "corpus": corpus, "repeats": repeats}, env)
            entry = {"name": entry_name(first, load), **r, "unit": "MB/s", "load": load,
                     "note": "corpus.preprocess, PTB train+valid+test"}
            if "error" not in entry:
                entry["summary"] = summarise(entry["runs"])
            out.append(entry)
        return out
    jobs = {name: {"what": "ours", "spec": spec, "prepared": prepared} for name, spec in specs.items()}
    variant = unit.get("variant")
    if variant:
        for name, spec in specs.items():
            jobs[f"{name}+variant"] = {"what": "ours", "spec": spec, "prepared": prepared, "env": dict(variant)}
    if unit["torch"]:
        tspec = quick_spec(CONFIGS[unit["torch"]]) if quick else dict(CONFIGS[unit["torch"]])
        jobs["torch"] = {"what": "torch", "spec": tspec, "prepared": prepared, "threads": torch_threads}
    rounds = run_rounds(unit, jobs, repeats, loads, child)
    out = []
    for load in loads:
        tentry = None
        if unit["torch"]:
            tentry = merge_rounds(entry_name(f"torch-{unit['torch']}", load), rounds[(load, "torch")], jobs["torch"]["spec"])
            tentry["load"] = load
            if "error" not in tentry:
                tentry["note"] = f"PyTorch {tentry['torch']} CPU, {tentry['torch_threads']} threads"
        keys = [(name, name) for name in unit["names"]]
        if variant:
            keys += [(f"{name}+variant", f"{name}[{variant_label(variant)}]") for name in unit["names"]]
        for key, shown in keys:
            name = key.split("+")[0]
            spec = specs[name]
            entry = merge_rounds(entry_name(shown, load), rounds[(load, key)], spec)
            entry["load"] = load
            if key != name:
                entry["env"] = dict(variant)
            if "error" not in entry:
                entry["note"] = f"{spec['kind']}, {spec['softmax']} softmax, k1={spec['k1']}" + (
                    f", C={entry.get('classes')}" if spec["softmax"] == "class" else "") + (
                    f", E=H={spec['H']}, {spec.get('layers', 1)} layers" if "H" in spec else "")
                if tentry is not None and "error" not in tentry:
                    entry["vs_torch"] = entry["summary"]["median"] / tentry["summary"]["median"]
                    entry["vs_torch_of"] = tentry["name"]
                    # the ratio of each round (same minute of machine time), for the spread
                    entry["vs_torch_rounds"] = [a / b for a, b in zip(entry["runs"], tentry["runs"])]
            out.append(entry)
        if tentry is not None:
            out.append(tentry)
    return out


def finish_entries(results: list, vocab: int, gflops: float) -> None:
    """FLOPs per token from each entry's shapes and the fraction of the GEMM bound (a PyTorch entry:
    its full-softmax model's FLOPs)."""
    for entry in results:
        spec = entry.get("spec")
        if "summary" not in entry or not spec or spec.get("kind") not in ("train", "eval"):
            continue
        E, H, _, L = shape(spec)
        fpt = flops_per_token(spec["cell"], E, H, vocab, spec["softmax"], entry.get("classes", 0),
                              entry.get("mean_class_size", 0.0), train=spec["kind"] == "train", layers=L)
        entry["flops_per_token"] = fpt
        entry["bound_tokens_per_s"] = gflops * 1e9 / fpt
        entry["bound_fraction"] = entry["summary"]["median"] / entry["bound_tokens_per_s"]


# the stacked-layer targets: ours / PyTorch's 2-layer nn.LSTM (full softmax) tokens/s, and peak RSS
TARGETS = (("lstm2-650", "vs_torch", 1.3), ("lstm2-650-class", "vs_torch", 3.0),
           ("lstm2-650", "peak_rss_mb", 600.0), ("lstm2-650-class", "peak_rss_mb", 600.0))


def check_targets(results: list) -> list:
    """Each target under each load that was measured: the figure, the target and met or not."""
    out = []
    for entry in results:
        base = entry["name"].split("@")[0]
        for name, key, target in TARGETS:
            if base == name and key in entry:
                value = entry[key]
                met = value >= target if key == "vs_torch" else value <= target
                out.append({"config": entry["name"], "load": entry.get("load", "ambient"), "figure": key,
                            "value": value, "target": target, "met": bool(met)})
    return out


def other_processes(min_cpu: float = 5.0, limit: int = 8) -> list:
    """What else is running (ps: the processes above min_cpu % CPU, not this bench or its children):
    [cpu %, elapsed, command (shortened)]."""
    try:
        text = subprocess.run(["ps", "-eo", "pid,ppid,pcpu,etime,args", "--sort=-pcpu"], capture_output=True,
                              text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    me, out = os.getpid(), []
    for line in text.splitlines()[1:]:
        parts = line.split(None, 4)
        if len(parts) < 5:
            continue
        pid, ppid, cpu, etime, cmd = parts
        if int(pid) == me or int(ppid) == me or float(cpu) < min_cpu:
            continue
        out.append([float(cpu), etime, cmd[:120]])
    return out[:limit]


# --------------------------------------------------------------------------- summarising

def merge_rounds(name: str, rounds: list[dict], spec: dict) -> dict:
    """One entry from the per-round children: all runs, the largest peak RSS."""
    bad = [r for r in rounds if "error" in r]
    if bad:
        return {"name": name, "error": bad[0]["error"], "spec": spec}
    entry = {"name": name, **rounds[0], "spec": spec}
    entry["runs"] = [v for r in rounds for v in r["runs"]]
    entry["peak_rss_mb"] = max(r["peak_rss_mb"] for r in rounds)
    entry["peak_rss_runs"] = [r["peak_rss_mb"] for r in rounds]
    entry["summary"] = summarise(entry["runs"])
    return entry


def summarise(runs: list[float]) -> dict:
    return {"median": statistics.median(runs), "min": min(runs), "max": max(runs), "runs": runs}


def render_table(report: dict) -> str:
    rows = [("config", "tokens/s", "spread (min-max)", "vs torch", "bound", "peak RSS", "note")]
    for r in report["results"]:
        if "error" in r:
            rows.append((r["name"], "error", "", "", "", "", r["error"][:60]))
            continue
        s = r["summary"]
        unit = r.get("unit", "tok/s")
        fmt = (lambda v: f"{v:.1f}") if unit == "MB/s" else (lambda v: f"{v:,.0f}")
        rows.append((r["name"], fmt(s["median"]) + ("" if unit == "tok/s" else f" {unit}"),
                     f"{fmt(s['min'])}-{fmt(s['max'])}",
                     (f"{r['vs_torch']:.2f}x" + (f" ({min(r['vs_torch_rounds']):.2f}-{max(r['vs_torch_rounds']):.2f})"
                                                 if len(r.get("vs_torch_rounds", [])) > 1 else ""))
                     if r.get("vs_torch") else "",
                     f"{r['bound_fraction']:.0%}" if r.get("bound_fraction") else "",
                     f"{r['peak_rss_mb']:.0f} MB", r.get("note", "")))
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(v).rjust(w) if 0 < i < 6 else str(v).ljust(w) for i, (v, w) in
                       enumerate(zip(row, widths))).rstrip() for row in rows]
    m = report["machine"]
    head = [f"rnnlm bench: {m['cpu']}, {m['cores']} cores, numpy {m['numpy']}, {blas_line(m['blas'])}",
            f"data: {report['data']}",
            f"float32 GEMM {GEMM_SHAPE[0]}x{GEMM_SHAPE[1]} @ {GEMM_SHAPE[1]}x{GEMM_SHAPE[2]}: "
            f"{report['gemm_gflops']:.0f} GFLOP/s (median of {len(report['gemm_runs'])} children: "
            f"{', '.join(f'{g:.0f}' for g in report['gemm_runs'])})",
            f"{report['repeats']} repeats per config, load average before/after: "
            f"{report['load_before']} / {report['load_after']}"]
    if report.get("variant"):
        head.append(f"config[{variant_label(report['variant'])}]: our config again with that environment, "
                    "in the same rounds")
    if "busy" in report.get("loads", ()):
        head.append("@busy: the same, timed while a spinning process of the bench kept one core busy "
                    "(rounds interleaved with the ambient ones)")
    for when in ("before", "after"):
        others = report.get(f"others_{when}")
        if others is not None:
            from rnnlm_cli.render.docs import short_command
            head.append(f"other processes {when} (>= 5% CPU): " + ("; ".join(
                f"{cpu:.0f}% {short_command(cmd)}" for cpu, _, cmd in others) or "none"))
    if report.get("torch"):
        head.append(report["torch"])
    out = head + [""] + lines
    if report.get("targets"):
        out.append("")
        for t in report["targets"]:
            fig = (f"{t['value']:.2f}x PyTorch's 2-layer nn.LSTM (target >= {t['target']:.1f}x)" if t["figure"] == "vs_torch"
                   else f"peak RSS {t['value']:.0f} MB (target <= {t['target']:.0f} MB)")
            out.append(f"target {t['config']}: {fig}: {'met' if t['met'] else 'MISSED'}")
    for ttq in report.get("time_to_quality") or []:
        out += ["", render_ttq(ttq)]
    return "\n".join(out)


def render_ttq(t: dict) -> str:
    if "error" in t:
        return f"time to quality: {t['error']}"
    if t.get("seconds") is None:
        return (f"time to quality ({t['softmax']} softmax): validation perplexity {t['target']} not reached in "
                f"{t['epochs']} epoch(s); best {t['best_ppl']:.1f} after {t['wall_s']:.0f} s")
    lines = [f"time to validation perplexity {t['target']:.0f}: {t['seconds']:.0f} s, {t['tokens']:,} training "
             f"tokens (step {t['step']}, ppl {t['ppl']:.1f})", f"  {t['config']}"]
    if t.get("train_tokens_per_s_median"):
        lines.append(f"  the trainer's own logged throughput during the run: median "
                     f"{t['train_tokens_per_s_median']:,.0f} tok/s (evaluations excluded)")
    for name, p in t.get("peers", {}).items():
        lines.append(f"  {name}: {p['tokens_per_s']:,.0f} tok/s -> est. {p['seconds']:.0f} s for the same tokens "
                     f"(ours is {p['seconds'] / t['seconds']:.1f}x faster; {p['source']})")
    return "\n".join(lines)


# --------------------------------------------------------------------------- time to quality

# The time-to-quality run: the bench's tanh shape (E = H = 200), tied, tuned to get to perplexity
# 150 in few tokens and fast. In trial runs (docs/performance.md), dropout 0.1/0.25, Adam 0.002 and
# B = 20 needed 3.6M tokens; without dropout, embedding_scale 2 and Adam 0.003, 2.1M; B = 40 then
# needed 2.4M tokens but runs ~1.3x faster per token (Adam's pass over the (V, H) embedding and the
# per-batch class-layer work are spread over twice the tokens).
TTQ_B = 40
TTQ_SETTINGS = ["model.cell=tanh", f"model.embedding_size={SHAPE['E']}", f"model.hidden_size={SHAPE['H']}",
                "model.tie_weights=true", "model.embedding_scale=2.0", "model.dropout_embedding=0.0",
                "model.dropout_output=0.0", "model.num_classes=100", f"train.batch_size={TTQ_B}", "train.k1=35",
                "train.optimizer=adam", "train.lr=0.003", "train.clip=norm", "train.clip_threshold=1.0",
                "train.schedule=plateau", "train.lr_factor=0.5", "train.eval_batch_size=10", "train.log_every=50"]


def time_to_quality(prepared: str, target: float = TTQ_TARGET, epochs: int = 6, eval_every: int = 100,
                    extra=(), poll: float = 0.5, softmax: str = "full") -> dict:
    """Train the PTB tanh config with `rnnlm train` (a subprocess) and watch its metrics.jsonl:
    the first validation line at or below `target` perplexity gives the wall time (`elapsed`,
    the trainer's own clock, evaluations included) and the training tokens; the run is then
    stopped with SIGTERM (it saves a checkpoint and exits)."""
    import signal

    from rnnlm_cli.train.metrics import read_metrics
    spec = dict(CONFIGS["tanh"])
    sets = TTQ_SETTINGS + [f"model.softmax={softmax}", f"data.prepared={prepared}", f"train.epochs={epochs}",
                           f"train.eval_every={eval_every}"] + list(extra)
    hit, best, speeds = None, math.inf, []
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "run")
        cmd = [sys.executable, "-m", "rnnlm_cli", "train", "--quiet", "--out", out]
        for item in sets:
            cmd += ["--set", item]
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        metrics, seen = os.path.join(out, "metrics.jsonl"), 0
        while True:
            done = proc.poll() is not None
            if os.path.exists(metrics):
                lines = read_metrics(out)          # stops before a line still being written
                for _, rec in lines[seen:]:
                    seen += 1
                    if "tokens_per_sec" in rec:
                        speeds.append(rec["tokens_per_sec"])
                    if rec.get("split") == "valid" and not rec.get("final"):
                        best = min(best, rec["ppl"])
                        if rec["ppl"] <= target and hit is None:
                            hit = rec
            if hit is not None and not done:
                proc.send_signal(signal.SIGTERM)
                proc.wait()
                break
            if done:
                break
            time.sleep(poll)
        wall = time.perf_counter() - t0
        err = proc.stderr.read() if proc.stderr else ""
    result = {"config": f"tanh E=H=200 tied, {softmax} softmax, embedding_scale 2, no dropout, B={TTQ_B} k1=35, adam 0.003 "
                        f"(plateau halving), clip 1.0", "softmax": softmax, "target": target,
              "epochs": epochs, "eval_every": eval_every, "wall_s": wall, "best_ppl": best,
              "train_tokens_per_s_median": statistics.median(speeds) if speeds else None,
              "command": "rnnlm train " + " ".join(f"--set {x}" for x in sets if not x.startswith("data."))}
    if hit is None:
        if best == math.inf:
            return {"error": f"no validation line (exit {proc.returncode}): {err.strip().splitlines()[-1:] }"}
        result["seconds"] = None
        return result
    result.update(seconds=hit["elapsed"], step=hit["step"], ppl=hit["ppl"],
                  tokens=hit["step"] * TTQ_B * spec["k1"])
    return result


def peer_estimates(tokens: int, torch_tanh: float | None) -> dict:
    """The peers' time for `tokens` training tokens at their throughput."""
    if torch_tanh:
        peers = {"pytorch_cpu_tanh": {"tokens_per_s": torch_tanh, "source": "measured in this run (SGD step)"}}
    else:
        peers = {"pytorch_cpu_tanh": {"tokens_per_s": 5660.0, "source": "published figure, other machine"}}
    peers["mikolov_rnnlm_0.3e"] = {"tokens_per_s": PEERS["mikolov_rnnlm_0.3e"],
                                   "source": "published figure, other machine"}
    for p in peers.values():
        p["seconds"] = tokens / p["tokens_per_s"]
    return peers


# --------------------------------------------------------------------------- main

def parse_env(items) -> dict:
    env = {}
    for item in items or ():
        key, _, value = item.partition("=")
        env[key] = value
    return env


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", default=",".join(CONFIGS),
                    help=f"comma-separated subset of: {', '.join(CONFIGS)} (default: all)")
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats per config (default 3)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 repeat, a few steps per config")
    ap.add_argument("--format", choices=("table", "json"), default="table")
    ap.add_argument("--corpus", default=DEFAULT_CORPUS, help="folder holding ptb.{train,valid,test}.txt")
    ap.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparison")
    ap.add_argument("--torch-threads", type=int, default=2)
    ap.add_argument("--env", action="append", metavar="KEY=VALUE", help="environment for the children (repeatable)")
    ap.add_argument("--time-to-quality", action="store_true",
                    help=f"also train the tanh config until validation perplexity {TTQ_TARGET:.0f} (minutes)")
    ap.add_argument("--ttq-epochs", type=int, default=6, help="most epochs the time-to-quality run may take")
    ap.add_argument("--ttq-eval-every", type=int, default=100, help="updates between its validations")
    ap.add_argument("--ttq-softmax", default="full,class",
                    help="output layer(s) of the time-to-quality runs (comma-separated: full, class)")
    ap.add_argument("--busy", action="store_true",
                    help="also time every config compared with PyTorch (and PyTorch) with one core kept busy by a "
                         "spinning process the bench starts and stops around those children, interleaved with the "
                         "ambient rounds")
    ap.add_argument("--variant", action="append", metavar="KEY=VALUE",
                    help="also time our configs with this environment setting (repeatable: one variant with all of "
                         "them) in the same rounds, an interleaved A/B, e.g. --variant RNNLM_BIG_THREADS=auto")
    ap.add_argument("--out", metavar="FILE.json", help="also write the JSON report to FILE.json (atomically)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.child:
        print(json.dumps(child_main(json.loads(args.child))))
        return 0

    names = [n.strip() for n in args.configs.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        ap.error(f"unknown config(s) {', '.join(unknown)}; choose from {', '.join(CONFIGS)}")
    repeats = 1 if args.quick else max(1, args.repeats)
    env = parse_env(args.env)
    load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
    others_before = other_processes()

    with tempfile.TemporaryDirectory() as tmp:
        corpus = os.path.abspath(args.corpus)
        if all(os.path.isfile(os.path.join(corpus, f)) for f in PTB_FILES):
            data_note = f"Penn Treebank ({os.path.relpath(corpus, ROOT)})"
        else:
            data_note = (f"SYNTHETIC: {corpus} has no PTB files; a Zipf(1.1) stream over 10,000 words "
                         f"with PTB's sizes stands in (figures are not PTB figures)")
            corpus = os.path.join(tmp, "synthetic")
            synthetic_corpus(corpus, tokens=200_000 if args.quick else 1_000_000)
        prepared = os.path.join(tmp, "prepared")
        prepare(corpus, prepared)
        if args.format == "table":
            print(f"data: {data_note}", file=sys.stderr)

        gemm_runs = [run_child({"what": "gemm"}, env).get("gflops", float("nan")) for _ in range(2)]
        vocab = len(open(os.path.join(prepared, "vocab.txt"), encoding="utf-8").read().splitlines())
        use_torch = not args.no_torch and torch_available()
        if not use_torch and not args.no_torch:
            print(TORCH_MISSING, file=sys.stderr)
        results, torch_speed = [], {}
        for unit in plan_units(names, bool(use_torch)):
            # the busy rounds are for the configs compared with PyTorch (the cells); the others once
            loads = ("ambient", "busy") if args.busy and unit["torch"] else ("ambient",)
            if args.format == "table":
                print(f"  running {', '.join(unit['names'])}" + (f" + PyTorch {unit['torch']}" if unit["torch"] else "")
                      + f" ({' and '.join(loads)}) ...", file=sys.stderr)
            if args.variant:
                unit["variant"] = parse_env(args.variant)
            results += measure_unit(unit, prepared, corpus, repeats, loads, env, args.quick, args.torch_threads)
        gemm_runs.append(run_child({"what": "gemm"}, env).get("gflops", float("nan")))

        gflops = statistics.median(gemm_runs)           # 2 children before the configs, 1 after
        finish_entries(results, vocab, gflops)
        for entry in results:
            if entry["name"].startswith("torch-") and entry.get("load") == "ambient" and "summary" in entry:
                torch_speed[entry["name"][6:]] = entry["summary"]["median"]
        report = {"machine": machine(), "data": data_note, "gemm_gflops": gflops, "gemm_runs": gemm_runs,
                  "gemm_shape": list(GEMM_SHAPE), "repeats": repeats, "env": env, "results": results,
                  "loads": ["ambient", "busy"] if args.busy else ["ambient"], "variant": parse_env(args.variant),
                  "load_before": load_before, "others_before": others_before,
                  "command": " ".join([os.path.basename(sys.executable)] + sys.argv)}
        if not use_torch:
            report["torch"] = "skipped (--no-torch)" if args.no_torch else TORCH_MISSING
        report["targets"] = check_targets(results)
        if args.time_to_quality:
            if args.format == "table":
                print("  time to quality (minutes) ...", file=sys.stderr)
            report["time_to_quality"] = []
            for softmax in [x.strip() for x in args.ttq_softmax.split(",") if x.strip()]:
                ttq = time_to_quality(prepared, epochs=args.ttq_epochs, eval_every=args.ttq_eval_every,
                                      softmax=softmax)
                if ttq.get("seconds"):
                    ttq["peers"] = peer_estimates(ttq["tokens"], torch_speed.get("tanh"))
                    ttq["assumption"] = ("a peer needs the same number of training tokens as we did and runs at "
                                         "its steady throughput (no evaluation or start-up time)")
                report["time_to_quality"].append(ttq)
        report["load_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
        report["others_after"] = other_processes()

    if args.out:
        from rnnlm_cli.fileio import atomic_write_json
        atomic_write_json(args.out, report)
    if args.format == "json":
        print(json.dumps(report, indent=2))
    else:
        print(render_table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
