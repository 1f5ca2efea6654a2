"""Output helpers: numbers, tables, CSV, strict JSON values, the log-scale text chart, PNG."""

from __future__ import annotations

import builtins
import csv
import io
import json
import math

import numpy as np
import pytest

from rnnlm_cli import values
from rnnlm_cli.render import report
from rnnlm_cli.errors import RnnlmError


def test_fmt_num():
    assert [values.fmt_num(x) for x in (None, float("nan"), float("inf"), -float("inf"), 0, 0.0, 7, np.int64(3))] == \
        ["-", "-", "inf", "-inf", "0", "0", "7", "3"]
    assert values.fmt_num(0.123456) == "0.123" and values.fmt_num(12.3456, digits=4) == "12.35"
    assert values.fmt_num(1.5e-7) == "1.50e-07" and values.fmt_num(2.5e6) == "2.50e+06"
    assert values.fmt_num(True) == "yes"


def test_jsonable_makes_strict_json():
    obj = {"a": np.float32(0.5), "b": np.array([[1.0, np.nan], [np.inf, 2.0]]), "c": (np.int64(3), np.bool_(True)),
           "d": [float("-inf")], 4: "x"}
    out = values.jsonable(obj)
    assert out == {"a": 0.5, "b": [[1.0, None], [None, 2.0]], "c": [3, True], "d": [None], "4": "x"}
    json.dumps(out, allow_nan=False)
    assert type(out["c"][0]) is int and type(out["c"][1]) is bool


def test_table_aligns_numbers_right_and_text_left():
    text = report.table(["name", "value"], [["a", 1.5], ["long name", None], ["b", 100]], title="T:")
    assert text == ("T:\n"
                    "name       value\n"
                    "a            1.5\n"
                    "long name      -\n"
                    "b            100")
    assert report.table(["x"], []) == "x"


def test_csv_text():
    text = report.csv_text(["m", "q", "v"], [["a,b", "x", 0.1], ["c", None, float("nan")], ["d", "y", 3]])
    rows = list(csv.reader(io.StringIO(text)))
    assert rows == [["m", "q", "v"], ["a,b", "x", "0.1"], ["c", "", ""], ["d", "y", "3"]]


def test_log_chart_places_decades_and_fits_80_columns():
    values = 10.0 ** -np.arange(50)[:7]          # one decade per x: 1, 0.1, ..., 1e-6
    chart = report.log_chart({"down": values, "flat": np.ones(7)}, x_label="lag", rows_per_decade=1)
    lines = chart.splitlines()
    assert lines[0].startswith(" 1e+00 |")
    assert lines[6].startswith(" 1e-06 |")
    # the decaying series: x = i sits i rows down (3 columns per x value when few)
    for i in range(1, 7):
        assert lines[i][8 + 3 * i] == "*"
    assert set(lines[0][8:].replace(" ", "")) == {"o"}      # the flat series overwrites at x = 0
    assert lines[-1].strip() == "* down   o flat"
    long = report.log_chart({"a": 0.95 ** np.arange(500)}, x_label="lag")    # 12 decades
    assert max(len(line) for line in long.splitlines()) <= 80
    assert "v" not in long


def test_log_chart_marks_zero_and_tiny_values_at_the_bottom():
    chart = report.log_chart({"s": [1.0, 0.5, 0.0, float("nan")]}, max_decades=2)
    rows = [line for line in chart.splitlines() if line[6:8] == " |"]
    assert "v" in rows[-1] and report.log_chart({"s": [0.0]}) == "(no positive values to chart)"


def test_require_matplotlib_names_the_extra(monkeypatch):
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(RnnlmError, match=r"^--plot needs matplotlib: pip install 'rnnlm\[plot\]'$"):
        report.require_matplotlib("--plot")


def test_save_figure(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "f.png"
    report.save_figure(str(path), [
        {"kind": "lines", "title": "t", "series": {"a": [1, 0.1, 0.0], "b": [1, 1, 1]}, "log_y": True},
        {"kind": "heatmap", "matrix": [[1.0, math.nan], [0.5, 2.0]], "log": True, "colorbar": "log10"}])
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_table_alignment_minimum_widths_and_gaps():
    # columns: 'l' padded to at least 4, then 'r' to at least 3 with no gap, then 'l' after " | "
    text = report.table(["a", "b", "c"], [["x", 1, "yy"], ["long", 22, "z"]], align="lrl", widths=[4, 3, 0],
                        sep=["", " | "])
    assert text.splitlines() == ["a     b | c",
                                 "x     1 | yy",
                                 "long 22 | z"]
    # a cell wider than its minimum widens the column; trailing blanks are cut
    assert report.table(["h"], [["wider"]], widths=[2]) == "h\nwider"


def test_markdown_table():
    text = report.table(["name", "value"], [["a", 1.5], ["b", None]], markdown=True)
    assert text == "| name | value |\n|---|---|\n| a | 1.5 |\n| b | - |"


def test_save_png_names_the_file_it_cannot_write(tmp_path):
    plt = pytest.importorskip("matplotlib.pyplot")
    fig, _ = plt.subplots()
    with pytest.raises(RnnlmError, match=f"^cannot write {tmp_path / 'no' / 'f.png'}: "):
        report.save_png(fig, str(tmp_path / "no" / "f.png"), dpi=50)


def test_probe_table_layout():
    from rnnlm_cli.render import probe
    row = {"n": 4, "correct": 3, "accuracy": 0.75, "ci_low": 0.3, "ci_high": 0.95, "mean_margin": -1.25}
    model = {"label": "m", "valid_ppl": 12.5, "bins": [{"bin": "3-4", "lo": 3, "hi": 4, **row}], "overall": row}
    result = {"data": "p.jsonl", "items": 4, "distance_range": [3, 4], "models": [model, {**model, "label": "n"}]}
    lines = probe.render_table(result).splitlines()
    # distance (8 left) n (5 right), then per model: 2 blanks, acc (5), CI (11, left), margin (6)
    assert lines[2:] == ["               m                         n",
                         "distance    n    acc 95% CI      margin    acc 95% CI      margin",
                         "3-4         4  0.750 [0.30,0.95]  -1.25  0.750 [0.30,0.95]  -1.25",
                         "all         4  0.750 [0.30,0.95]  -1.25  0.750 [0.30,0.95]  -1.25",
                         "valid ppl      12.50                     12.50"]
    assert probe.render_csv(result).splitlines()[1] == "m,3-4,3,4,4,3,0.75,0.3,0.95,-1.25"
