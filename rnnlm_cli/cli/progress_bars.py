"""Progress bars on a terminal: the factory the commands hand to the library.

The library reports progress through a factory (rnnlm_cli/progress.py) and never looks at the
terminal; this is the one place that does: tqdm bars on stderr when stderr is a terminal and
the command was not given --quiet, and no bars otherwise (a pipe or a log file gets none).
"""

from __future__ import annotations

import sys

from rnnlm_cli.progress import ProgressFactory, no_progress


def progress_bars(quiet: bool = False) -> ProgressFactory:
    """The progress factory for a command: tqdm bars on a terminal, else none."""
    if quiet or not sys.stderr.isatty():
        return no_progress
    return _tqdm_bar


def _tqdm_bar(total: int | None = None, desc: str = "", initial: int = 0, unit: str = "it"):
    from tqdm import tqdm

    scale = {"unit_scale": True, "unit_divisor": 1024} if unit == "B" else {}
    return tqdm(total=total, desc=desc, initial=initial, unit=unit, file=sys.stderr, leave=False,
                dynamic_ncols=True, **scale)
