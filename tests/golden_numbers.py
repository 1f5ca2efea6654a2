"""The numbers a restructuring must not change, computed from fixed seeds in float64.

`compute_all(workdir)` returns a JSON-able dict:

  grads     for every cell x softmax x tying x BPTT mode: the loss of one batch and, per
            parameter, the squared gradient norm and a projection onto fixed random weights
            (sensitive to every element)
  cli       through the command line, on the project's agreement corpus: training summaries
            (float64) for each BPTT mode and cell, an evaluation, samples, a diagnosis (lag
            profile, horizons, Jacobian norms, truncation bias) and a probe

tests/golden/golden.json holds what the code computed when the test was written;
test_golden.py recomputes and compares (relative 1e-9, strings exactly). Regenerate only for
a change that is meant to change numbers:  python tests/golden_numbers.py tests/golden/golden.json
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "corpora" / "agreement"


def _model_and_batches():
    from rnnlm_cli.config import ModelConfig
    from rnnlm_cli.data.batching import SentenceBatches, StreamBatches
    from rnnlm_cli.nn.model import Model
    return ModelConfig, Model, SentenceBatches, StreamBatches


def gradient_numbers() -> dict:
    from rnnlm_cli.train.step import batch_gradients

    ModelConfig, Model, SentenceBatches, StreamBatches = _model_and_batches()
    V, H, B = 13, 6, 3
    rng = np.random.default_rng(7)
    tokens = rng.integers(1, V, size=90)
    tokens[rng.random(90) < 0.15] = 0                      # id 0: the sentence separator
    out = {}
    for cell in ("tanh", "relu", "gru", "lstm"):
        for softmax in ("full", "class"):
            for tie in (False, True):
                cfg = ModelConfig(cell=cell, embedding_size=H, hidden_size=H, tie_weights=tie, softmax=softmax,
                                  num_classes=4 if softmax == "class" else 0, dropout_embedding=0.1,
                                  dropout_output=0.2)
                model = Model(cfg, V, dtype=np.float64, rng=np.random.default_rng(3))
                jitter = np.random.default_rng(4)
                for p in model.params.values():
                    p += jitter.uniform(-0.3, 0.3, size=p.shape)
                for mode in ("full", "window", "stream"):
                    if mode == "full":
                        batch = SentenceBatches(tokens, 0, B, rng=np.random.default_rng(5), max_len=0).batch(0)
                    else:
                        batch = StreamBatches(tokens, B, 7, 10 if mode == "stream" else 0).batch(1)
                    state = None
                    if mode != "full":
                        srng = np.random.default_rng(6)
                        state = tuple(srng.uniform(-0.5, 0.5, size=s.shape) for s in model.initial_state(B))
                    fwd, grads, nxt = batch_gradients(model, batch, state, mode=mode, window=3, train=True,
                                                      rng=np.random.default_rng(8), normalize="token")
                    proj = np.random.default_rng(9)
                    entry = {"loss": float(fwd.loss), "count": float(fwd.count)}
                    for name in sorted(model.params):
                        g = np.asarray(_dense(grads, name), dtype=np.float64)
                        entry[f"{name}.sq"] = float(np.sum(g * g))
                        entry[f"{name}.proj"] = float(np.sum(g * proj.standard_normal(g.shape)))
                    if nxt is not None:
                        entry["next_state"] = float(sum(np.sum(s * (1 + np.arange(s.size).reshape(s.shape) % 5))
                                                        for s in nxt))
                    out[f"{cell}/{softmax}/{'tied' if tie else 'untied'}/{mode}"] = entry
    return out


def _dense(grads, name):
    """A parameter's gradient as a dense array, whatever the gradient container."""
    dense = getattr(grads, "dense", None)
    if callable(dense):
        return dense(name)
    return grads[name]


def _run(args: list[str]) -> str:
    from click.testing import CliRunner

    from rnnlm_cli.cli import cli
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    if result.exit_code != 0:
        raise RuntimeError(f"rnnlm {' '.join(args)} exited {result.exit_code}: {result.output}")
    return result.stdout


def _numbers(obj, prefix=""):
    """Flatten a JSON document to {path: number or string} (drops timings and paths)."""
    skip = ("wall", "elapsed", "seconds", "time", "per_sec", "tokens_per_s", "path", "checkpoint", "folder",
            "prepared", "out", "sources", "config", "version", "sha256", "commit", "machine", "created")
    flat = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            if any(s in str(k) for s in skip):
                continue
            flat.update(_numbers(v, f"{prefix}{k}."))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            flat.update(_numbers(v, f"{prefix}{i}."))
    elif isinstance(obj, (bool, str)) or obj is None:
        flat[prefix[:-1]] = obj
    elif isinstance(obj, (int, float)):
        flat[prefix[:-1]] = float(obj)
    return flat


