"""Output helpers shared by the commands: numbers, aligned tables, CSV, JSON-safe values,
text charts on a log scale for an 80-column terminal, and optional PNG figures (matplotlib).

Nothing here knows about models: every function takes plain lists, dicts and numbers.

    fmt_num(x)                      one number as short text ('-' for None/NaN)
    table(headers, rows)            aligned text table (numbers right-aligned), or Markdown
    csv_text(columns, rows)         CSV with a header line
    jsonable(obj)                   numpy scalars/arrays -> Python, NaN/inf -> None (strict JSON)
    log_chart(series)               several series of positive values against an integer x axis,
                                    y on a log scale with one labelled row per decade
    prepare_plot(path, option)      before any work: a supported extension (.png, .pdf, .svg;
                                    ConfigError otherwise) and matplotlib installed
    require_matplotlib(option)      the pyplot module, or RnnlmError naming the `plot` extra
    save_figure(path, panels)       line panels (log y) and heat maps into one figure
    save_png(fig, path, dpi)        write any matplotlib figure atomically (one error message)

The renderers of the other commands build on these: gradcheck.py, probe.py, corpus.py
(preprocess summary), results.py (result records).

The last section renders the JSON result of `rnnlm diagnose-gradients` (schema: the docstring of
diagnostics.py; "history": history.py) with the helpers above:

    diagnostics_text(result)        summary table, lag chart, side-by-side lags, per-model detail
    diagnostics_csv(result)         long-format CSV: model, quantity, i, j, value, layer
    plot_diagnostics(result, path)  lag profiles (log y) and the (t, k) heat map of the first model;
                                    stacked models: layer x lag heat maps beside per-layer profiles
"""

from __future__ import annotations

import csv
import io
import math
import os
from typing import Iterable, Sequence

import numpy as np

from rnnlm_cli.errors import ConfigError, RnnlmError
from rnnlm_cli.fileio import atomic_write
from rnnlm_cli.paths import shown
from rnnlm_cli.values import fmt_num

MARKERS = "*o+x#@%&"


# --------------------------------------------------------------------------- numbers and JSON

def _finite(x) -> bool:
    return x is not None and isinstance(x, (int, float, np.number)) and math.isfinite(float(x))


# --------------------------------------------------------------------------- tables and CSV

