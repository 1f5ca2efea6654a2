"""Output helpers shared by the commands: numbers, aligned tables, CSV, JSON-safe values,
text charts on a log scale for an 80-column terminal, and optional PNG figures (matplotlib).

Nothing here knows about models: every function takes plain lists, dicts and numbers.

    fmt_num(x)                      one number as short text ('-' for None/NaN)
    table(headers, rows)            aligned text table (numbers right-aligned)
    csv_text(columns, rows)         CSV with a header line
    jsonable(obj)                   numpy scalars/arrays -> Python, NaN/inf -> None (strict JSON)
    log_chart(series)               several series of positive values against an integer x axis,
                                    y on a log scale with one labelled row per decade
    require_matplotlib(option)      the pyplot module, or RnnlmError naming the `plot` extra
    save_figure(path, panels)       line panels (log y) and heat maps into one PNG
"""

from __future__ import annotations

import csv
import io
import math
from typing import Iterable, Sequence

import numpy as np

from rnnlm_cli.errors import RnnlmError

MARKERS = "*o+x#@%&"


# --------------------------------------------------------------------------- numbers and JSON

def _finite(x) -> bool:
    return x is not None and isinstance(x, (int, float, np.number)) and math.isfinite(float(x))


def fmt_num(x, digits: int = 3) -> str:
    """Short text for a number: ints as is, floats with `digits` significant digits
    (scientific when very small or large), None/NaN as '-', infinities as 'inf'/'-inf'."""
    if x is None:
        return "-"
    if isinstance(x, (bool, np.bool_)):
        return "yes" if x else "no"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    x = float(x)
    if math.isnan(x):
        return "-"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x == 0:
        return "0"
    if 1e-3 <= abs(x) < 1e5:
        return f"{x:.{digits}g}"
    return f"{x:.{max(digits - 1, 0)}e}"


def jsonable(obj):
    """A copy of obj that json.dumps writes as strict JSON: numpy values become Python values,
    tuples become lists, non-finite floats become None."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(float(obj)) else None
    return obj


# --------------------------------------------------------------------------- tables and CSV

def table(headers: Sequence[str], rows: Iterable[Sequence], title: str | None = None,
          digits: int = 3) -> str:
    """An aligned text table; numbers are formatted with fmt_num and right-aligned."""
    rows = [list(r) for r in rows]
    numeric = [bool(rows) and all(r[i] is None or isinstance(r[i], (int, float, np.number)) for r in rows)
               for i in range(len(headers))]
    cells = [[v if isinstance(v, str) else fmt_num(v, digits) for v in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    lines = [title] if title else []
    for r in [list(headers)] + cells:
        lines.append("  ".join(v.rjust(w) if numeric[i] else v.ljust(w)
                               for i, (v, w) in enumerate(zip(r, widths))).rstrip())
    return "\n".join(lines)


def csv_text(columns: Sequence[str], rows: Iterable[Sequence]) -> str:
    """CSV (header line first); None and non-finite numbers become empty fields."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for r in rows:
        writer.writerow(["" if v is None or (isinstance(v, float) and not math.isfinite(v)) else
                         (repr(float(v)) if isinstance(v, (float, np.floating)) else v) for v in r])
    return buf.getvalue()


# --------------------------------------------------------------------------- text chart