def cli_numbers(workdir: Path) -> dict:
    os.chdir(workdir)
    data = ["--set", f"data.train={CORPUS / 'train.txt'}", "--set", f"data.valid={CORPUS / 'valid.txt'}",
            "--set", f"data.test={CORPUS / 'test.txt'}", "--set", f"data.prepared={workdir / 'data'}"]
    base = data + ["--set", "model.embedding_size=12", "--set", "model.hidden_size=16", "--set", "train.dtype=float64",
                   "--set", "train.batch_size=8", "--set", "train.k1=10", "--set", "train.eval_every=20",
                   "--set", "train.max_steps=40", "--set", "train.log_every=10", "--set", "train.optimizer=adam",
                   "--set", "train.lr=0.01", "--set", "train.eval_batch_size=5"]
    out = {}
    _run(["preprocess"] + data + ["--format", "json"])
    runs = {"tanh-stream": ["--set", "model.cell=tanh", "--set", "train.k2=14", "--set", "train.state_reset=0.1"],
            "gru-window": ["--set", "model.cell=gru", "--set", "train.bptt=window", "--set", "train.window=4"],
            "lstm-full": ["--set", "model.cell=lstm", "--set", "train.bptt=full", "--set", "model.softmax=class",
                          "--set", "model.dropout_output=0.2"],
            "relu-stream": ["--set", "model.cell=relu", "--set", "model.recurrent_init=identity",
                            "--set", "train.optimizer=sgd", "--set", "train.lr=0.3", "--set", "train.momentum=0.5",
                            "--set", "train.schedule=plateau", "--set", "train.log_param_norms_every=10",
                            "--set", "model.tie_weights=true", "--set", "model.embedding_size=16"]}
    for name, extra in runs.items():
        run = workdir / name
        summary = json.loads(_run(["train", "--quiet", "--format", "json", "--out", str(run)] + base + extra))
        out[f"train/{name}"] = _numbers(summary)
        metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        out[f"metrics/{name}"] = _numbers([{k: v for k, v in m.items() if k not in ("tokens_per_sec", "elapsed")}
                                           for m in metrics])
    ck = str(workdir / "tanh-stream" / "checkpoint.npz")
    out["evaluate"] = _numbers(json.loads(_run(["evaluate", "--checkpoint", ck, "--split", "valid",
                                                "--format", "json"])))
    out["generate"] = _run(["generate", "--checkpoint", ck, "--n", "3", "--prime", "the man"])
    for name in ("tanh-stream", "lstm-full"):
        ck = str(workdir / name / "checkpoint.npz")
        out[f"diagnose/{name}"] = _numbers(json.loads(_run(
            ["diagnose-gradients", "--checkpoint", ck, "--format", "json", "--quiet",
             "--set", "diagnose.steps=12", "--set", "diagnose.batch_size=4", "--set", "diagnose.batches=2",
             "--set", "diagnose.truncations=[1,3]", "--set", "diagnose.jacobian_sequences=2"])))
    out["diagnose/fresh-random"] = _numbers(json.loads(_run(
        ["diagnose-gradients", "--format", "json", "--quiet", "--set", "model.cell=gru", "--set", "model.hidden_size=8",
         "--set", "model.embedding_size=8", "--set", "diagnose.steps=10", "--set", "diagnose.random_vocab=20",
         "--set", "diagnose.batch_size=3", "--set", "diagnose.truncations=[2]",
         "--set", f"data.prepared={workdir / 'none'}"])))
    out["probe"] = _numbers(json.loads(_run(["probe", "--checkpoint", str(workdir / "gru-window" / "checkpoint.npz"),
                                             "--set", f"probe.data={CORPUS / 'probe.jsonl'}", "--format", "json"])))
    out["gradcheck"] = _numbers(json.loads(_run(["gradcheck", "--cell", "lstm", "--bptt", "stream", "--format", "json"])))
    # paths inside messages name the temporary folder: keep the message, not the folder
    return json.loads(json.dumps(out).replace(str(workdir), "<work>").replace(str(ROOT), "<root>"))


def compute_all(workdir: Path) -> dict:
    here = os.getcwd()
    try:
        with np.errstate(all="ignore"):
            return {"grads": gradient_numbers(), "cli": cli_numbers(Path(workdir))}
    finally:
        os.chdir(here)


if __name__ == "__main__":
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        doc = compute_all(Path(tmp))
    Path(sys.argv[1]).parent.mkdir(parents=True, exist_ok=True)
    Path(sys.argv[1]).write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    print(f"wrote {sys.argv[1]}")
