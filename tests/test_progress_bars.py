"""The command line's progress factory: tqdm bars on a terminal only, never with --quiet."""

from __future__ import annotations

import io
import sys

from rnnlm_cli.cli.progress_bars import progress_bars
from rnnlm_cli.progress import NullBar, no_progress


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_bars_only_on_a_terminal_and_never_when_quiet(monkeypatch):
    monkeypatch.setattr(sys, "stderr", io.StringIO())          # a pipe or a file
    assert progress_bars() is no_progress
    monkeypatch.setattr(sys, "stderr", Terminal())
    assert progress_bars(quiet=True) is no_progress
    bar = progress_bars()(total=4, desc="epoch 1/2", initial=1)
    bar.update(2)
    bar.set_postfix(loss="1.000")                              # refreshes the bar: 1 + 2 of 4 done
    bar.close()
    shown = sys.stderr.getvalue()
    assert "epoch 1/2" in shown and "3/4" in shown and "loss=1.000" in shown


def test_byte_bars_scale_their_unit(monkeypatch):
    monkeypatch.setattr(sys, "stderr", Terminal())
    bar = progress_bars()(total=3 * 1024 * 1024, desc="counting", unit="B")
    bar.update(3 * 1024 * 1024)
    bar.set_postfix()                                          # shows the bar now, whatever the clock says
    bar.close()
    assert "3.00M/3.00M" in sys.stderr.getvalue() and "B/s" in sys.stderr.getvalue()   # 3 MiB in units of 1024


def test_no_progress_accepts_the_protocol():
    bar = no_progress(total=3, desc="x", initial=0, unit="B")
    assert isinstance(bar, NullBar)
    bar.update(1), bar.set_postfix(a=1), bar.close()
