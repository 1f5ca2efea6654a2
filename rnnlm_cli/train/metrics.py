"""OUT/metrics.jsonl: the training log, with one writer and one reader.

One JSON object per line (strict JSON: a NaN or infinite value is null), flushed line by line:
  a step line per logged update   step, epoch, tokens, lr, loss, ppl, grad_norm,
                                  grad_norm_clipped, clipped, nonfinite_skipped,
                                  tokens_per_sec (+ param_grad_norms)
  an evaluation line              "split" (valid or test), step, epoch, loss, ppl, tokens,
                                  elapsed (+ lr during training; "final": true at the end)

MetricsLog(out).append(entry)   the writer (a training run); with tensorboard=DIR each line is also
                                written as TensorBoard scalars (tensorboardX), a view of the same
                                figures: train/loss, train/ppl, train/lr, train/grad_norm,
                                train/tokens_per_sec by update; valid/loss, valid/ppl at each
                                evaluation; final/valid_loss, final/test_loss, ... at the end
MetricsLog(out).trim_after(step) on resume: keep only what the checkpoint at `step` had seen
read_metrics(out, strict)       the reader: [(line number, entry)]
"""

from __future__ import annotations

import json
import os

from rnnlm_cli import fileio
from rnnlm_cli.values import jsonable

METRICS_NAME = "metrics.jsonl"


def metrics_path(run_dir: str) -> str:
    return os.path.join(run_dir, METRICS_NAME)


TENSORBOARD_INSTALL = "train.tensorboard needs tensorboardX, an optional extra: pip install 'rnnlm[tensorboard]'"


def tensorboard_writer_class():
    """tensorboardX's SummaryWriter, or ConfigError (exit 2) saying how to install it."""
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        from rnnlm_cli.errors import ConfigError
        raise ConfigError(TENSORBOARD_INSTALL) from None
    return SummaryWriter


class MetricsLog:
    """The writer of a run's metrics.jsonl: append a line, flushed at once (open on first use)."""

    def __init__(self, run_dir: str, tensorboard: str | None = None):
        self.path = metrics_path(run_dir)
        self._fh = None
        self.tensorboard = tensorboard
        self._tb = None

    def open(self) -> None:
        """Open the file for appending (creating it empty); `append` does this when needed."""
        if self._fh is None:
            self._fh = open(self.path, "a", encoding="utf-8")

    def append(self, entry: dict) -> None:
        self.open()
        text = json.dumps(jsonable(entry), allow_nan=False) + "\n"
        fileio.crash_point(f"mid-line:{METRICS_NAME}", before=lambda: self._write(text[:len(text) // 2]))
        self._write(text)
        if self.tensorboard:
            self._scalars(entry)

    def _scalars(self, entry: dict) -> None:
        if self._tb is None:
            self._tb = tensorboard_writer_class()(self.tensorboard)
        split, step = entry.get("split"), entry.get("step", 0)
        if split is None:
            names = {f"train/{k}": entry.get(k) for k in ("loss", "ppl", "lr", "grad_norm", "tokens_per_sec")}
        elif entry.get("final"):
            names = {f"final/{split}_loss": entry.get("loss"), f"final/{split}_ppl": entry.get("ppl")}
        else:
            names = {f"{split}/loss": entry.get("loss"), f"{split}/ppl": entry.get("ppl")}
        for name, value in names.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self._tb.add_scalar(name, value, step)
        self._tb.flush()

    def _write(self, text: str) -> None:
        self._fh.write(text)
        self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            fh, self._fh = self._fh, None
            fh.close()
        if self._tb is not None:
            tb, self._tb = self._tb, None
            tb.close()

    def trim_after(self, step: int) -> None:
        """Drop the lines logged after `step` and the final evaluations (a resumed run logs them
        again), and a torn last line; the kept lines stay byte for byte."""
        if not os.path.exists(self.path):
            return
        kept = [line.text if line.text.endswith("\n") else line.text + "\n"
                for line in fileio.read_jsonl(self.path)
                if line.entry.get("step", 0) <= step and not line.entry.get("final")]
        fileio.atomic_write_text(self.path, "".join(kept))


def read_metrics(run_dir: str, strict: bool = False) -> list[tuple[int, dict]]:
    """[(line number, entry)] of OUT/metrics.jsonl.

    strict=False reads a log that may be being written or was cut by a kill: it stops at a
    torn line. strict=True refuses any line that is not a JSON object (DataError naming it).
    """
    return [(line.number, line.entry) for line in fileio.read_jsonl(metrics_path(run_dir), strict)]
