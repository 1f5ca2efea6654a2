"""Result records: one JSON file per measured training run (`rnnlm train --record FILE`).

A record holds what a later change needs to be compared against it: the resolved
configuration and its sha256, the commit it ran at, the machine, the summary (final validation
and test figures, wall time, tokens/s) and the learning curve (every validation evaluation with
its wall-clock time). `results_table(records)` renders the README table, `curves_table` and
`plot_curves` the learning curves (`rnnlm results RECORD.json... --plot FILE.png`).
"""

from __future__ import annotations

import datetime
import hashlib
import os
import subprocess

from rnnlm_cli import machine
from rnnlm_cli.config import Config, to_yaml
from rnnlm_cli.errors import DataError, brief
from rnnlm_cli.paths import shown
from rnnlm_cli.render.report import require_matplotlib, save_png, table
from rnnlm_cli.fileio import WriteError, atomic_write_json, make_folders, remove_folders
from rnnlm_cli.train.metrics import read_metrics
from rnnlm_cli.values import SCHEMA_VERSION


def _commit(folder: str) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def learning_curve(out_dir: str) -> list[dict]:
    """The validation evaluations of a run: step, epoch, elapsed seconds, loss, ppl, lr."""
    return [{k: m.get(k) for k in ("step", "epoch", "elapsed", "loss", "ppl", "lr")}
            for _, m in read_metrics(out_dir, strict=True) if m.get("split") == "valid" and not m.get("final")]


def make_record(name: str, cfg: Config, summary: dict, out_dir: str, command: str | None = None) -> dict:
    """A record of one finished training run; `command`: the shell command that trained it."""
    text = to_yaml(cfg)
    return {
        "schema_version": SCHEMA_VERSION,
        "name": name,
        "command": command,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "commit": _commit(os.path.dirname(os.path.abspath(__file__))),
        "config_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
        "machine": machine.describe(),
        "summary": summary,
        "curve": learning_curve(out_dir),
        "config": cfg.to_dict(),
    }


def write_record(path: str, record: dict) -> None:
    """Write a record as JSON, whole or not at all (creating its folder); WriteError (exit 1)
    naming the file when it cannot be written."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        created = make_folders(folder)
    except OSError as exc:
        raise WriteError(path, exc) from None
    try:
        atomic_write_json(path, record)
    except BaseException:
        remove_folders(created)
        raise


RECORD_FIELDS = ("name", "summary", "config", "curve")


def _number(value, null: bool = True) -> bool:
    return (value is None and null) or (isinstance(value, (int, float)) and not isinstance(value, bool))


def check_record(doc, path: str) -> dict:
    """A result record read back, checked entry by entry before anything is drawn from it:
    DataError (exit 1) naming the file and the entry that is missing or of the wrong type (a
    record edited by hand, or not a record at all). Numbers may be null (non-finite values
    are written as null)."""
    where = shown(path)
    if not isinstance(doc, dict) or not set(RECORD_FIELDS) <= set(doc):
        raise DataError(f"{where}: not a result record of `rnnlm train --record` "
                        f"(needs the fields {', '.join(RECORD_FIELDS)})")

    def bad(entry, value, expected):
        return DataError(f"{where}: entry {entry} is {brief(value)}, expected {expected}")

    if not isinstance(doc["name"], str):
        raise bad("name", doc["name"], "a string")
    for key in ("summary", "config"):
        if not isinstance(doc[key], dict):
            raise bad(key, doc[key], "an object")
    s, c = doc["summary"], doc["config"]
    for key in ("epochs", "wall_time_s", "tokens_per_sec"):
        if not _number(s.get(key), null=False):
            raise bad(f"summary.{key}", s.get(key), "a number")
    for key in ("valid_loss", "valid_ppl", "test_loss", "test_ppl"):
        if not _number(s.get(key)):
            raise bad(f"summary.{key}", s.get(key), "a number or null")
    for section, keys in (("model", ("cell", "embedding_size", "hidden_size")), ("data", ("level",))):
        if not isinstance(c.get(section), dict):
            raise bad(f"config.{section}", c.get(section), "an object")
        for key in keys:
            value = c[section].get(key)
            ok = isinstance(value, str) if key in ("cell", "level") else _number(value, null=False)
            if not ok:
                raise bad(f"config.{section}.{key}", value, "a string" if key in ("cell", "level") else "a number")
    if not (doc.get("command") is None or isinstance(doc["command"], str)):
        raise bad("command", doc["command"], "a string or null")
    if "params" in s and not _number(s["params"]):
        raise bad("summary.params", s["params"], "a number or null")
    if "dynamic" in s:
        if not isinstance(s["dynamic"], dict):
            raise bad("summary.dynamic", s["dynamic"], "an object")
        for key in ("valid_loss", "valid_ppl", "test_loss", "test_ppl"):
            if not _number(s["dynamic"].get(key)):
                raise bad(f"summary.dynamic.{key}", s["dynamic"].get(key), "a number or null")
    if not isinstance(doc["curve"], list):
        raise bad("curve", doc["curve"], "a list")
    for i, point in enumerate(doc["curve"]):
        if not isinstance(point, dict):
            raise bad(f"curve[{i}]", point, "an object")
        if not _number(point.get("elapsed"), null=False):
            raise bad(f"curve[{i}].elapsed", point.get("elapsed"), "a number")
        for key in ("loss", "ppl"):
            if not _number(point.get(key)):
                raise bad(f"curve[{i}].{key}", point.get(key), "a number or null")
    return doc


def _figure(figures: dict | None, split: str, unit: str) -> str:
    """A split's figure from a summary (or its `dynamic` block): ppl, or nats/char at char level."""
    if not isinstance(figures, dict) or not _number(figures.get(f"{split}_loss"), null=False) \
            or not _number(figures.get(f"{split}_ppl"), null=False):       # absent, or non-finite (null)
        return "-"
    return f"{figures[f'{split}_loss']:.3f} {unit}" if unit != "ppl" else f"{figures[f'{split}_ppl']:.1f}"


