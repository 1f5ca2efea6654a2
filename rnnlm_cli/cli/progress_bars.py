"""Progress bars on a terminal: the factory the commands hand to the library.

The library reports progress through a factory (rnnlm_cli/progress.py) and never looks at the
terminal; this is the one place that does: tqdm bars on stderr when stderr is a terminal and
the command was not given --quiet, and no bars otherwise (a pipe or a log file gets none, or,
for train, one plain line every train.log_every updates).
"""

from __future__ import annotations

import sys

from rnnlm_cli.progress import NullBar, ProgressFactory, no_progress


def progress_bars(quiet: bool = False, lines=None) -> ProgressFactory:
    """The progress factory for a command: tqdm bars on a terminal, else none; or, with
    `lines` (a function taking one text line) and stderr not a terminal, a plain line each time
    the library reports its figures (bar.set_postfix: training does so every train.log_every
    updates), so that nohup, CI and `2>log` see progress between validations."""
    if quiet:
        return no_progress
    if not sys.stderr.isatty():
        return no_progress if lines is None else _line_factory(lines)
    return _tqdm_bar


class _LineBar(NullBar):
    """A bar that prints one plain line per set_postfix: 'epoch 1/3, step 20: loss 4.1, ...'."""

    NAMES = {"tok_s": "tokens/s", "gnorm": "grad norm"}

    def __init__(self, lines, desc: str):
        self.lines, self.desc = lines, desc

    def set_postfix(self, **info) -> None:
        step = info.pop("step", None)
        head = self.desc + (f", step {step}" if step is not None else "")
        figures = ", ".join(f"{self.NAMES.get(k, k)} {v}" for k, v in info.items())
        self.lines(f"{head}: {figures}" if head else figures)


def _line_factory(lines) -> ProgressFactory:
    def make(total: int | None = None, desc: str = "", initial: int = 0, unit: str = "it"):
        return _LineBar(lines, desc)
    return make


def _tqdm_bar(total: int | None = None, desc: str = "", initial: int = 0, unit: str = "it"):
    from tqdm import tqdm

    scale = {"unit_scale": True, "unit_divisor": 1024} if unit == "B" else {}
    return tqdm(total=total, desc=desc, initial=initial, unit=unit, file=sys.stderr, leave=False,
                dynamic_ncols=True, **scale)