def table(headers: Sequence[str], rows: Iterable[Sequence], title: str | None = None, digits: int = 3, *,
          align: str | None = None, widths: Sequence[int] | None = None, sep: str | Sequence[str] = "  ",
          markdown: bool = False) -> str:
    """An aligned text table, or with markdown=True a Markdown one (`| a | b |`, no padding).

    Cells that are not strings are formatted with fmt_num(digits). Text flavour: `align` gives
    each column 'l' or 'r' (default: numbers right, text left); `widths` are minimum column
    widths; `sep` is the gap between columns, or one gap per column boundary. Lines end without
    trailing blanks.
    """
    rows = [list(r) for r in rows]
    cells = [[v if isinstance(v, str) else fmt_num(v, digits) for v in r] for r in rows]
    if markdown:
        lines = [f"| {' | '.join(r)} |" for r in [list(headers)] + cells]
        lines.insert(1, "|" + "---|" * len(headers))
        return "\n".join(([title] if title else []) + lines)
    if align is None:
        align = "".join("r" if rows and all(r[i] is None or isinstance(r[i], (int, float, np.number)) for r in rows)
                        else "l" for i in range(len(headers)))
    gaps = [""] + ([sep] * (len(headers) - 1) if isinstance(sep, str) else list(sep))
    least = widths or [0] * len(headers)
    widths = [max([len(h), least[i]] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    lines = [title] if title else []
    for r in [list(headers)] + cells:
        lines.append("".join(gap + (v.rjust(w) if a == "r" else v.ljust(w))
                             for gap, v, w, a in zip(gaps, r, widths, align)).rstrip())
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


SHADES = "@%#*+=-:. "     # text heat map: one character per decade below the top, darkest first


def text_heatmap(rows: dict[str, Sequence[float]], x_label: str = "x", width: int = 64) -> str:
    """Rows of positive values against x = 0, 1, 2, ... as a shaded text map on a log scale:
    each value is one character of SHADES by its decade (>= 1 is '@', [0.1, 1) '%', ... ,
    below 1e-8 ' '), '?' where it is not a positive finite number. With more x values than
    `width` columns each column shows the nearest x; with few, up to 3 columns per value."""
    values = [np.asarray(v, dtype=float) for v in rows.values()]
    n = max((len(v) for v in values), default=0)
    if n == 0:
        return "(nothing to map)"
    if n <= width:
        per = max(1, min(width // n, 3))
        xs = [c // per for c in range(n * per)]
    else:
        xs = [round(c * (n - 1) / (width - 1)) for c in range(width)]
    label_w = max(len(k) for k in rows)
    lines = []
    for name, v in zip(rows, values):
        chars = []
        for x in xs:
            val = v[x] if x < len(v) else np.nan
            if not (np.isfinite(val) and val > 0):
                chars.append("?")
                continue
            decade = math.ceil(-math.log10(val) - 1e-12) if val < 1 else 0
            chars.append(SHADES[min(decade, len(SHADES) - 1)])
        lines.append((f"{name:>{label_w}} |" + "".join(chars)).rstrip())
    lines.append(" " * label_w + " +" + "-" * len(xs))
    ticks = [" "] * (len(xs) + label_w + 2)
    c = 0
    while c < len(xs):
        if c == 0 or xs[c] != xs[c - 1]:
            text = str(xs[c])
            if label_w + 2 + c + len(text) <= len(ticks):
                ticks[label_w + 2 + c:label_w + 2 + c + len(text)] = list(text)
            c += 10
        else:
            c += 1
    lines.append("".join(ticks).rstrip() + f"   {x_label}")
    legend = "  ".join(f"{ch} {'1' if i == 0 else f'1e-{i}'}" for i, ch in enumerate(SHADES[:-1]))
    lines.append("shade from: " + legend + ", blank below")
    return "\n".join(lines)


# --------------------------------------------------------------------------- PNG figures

PLOT_FORMATS = ("png", "pdf", "svg")      # what save_png writes, chosen by the file name's extension


def plot_format(path: str) -> str | None:
    """The figure format a file name asks for ('png', 'pdf', 'svg'), or None when unsupported."""
    ext = os.path.splitext(os.fspath(path))[1].lower().lstrip(".")
    return ext if ext in PLOT_FORMATS else None


def prepare_plot(path: str, option: str = "--plot"):
    """Check before any work that a figure can be written to `path`: its extension names a
    format the writer supports (ConfigError, exit 2) and matplotlib is installed (see
    require_matplotlib). Returns pyplot."""
    if plot_format(path) is None:
        formats = ", ".join(f".{f}" for f in PLOT_FORMATS)
        raise ConfigError(f"{option} {shown(path)}: unsupported figure format; the file name must end in {formats}")
    return require_matplotlib(option)


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


def save_figure(path: str, panels: list, option: str = "--plot") -> None:
    """Draw panels side by side into a PNG; a list of lists of panels draws one row per list.

    A panel is {"kind": "lines", "title", "x_label", "y_label", "series": {name: values},
    "log_y": bool} or {"kind": "heatmap", "title", "x_label", "y_label", "matrix": 2-D values
    (NaN = blank), "log": bool (colour by log10), "colorbar": label, and optionally "y_ticks"
    (a label per row), "vmin"/"vmax" (colour limits, after the log), "cmap"}.
    """
    plt = require_matplotlib(option)
    grid = panels if panels and isinstance(panels[0], list) else [panels]
    ncols = max(len(row) for row in grid)
    fig, axes = plt.subplots(len(grid), ncols, figsize=(6 * ncols, 4.5 * len(grid)), squeeze=False)
    for r, row in enumerate(grid):
        for ax in axes[r][len(row):]:
            ax.set_visible(False)
        for ax, panel in zip(axes[r], row):
            _draw_panel(fig, ax, panel)
    save_png(fig, path, dpi=100)


def _draw_panel(fig, ax, panel: dict) -> None:
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
        image = ax.imshow(m, origin="lower", aspect="auto", interpolation="nearest", cmap=panel.get("cmap"),
                          vmin=panel.get("vmin"), vmax=panel.get("vmax"))
        fig.colorbar(image, ax=ax, label=panel.get("colorbar", ""))
        if panel.get("y_ticks"):
            ax.set_yticks(range(len(panel["y_ticks"])))
            ax.set_yticklabels(panel["y_ticks"])
    ax.set_title(panel.get("title", ""))
    ax.set_xlabel(panel.get("x_label", ""))
    ax.set_ylabel(panel.get("y_label", ""))


def save_png(fig, path: str, dpi: int) -> None:
    """Write a matplotlib figure and close it, in the format of the file name's extension (PNG,
    PDF or SVG), whole or not at all (fileio.atomic_write); WriteError (exit 1) when it cannot be
    written."""
    plt = require_matplotlib()
    fig.tight_layout()
    try:
        atomic_write(path, lambda fh: fig.savefig(fh, format=plot_format(path) or "png", dpi=dpi))
    finally:
        plt.close(fig)


# --------------------------------------------------------------------------- diagnose-gradients results
# The JSON result of diagnostics.diagnose (plus "history" from history.history_report) as text,
# long-format CSV and a PNG. Plain dicts in, text out: the schema is in diagnostics.py.


def _lags(T: int) -> list[int]:
    """Lags shown in tables: 0, 1, 2, 3, 4, 6, 8, 12, 16, 24, ... and T-1."""
    lags, d = [0, 1, 2, 3], 4
    while d < T:
        lags += [d, d * 3 // 2]
        d *= 2
    return sorted({x for x in lags if x < T} | {T - 1})


def _horizon(m: dict) -> str:
    return f">={m['horizon']}" if m["horizon_is_lower_bound"] else str(m["horizon"])


def _half_life(m: dict) -> str:
    return "inf" if m["half_life"] is None else fmt_num(m["half_life"])


def _model_detail(m: dict) -> str:
    """One model's section: lag table, Jacobians, the bound, saturation, truncation bias."""
    T = m["steps"]
    prof, contrib = m["lag_profile"], m["lag_contribution"]
    lstm = "h" in prof
    head = ["lag", "raw norm", "normalised"] + (["h normalised", "c normalised"] if lstm else []) + ["dW_h share"]
    rows = [[d, prof["raw"][d], prof["normalised"][d]]
            + ([prof["h"]["normalised"][d], prof["c"]["normalised"][d]] if lstm else [])
            + [contrib["fraction"][d]] for d in _lags(T)]
    info = m["model"]
    L = info.get("num_layers", 1)
    out = [f"== {m['label']}: {info['cell']}, H={info['hidden_size']}" + (f", L={L}" if L > 1 else "")
           + f", recurrent_init={info['recurrent_init']} "
           f"x{fmt_num(info['recurrent_scale'])}, {info['source']}",
           f"decay rate {fmt_num(m['decay_rate'])} per step, half-life {_half_life(m)} steps, "
           f"horizon {_horizon(m)} (threshold {fmt_num(m['threshold'])}), "
           f"max norm ratio {fmt_num(m['max_norm_ratio'])}"
           + ("\n(lags: the top layer's; Jacobians: the whole stacked state's; every layer at the end)"
              if L > 1 else ""),
           table(head, rows),
           "(raw: mean over t of ||dE_t/ds_(t-d)||; normalised: per t by ||dE_t/ds_t||, then the mean;",
           f" dW_h share: ||lag-d part of dE/dW_h|| / ||dE/dW_h||, ||dE/dW_h|| = {fmt_num(contrib['total_norm'])})"]
    jac = m["jacobian"]
    o = jac["overall"]
    out.append(f"step Jacobian ||ds_j/ds_(j-1)||_2 ({jac['state_size']}x{jac['state_size']}): "
               f"mean {fmt_num(o['mean'])}, min {fmt_num(o['min'])}, max {fmt_num(o['max'])}")
    out.append(table(["span", "mean", "min", "max"],
                            [[p["span"], p["mean"], p["min"], p["max"]] for p in jac["products"]],
                            title="product of the last `span` step Jacobians, ||ds_(T-1)/ds_(T-1-span)||_2:"))
    rb = jac["recurrent"]
    blocks = ", ".join(f"{b['block']} {fmt_num(b['sigma_max'])} [{fmt_num(b['bound'])}]"
                       for b in rb["blocks"])
    out.append(f"sigma_max(W_h) [bound 1/gamma]: {blocks} -> {rb['verdict']}" + ("" if rb["applies"] else f"\n  ({rb['note']})"))
    out.append("saturation: " + "; ".join(f"{kind} {s['mean']:.1%} ({', '.join(s['units'])}: {s['criterion']})"
                                          for kind, s in m["saturation"].items()))
    out.append(table(["k", "cosine", "norm ratio", "W_h cosine", "W_h norm ratio"],
                            [[b["k"], b["cosine"], b["norm_ratio"], b["W_h_cosine"], b["W_h_norm_ratio"]]
                             for b in m["truncation_bias"]],
                            title="truncation bias: window-k gradient against full BPTT", digits=4))
    if len(m.get("layers") or []) > 1:
        out.append(_layers_detail(m))
    return "\n".join(out)


def _layer_label(m: dict, layer: int, short: bool = False) -> str:
    return ("" if short else "layer ") + str(layer) + (" (top)" if layer == len(m["layers"]) - 1 else "")


def _layers_detail(m: dict) -> str:
    """A stacked model's layers: per-layer summary, the depth x time heat map and its numbers."""
    T = m["steps"]
    layers = m["layers"]
    rows = []
    for e in reversed(layers):
        rb = e["recurrent"]
        bias = e["truncation_bias"][0] if e["truncation_bias"] else None
        rows.append([_layer_label(m, e["layer"], short=True), e["attenuation"], e["decay_rate"], _half_life(e),
                     _horizon(e), e["max_norm_ratio"], max(b["sigma_max"] for b in rb["blocks"]),
                     rb["verdict"].replace("vanishing ", ""), bias["W_h_cosine"] if bias else None])
    k = layers[-1]["truncation_bias"][0]["k"] if layers[-1]["truncation_bias"] else "-"
    out = [table(["layer", "attenuation", "decay/step", "half-life", "horizon", "max ratio", "sigma(W_h)",
                  "vanishing", f"W_h cos k={k}"], rows,
                 title="per layer, top first (attenuation: mean over t of ||dE_t/ds^l_t|| / ||dE_t/ds^top_t||;\n"
                       " the rest as above, each layer normalised by its own lag 0; vanishing: guaranteed only\n"
                       " when this layer and every one above it are below the bound):")]
    out.append("saturation by layer: " + "; ".join(
        f"{_layer_label(m, e['layer'], short=True)}: " + ", ".join(f"{kind} {s['mean']:.1%}"
                                                                   for kind, s in e["saturation"].items())
        for e in reversed(layers)))
    grid = m["depth_time"]
    out.append("depth x time: mean over t of ||dE_t/ds^l_(t-d)|| / ||dE_t/ds^top_t||, log scale:")
    out.append(text_heatmap({_layer_label(m, e["layer"]): grid[e["layer"]] for e in reversed(layers)}, x_label="lag d"))
    lags = sorted({d for d in (0, 1, 2, 4, 8, 16, 32, 64) if d < T} | {T - 1})
    out.append(table(["layer"] + [f"d={d}" for d in lags],
                     [[_layer_label(m, e["layer"])] + [grid[e["layer"]][d] for d in lags] for e in reversed(layers)]))
    return "\n".join(out)


def history_text(h: dict) -> str:
    """The training-history part (history.history_report) as text."""
    g = h["grad_norm"]
    out = [f"training history: {h['file']} ({h['step_lines']} step lines, steps {h['first_step']}.."
           f"{h['last_step']}, {h['evaluation_lines']} evaluations)",
           table(["", "p5", "p25", "p50", "p75", "p95", "max"],
                        [["grad norm"] + [g[k] for k in ("p5", "p25", "p50", "p75", "p95", "max")]]),
           f"clip rate {fmt_num(h['clip_rate'])}; non-finite: {h['nonfinite']['grad_norm_lines']} lines "
           f"with a NaN/inf norm, skipped updates {fmt_num(h['nonfinite']['skipped'])}"
           + (f" (count rose at steps {', '.join(map(str, h['nonfinite']['steps'][:10]))})"
              if h["nonfinite"]["steps"] else "")]
    if h["spikes"]:
        out.append(table(["step", "grad norm", "running median", "ratio"],
                                [[s["step"], s["grad_norm"], s["running_median"], s["ratio"]] for s in h["spikes"]],
                                title="largest spikes:"))
    if h["by_epoch"]:
        out.append(table(["epoch", "lines", "median grad norm", "clip rate"],
                                [[e["epoch"], e["lines"], e["median_grad_norm"], e["clip_rate"]]
                                 for e in h["by_epoch"]], title="by epoch:"))
    if h["param_grad_norms"]:
        out.append(table(["parameter", "lines", "median", "max"],
                                [[k, v["lines"], v["p50"], v["max"]] for k, v in h["param_grad_norms"].items()],
                                title="per-parameter gradient norms:"))
    if h.get("layers"):
        epochs = sorted({e["epoch"] for layer in h["layers"] for e in layer["by_epoch"]})
        shown = epochs if len(epochs) <= 8 else [epochs[round(i * (len(epochs) - 1) / 7)] for i in range(8)]
        rows = []
        for layer in reversed(h["layers"]):
            med = {e["epoch"]: e["median"] for e in layer["by_epoch"]}
            rows.append([str(layer["layer"]), layer["lines"], layer["p50"], layer["max"]]
                        + [med.get(e) for e in shown])
        out.append(table(["layer", "lines", "median", "max"] + [f"epoch {e}" for e in shown], rows,
                         title="per-layer gradient norms (top first; sqrt of the sum of the layer's squared "
                               "parameter norms), median by epoch:"))
    return "\n".join(out)


def diagnostics_text(result: dict) -> str:
    """The human-readable report: summary, chart, side-by-side lags, then each model."""
    parts = []
    if "history" in result:
        parts.append(history_text(result["history"]))
    models = result.get("models") or []
    if not models:
        return "\n\n".join(parts)
    first = models[0]
    where = f" ({first['data_folder']})" if first.get("data_folder") else ""
    parts.append(f"data: {result['data']}{where}; {first['batches']} batch(es) x {first['batch_size']} sequences x "
                 f"{first['steps']} steps from the zero state\n"
                 f"float64, no dropout; E_t = -log p of output t; s_k = the state after input k")
    stacked = any(m["model"].get("num_layers", 1) > 1 for m in models)
    rows = []
    for m in models:
        rb = m["jacobian"]["recurrent"]
        rows.append([m["label"], m["model"]["cell"], m["model"]["hidden_size"]]
                    + ([m["model"].get("num_layers", 1)] if stacked else [])
                    + [m["decay_rate"], _half_life(m),
                     _horizon(m), m["max_norm_ratio"], m["jacobian"]["overall"]["mean"],
                     max(b["sigma_max"] for b in rb["blocks"]), rb["verdict"].replace("vanishing ", "")])
    parts.append(table(["model", "cell", "H"] + (["L"] if stacked else []) + ["decay/step", "half-life", "horizon",
                       "max ratio", "mean ||J||", "sigma(W_h)", "vanishing"], rows)
                 + ("\n(L >= 2: the top layer's profile; ||J||: the whole stacked state's step Jacobian)" if stacked
                    else ""))
    parts.append(log_chart({m["label"]: m["lag_profile"]["normalised"] for m in models}, x_label="lag d",
                                  y_label="normalised gradient norm ||dE_t/ds_(t-d)|| / ||dE_t/ds_t||, mean over t"))
    if len(models) > 1:
        T = min(m["steps"] for m in models)
        parts.append(table(["lag"] + [m["label"] for m in models],
                                  [[d] + [m["lag_profile"]["normalised"][d] for m in models] for d in _lags(T)],
                                  title="normalised gradient norm by lag, side by side:"))
    parts += [_model_detail(m) for m in models]
    return "\n\n".join(parts)


DIAGNOSTICS_CSV_COLUMNS = ("model", "quantity", "i", "j", "value", "layer")


def _layer_rows(name: str, e: dict, layer):
    """The per-layer quantities of one layer entry (or of the model's top-level fields)."""
    prof = e["lag_profile"]

    def matrix(q, g):
        for t, row in enumerate(g):
            for k, v in enumerate(row[:t + 1]):
                yield name, q, t, k, v, layer

    yield from matrix("grad_norm", prof["matrix"])
    for q in ("raw", "normalised"):
        yield from ((name, f"lag_profile_{q}", d, None, v, layer) for d, v in enumerate(prof[q]))
    for part in ("h", "c"):
        if part in prof:
            yield from matrix(f"grad_norm_{part}", prof[part]["matrix"])
            yield from ((name, f"lag_profile_{part}_normalised", d, None, v, layer)
                        for d, v in enumerate(prof[part]["normalised"]))
    for q in ("decay_rate", "half_life", "horizon", "max_norm_ratio"):
        yield name, q, None, None, e[q], layer


def _layer_tail_rows(name: str, rb: dict, saturation: dict, contrib: dict, layer):
    for b in rb["blocks"]:
        yield name, "sigma_max", b["block"], None, b["sigma_max"], layer
        yield name, "sigma_bound", b["block"], None, b["bound"], layer
    for kind, s in saturation.items():
        yield from ((name, f"saturation_{kind}", t, None, v, layer) for t, v in enumerate(s["per_step"]))
    yield from ((name, "lag_contribution", d, None, v, layer) for d, v in enumerate(contrib["norm"]))
    yield from ((name, "lag_contribution_fraction", d, None, v, layer) for d, v in enumerate(contrib["fraction"]))


def diagnostics_csv_rows(result: dict):
    """Long-format rows (model, quantity, i, j, value, layer); see the command's help for i and j.
    layer: the layer a per-layer quantity belongs to (0 = bottom; the model's own rows carry the
    top layer's index), empty for the whole model's (Jacobians of the stacked state, truncation
    cosine and norm ratio over all parameters) and for the history."""
    for m in result.get("models") or []:
        name = m["label"]
        layers = m.get("layers") or []
        top = len(layers) - 1 if layers else 0
        yield from _layer_rows(name, m, top)
        jac = m["jacobian"]
        for stat in ("mean", "min", "max"):
            yield from ((name, f"jacobian_norm_{stat}", j, None, v, None)
                        for j, v in enumerate(jac["spectral_norm"][stat]))
            yield from ((name, f"jacobian_product_{stat}", p["span"], None, p[stat], None) for p in jac["products"])
        yield from _layer_tail_rows(name, jac["recurrent"], m["saturation"], m["lag_contribution"], top)
        for b in m["truncation_bias"]:
            for q in ("cosine", "norm_ratio", "W_h_cosine", "W_h_norm_ratio"):
                yield name, f"truncation_{q}", b["k"], None, b[q], top if q.startswith("W_h") else None
        # the layers below the top (stacked models), then every layer's depth x time row
        for e in layers[:-1]:
            layer = e["layer"]
            yield from _layer_rows(name, e, layer)
            yield from _layer_tail_rows(name, e["recurrent"], e["saturation"], e["lag_contribution"], layer)
            for b in e["truncation_bias"]:
                for q in ("W_h_cosine", "W_h_norm_ratio"):
                    yield name, f"truncation_{q}", b["k"], None, b[q], layer
        for e in layers:
            yield name, "attenuation", None, None, e["attenuation"], e["layer"]
        for layer, row in enumerate(m.get("depth_time") or []):
            yield from ((name, "depth_time", d, None, v, layer) for d, v in enumerate(row))
    h = result.get("history")
    if h:
        for k, v in h["grad_norm"].items():
            yield "history", f"grad_norm_{k}", None, None, v, None
        yield "history", "clip_rate", None, None, h["clip_rate"], None
        yield "history", "nonfinite_skipped", None, None, h["nonfinite"]["skipped"], None
        for s in h["spikes"]:
            yield "history", "spike_ratio", s["step"], None, s["ratio"], None
        for e in h["by_epoch"]:
            yield "history", "epoch_median_grad_norm", e["epoch"], None, e["median_grad_norm"], None
        for e in h.get("layers") or []:
            yield "history", "layer_grad_norm_p50", None, None, e["p50"], e["layer"]
            yield "history", "layer_grad_norm_max", None, None, e["max"], e["layer"]
            for row in e["by_epoch"]:
                yield "history", "layer_epoch_median_grad_norm", row["epoch"], None, row["median"], e["layer"]


def diagnostics_csv(result: dict) -> str:
    """diagnostics_csv_rows as CSV text with a header line."""
    return csv_text(DIAGNOSTICS_CSV_COLUMNS, diagnostics_csv_rows(result))


def plot_diagnostics(result: dict, path: str) -> None:
    """PNG: normalised norm against lag per model (log y) and the (t, k) heat map of the first;
    with stacked models, one row per stacked model instead: its layer x lag heat map of
    depth_time (log colour, one colour scale for all rows) beside its per-layer profiles."""
    models = result["models"]
    stacked = [m for m in models if len(m.get("layers") or []) > 1]
    if stacked:
        save_figure(path, _depth_panels(stacked))
        return
    first = models[0]
    save_figure(path, [
        {"kind": "lines", "title": "normalised gradient norm by lag", "x_label": "lag d = t - k",
         "y_label": "||dE_t/ds_(t-d)|| / ||dE_t/ds_t||", "log_y": True,
         "series": {m["label"]: m["lag_profile"]["normalised"] for m in models}},
        {"kind": "heatmap", "title": f"log10 ||dE_t/ds_k||: {first['label']}", "x_label": "k (state)",
         "y_label": "t (output)", "matrix": [[np.nan if v is None else v for v in row]
                                            for row in first["lag_profile"]["matrix"]],
         "log": True, "colorbar": "log10 norm"}])


def _depth_panels(models: list) -> list:
    """One row per stacked model: [depth x time heat map, per-layer profiles on the same scale].
    Each heat map's colours span its own decades (0 = the top layer at lag 0)."""
    ratio = r"$\|\partial E_t/\partial s^l_{t-d}\|\ /\ \|\partial E_t/\partial s^{top}_t\|$"
    rows = []
    for m in models:
        g = np.array([[np.nan if v is None else v for v in row] for row in m["depth_time"]], dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            logs = np.log10(g[np.isfinite(g) & (g > 0)])
        vmax = float(np.ceil(max(logs.max(), 0.0))) if logs.size else 0.0
        vmin = float(np.floor(max(logs.min(), vmax - 16))) if logs.size else -1.0
        L = len(m["layers"])
        names = [f"layer {l}" + (" (top)" if l == L - 1 else "") for l in range(L)]
        info = m["model"]
        title = f"{m['label']}: {info['cell']}, {L} layers, H={info['hidden_size']}"
        rows.append([
            {"kind": "heatmap", "title": f"{title}\n" + r"$\log_{10}$ " + ratio, "x_label": "lag d (time)",
             "y_label": "layer l (depth)", "matrix": g, "log": True, "colorbar": r"$\log_{10}$ (top layer, lag 0: 0)",
             "y_ticks": names, "vmin": vmin, "vmax": vmax, "cmap": "magma"},
            {"kind": "lines", "title": f"{title}\nevery layer on the top layer's lag-0 scale", "x_label": "lag d",
             "y_label": ratio, "log_y": True,
             "series": {name: g[l] for l, name in reversed(list(enumerate(names)))}}])
    return rows