def _params(count) -> str:
    if not _number(count, null=False):
        return "-"
    return f"{count / 1e6:.1f}M" if count >= 1e6 else f"{count / 1e3:.0f}k"


def results_table(records: list[dict], anchors: dict[str, str] | None = None) -> str:
    """A Markdown table: config, cell and size, parameters, the static validation and test
    figures, the dynamic test figure (evaluate.dynamic_after_training; `-` without), epochs,
    wall time, tokens/s, anchor, and the command that trained it."""
    anchors = anchors or {}
    rows = []
    for r in records:
        s, m, d = r["summary"], r["config"]["model"], r["config"]["data"]
        unit = "nats/char" if d["level"] == "char" else "ppl"
        layers = m.get("num_layers", 1)
        shape = f"{m['cell']} E={m['embedding_size']} H={m['hidden_size']}" + (f" x{layers} layers" if layers > 1 else "")
        command = r.get("command")
        rows.append([r["name"], shape, _params(s.get("params")), _figure(s, "valid", unit), _figure(s, "test", unit),
                     _figure(s.get("dynamic"), "test", unit), str(s["epochs"]), f"{s['wall_time_s'] / 60:.1f} min",
                     f"{s['tokens_per_sec']:,.0f}", anchors.get(r["name"], ""),
                     f"`{command}`" if isinstance(command, str) else "-"])
    return table(["config", "model", "params", "valid", "test", "dynamic test", "epochs", "wall time", "tokens/s",
                  "published anchor", "command"], rows, markdown=True)


def curves_table(records: list[dict]) -> str:
    """Validation perplexity against wall time, one row per evaluation, runs side by side."""
    lines = []
    for r in records:
        char = r.get("config", {}).get("data", {}).get("level") == "char"   # nats/char, else ppl
        lines.append(f"{r['name']}: " + ", ".join(
            f"{c['elapsed'] / 60:.1f} min {c['loss']:.3f}" if char else f"{c['elapsed'] / 60:.1f} min {c['ppl']:.1f}"
            for c in r["curve"] if c.get("loss" if char else "ppl") is not None))   # null: a non-finite evaluation
    return "\n".join(lines)


def plot_curves(records: list[dict], path: str) -> None:
    """Validation perplexity (log axis) against wall-clock minutes, one line per run (matplotlib)."""
    plt = require_matplotlib()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for r in records:
        points = [c for c in r["curve"] if c.get("ppl") is not None]      # null: a non-finite evaluation
        xs = [c["elapsed"] / 60 for c in points]
        ys = [c["ppl"] for c in points]
        ax.plot(xs, ys, marker="o", label=r["name"])
    ax.set_yscale("log")
    ax.set_xlabel("wall time (minutes, 2-core machine)")
    ax.set_ylabel("validation perplexity")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    save_png(fig, path, dpi=110)


# published figures on the same data and counting (../shared/corpora/README.md)
ANCHORS = {
    "ptb-rnn": "RNN LM 124.7 (Mikolov & Zweig 2012); KN5 141.2; 2-layer LSTM 200, no dropout, 114.5 (Zaremba et al. 2014)",
    "ptb-lstm": "2-layer LSTM 200, no dropout, 114.5; LSTM 650 + dropout 82.7 (Zaremba et al. 2014)",
    "ptb-gru": "-",
    "shakespeare-char": "nanoGPT CPU 1.88, GPU 1.47 nats/char",
    "ptb-lstm2": "2-layer LSTM 650 + dropout 82.7 (Zaremba et al. 2014, 39 epochs on a GPU)",
}