def log_chart(series: dict[str, Sequence[float]], x_label: str = "x", y_label: str = "",
              width: int = 64, rows_per_decade: int | None = None, max_decades: int = 16) -> str:
    """Series of positive values against x = 0, 1, 2, ... on a log y axis, as text.

    Each series gets a marker character (legend below the chart); later series overwrite
    earlier ones where they meet. The y axis spans the decades between the smallest and the
    largest positive value (at most `max_decades`, counted from the top; `rows_per_decade`
    defaults to about 12 rows in all, at least 2 per decade); values <= 0 or below
    the axis are drawn as 'v' on the bottom row. With more x values than `width` columns,
    each column shows the x value nearest to it. Fits in 80 columns with width <= 64.
    """
    values = [np.asarray(v, dtype=float) for v in series.values()]
    n = max((len(v) for v in values), default=0)
    positive = np.concatenate([v[np.isfinite(v) & (v > 0)] for v in values]) if values else np.array([])
    if n == 0 or positive.size == 0:
        return "(no positive values to chart)"
    top = math.ceil(math.log10(positive.max()) - 1e-12)
    bottom = max(math.floor(math.log10(positive.min()) + 1e-12), top - max_decades)
    if bottom == top:
        bottom = top - 1
    if rows_per_decade is None:                                # about 12 rows whatever the span
        rows_per_decade = max(2, min(10, 12 // (top - bottom)))
    nrows = (top - bottom) * rows_per_decade + 1
    # x value shown in each column: up to 3 columns per value when few, else the nearest value
    if n <= width:
        per = max(1, min(width // n, 3))
        cols = n * per
        xs = [c // per if c % per == 0 else None for c in range(cols)]
    else:
        cols = width
        xs = [round(c * (n - 1) / (width - 1)) for c in range(cols)]
    grid = [[" "] * cols for _ in range(nrows)]
    for s, v in enumerate(values):
        mark = MARKERS[s % len(MARKERS)]
        for c, x in enumerate(xs):
            if x is None or x >= len(v) or np.isnan(v[x]):
                continue
            if v[x] <= 0 or math.log10(v[x]) < bottom - 0.5 / rows_per_decade:
                grid[nrows - 1][c] = "v"
                continue
            r = round((top - math.log10(v[x])) * rows_per_decade)
            grid[min(max(r, 0), nrows - 1)][c] = mark
    lines = [y_label] if y_label else []
    for r in range(nrows):
        label = f"1e{top - r // rows_per_decade:+03d}" if r % rows_per_decade == 0 else ""
        lines.append(f"{label:>6} |" + "".join(grid[r]).rstrip())
    lines.append(" " * 7 + "+" + "-" * cols)
    # x tick labels about every 10 columns, at columns that show a value
    ticks = [" "] * (cols + 8)
    c = 0
    while c < cols:
        if xs[c] is not None:
            text = str(xs[c])
            if 8 + c + len(text) <= len(ticks):
                ticks[8 + c:8 + c + len(text)] = list(text)
            c += 10
        else:
            c += 1
    lines.append("".join(ticks).rstrip() + f"   {x_label}")
    legend = "   ".join(f"{MARKERS[i % len(MARKERS)]} {name}" for i, name in enumerate(series))
    lines.append(" " * 8 + legend)
    return "\n".join(lines)


# --------------------------------------------------------------------------- PNG figures

def require_matplotlib(option: str = "--plot"):
    """matplotlib.pyplot with the file-only Agg backend, or an RnnlmError (exit 1) that says how
    to install it. Call it before any work starts."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise RnnlmError(f"{option} needs matplotlib: pip install 'rnnlm[plot]'") from None
    return plt


def save_figure(path: str, panels: list[dict], option: str = "--plot") -> None:
    """Draw panels side by side into a PNG.

    A panel is {"kind": "lines", "title", "x_label", "y_label", "series": {name: values},
    "log_y": bool} or {"kind": "heatmap", "title", "x_label", "y_label", "matrix": 2-D values
    (NaN = blank), "log": bool (colour by log10), "colorbar": label}.
    """
    plt = require_matplotlib(option)
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.5), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        if panel["kind"] == "lines":
            for name, values in panel["series"].items():
                v = np.asarray(values, dtype=float)
                v = np.where(np.isfinite(v) & (v > 0), v, np.nan) if panel.get("log_y") else v
                ax.plot(np.arange(len(v)), v, marker=".", label=name)
            if panel.get("log_y"):
                ax.set_yscale("log")
            ax.legend(fontsize="small")
            ax.grid(True, which="major", alpha=0.3)
        else:
            m = np.asarray(panel["matrix"], dtype=float)
            if panel.get("log"):
                with np.errstate(divide="ignore", invalid="ignore"):
                    m = np.where(m > 0, np.log10(m), np.nan)
            image = ax.imshow(m, origin="lower", aspect="auto", interpolation="nearest")
            fig.colorbar(image, ax=ax, label=panel.get("colorbar", ""))
        ax.set_title(panel.get("title", ""))
        ax.set_xlabel(panel.get("x_label", ""))
        ax.set_ylabel(panel.get("y_label", ""))
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=100)
    except OSError as exc:
        raise RnnlmError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        plt.close(fig)
