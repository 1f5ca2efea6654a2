"""Sections of the documentation rendered from data, so the docs cannot drift from their sources.

Each function turns one source (a diagnosis, a bench report, the configuration schema) into the
Markdown the docs show; `make docs` calls them through cog (scripts/docgen.py) and the tests
check that the committed docs equal what they render now.

    diagnostics_summary(models, labels)   one row per model: decay, horizon, Jacobians, bias
    depth_sentences(models)               what the depth x time matrices of stacked models show
    bench_table(report)                   the README's throughput table from a bench JSON
    bench_speedups(report)                {peer: how many times faster} for time to quality
    config_sections()                     the configuration's sections and their keys
"""

from __future__ import annotations

import re
import textwrap

from dataclasses import fields

from rnnlm_cli.config import SECTIONS
from rnnlm_cli.render.report import table
from rnnlm_cli.values import fmt_num


# --------------------------------------------------------------------------- diagnostics

DIAGNOSTICS_HEADERS = ("model", "decay rate /step", "half-life", "horizon", "mean ‖J‖₂", "‖J‖ product, span 16",
                       "σ_max(W_h) [bound]", "saturation", "cosine k=1", "cosine k=4", "cosine k=16")


def _span(m: dict, span: int) -> str:
    products = {p["span"]: p["mean"] for p in m["jacobian"]["products"]}
    return fmt_num(products[span]) if span in products else "-"


def _cosines(m: dict, k: int) -> str:
    bias = {b["k"]: b for b in m["truncation_bias"]}
    if k not in bias:
        return "-"
    return f"{bias[k]['cosine']:.3f} / {bias[k]['W_h_cosine']:.3f}"


def diagnostics_row(m: dict, label: str | None = None) -> list[str]:
    """One model of a `diagnose-gradients --format json` result as a row of DIAGNOSTICS_HEADERS."""
    horizon = f"≥{m['horizon']}" if m["horizon_is_lower_bound"] else str(m["horizon"])
    half_life = "inf" if m["half_life"] is None else fmt_num(m["half_life"])
    blocks = ", ".join(f"{b['block']} {fmt_num(b['sigma_max'])} [{fmt_num(b['bound'])}]"
                       for b in m["jacobian"]["recurrent"]["blocks"])
    saturation = "; ".join(f"{kind} {s['mean']:.1%}" for kind, s in m["saturation"].items())
    return [label or m["label"], fmt_num(m["decay_rate"]), half_life, horizon,
            fmt_num(m["jacobian"]["overall"]["mean"]), _span(m, 16), blocks, saturation,
            _cosines(m, 1), _cosines(m, 4), _cosines(m, 16)]


def diagnostics_summary(models: list[dict], labels: list[str] | None = None) -> str:
    """The Markdown summary table of docs/diagnostics.md (numbers as the text report formats them)."""
    labels = labels or [None] * len(models)
    rows = [diagnostics_row(m, label) for m, label in zip(models, labels)]
    text = table(DIAGNOSTICS_HEADERS, rows, markdown=True)
    # numbers right-aligned, as in the text report
    return text.replace("|" + "---|" * len(DIAGNOSTICS_HEADERS),
                        "|---|--:|--:|--:|--:|--:|---|---|--:|--:|--:|", 1)


# --------------------------------------------------------------------------- performance

# what each bench config is called in the README, and the target it must meet
BENCH_ROWS = (
    ("tanh", "tanh, full softmax", ">= 8,500, <= 250 MB"),
    ("gru", "GRU, full softmax", ">= 7,500"),
    ("lstm", "LSTM, full softmax", ">= 7,500"),
    ("relu", "ReLU, full softmax", ""),
    ("lstm2-650", "2-layer LSTM, E = H = 650, full softmax", ">= 1.3x PyTorch, <= 600 MB"),
    ("lstm2-650-class", "2-layer LSTM, E = H = 650, class softmax (100 classes)", ">= 3x PyTorch's full, <= 600 MB"),
    ("class-k35", "tanh, class softmax (100 classes), k1 = 35", ">= 55,000"),
    ("class-k4", "tanh, class softmax (100 classes), k1 = 4", ""),
)


def _depth_facts(m: dict) -> dict:
    """Numbers of one stacked model's depth x time matrix: the bottom layer at lag 0 (L-1 layers
    down) against the top layer L-1 steps back, where the bottom layer overtakes the top one,
    and the bottom layer's peak."""
    M = [[float("nan") if v is None else v for v in row] for row in m["depth_time"]]
    L, T = len(M), len(M[0])
    bottom, top = M[0], M[-1]
    cross = next((d for d in range(T) if bottom[d] > top[d]), None)
    peak = max(range(T), key=lambda d: bottom[d] if bottom[d] == bottom[d] else -1.0)
    return {"L": L, "T": T, "depth": bottom[0], "time": top[L - 1], "cross": cross, "peak": peak,
            "peak_value": bottom[peak], "bottom_end": bottom[-1], "top_end": top[-1], "cell": m["model"]["cell"], "label": m["label"]}


def _compare(depth: float, time: float) -> str:
    if not (depth > 0 and time > 0):
        return "cannot be compared (a zero or non-finite norm)"
    ratio = time / depth
    if 1 / 1.5 <= ratio <= 1.5:
        return "about as fast along depth as along time"
    if ratio > 1:
        return f"{ratio:.0f}x faster along depth than along time" if ratio >= 2 else \
            f"{ratio:.1f}x faster along depth than along time"
    return f"{1 / ratio:.1f}x faster along time than along depth"


def depth_sentences(models: list[dict]) -> str:
    """Two sentences on the depth x time matrices of stacked models (`layers`, `depth_time`):
    does the gradient vanish faster along depth or along time, and where. Every number comes
    from the diagnosis; the verdicts follow from them."""
    facts = [_depth_facts(m) for m in models if len(m.get("layers") or []) > 1]
    if not facts:
        return ""
    first = []
    for f in facts:
        n = f["L"] - 1
        first.append(f"in the {f['L']}-layer {f['cell']} model ({f['label']}) the gradient norm {n} layers down "
                     f"(bottom layer, lag 0) is {fmt_num(f['depth'])} of the top layer's and {n} steps back (top "
                     f"layer, lag {n}) {fmt_num(f['time'])}: it vanishes {_compare(f['depth'], f['time'])}")
    second = []
    for f in facts:
        if f["cross"] is None:
            second.append(f"in the {f['cell']} model the top layer holds the most gradient at every lag")
            continue
        where = (f"in the {f['cell']} model the bottom layer holds more gradient than the top one from lag "
                 f"{f['cross']} on ({fmt_num(f['bottom_end'])} against {fmt_num(f['top_end'])} at lag {f['T'] - 1})")
        if f["peak_value"] > 1.1 * f["depth"]:
            where += (f", and its norm even grows with the lag, from {fmt_num(f['depth'])} at lag 0 to "
                      f"{fmt_num(f['peak_value'])} at lag {f['peak']}")
        second.append(where)
    return "\n".join(textwrap.fill(text, width=100) for text in (
        "At initialisation, " + "; ".join(first) + ".",
        "Along time the lower layers lose less than the top one: " + "; ".join(second) + "."))


def _vs_torch(report: dict, name: str) -> str:
    """ours / PyTorch of a config (median, with the per-round range), or '' when not measured."""
    r = next((e for e in report["results"] if e["name"] == name), None)
    if not r or not r.get("vs_torch"):
        return ""
    rounds = r.get("vs_torch_rounds") or []
    spread = f" ({min(rounds):.2f}-{max(rounds):.2f})" if len(rounds) > 1 else ""
    return f"{r['vs_torch']:.2f}x{spread}"


def _bench_result(report: dict, name: str) -> dict:
    return next(r for r in report["results"] if r["name"] == name)


def _ttq(report: dict) -> dict | None:
    done = [t for t in report.get("time_to_quality") or [] if t.get("seconds")]
    return done[0] if done else None


def bench_speedups(report: dict) -> dict[str, float]:
    """How many times faster than each peer the time-to-quality run was: peer time / our time."""
    t = _ttq(report)
    if t is None:
        return {}
    return {name: p["seconds"] / t["seconds"] for name, p in t.get("peers", {}).items()}


def bench_table(report: dict) -> str:
    """The README's Markdown table of a bench report (scripts/bench.py --format json)."""
    rows = []
    for name, what, target in BENCH_ROWS:
        r = _bench_result(report, name)
        s = r["summary"]
        rows.append([what, f"{s['median']:,.0f} ({s['min']:,.0f}-{s['max']:,.0f})", _vs_torch(report, name),
                     _vs_torch(report, f"{name}@busy"), f"{r['bound_fraction']:.0%}", f"{r['peak_rss_mb']:.0f} MB", target])
    full, cls = _bench_result(report, "eval"), _bench_result(report, "eval-class")
    rows.append(["evaluation, full / class softmax",
                 f"{full['summary']['median']:,.0f} / {cls['summary']['median']:,.0f}", "", "",
                 f"{full['bound_fraction']:.0%} / {cls['bound_fraction']:.0%}",
                 f"{full['peak_rss_mb']:.0f} / {cls['peak_rss_mb']:.0f} MB", ""])
    pre = _bench_result(report, "preprocess")
    rows.append(["preprocessing (PTB)", f"{pre['summary']['median']:.1f} MB/s", "", "", "", f"{pre['peak_rss_mb']:.0f} MB", ""])
    t = _ttq(report)
    if t is not None:
        rows.append([f"time to validation perplexity {t['target']:.0f} ({t['softmax']} softmax)",
                     f"{t['seconds']:.0f} s, {t['tokens'] / 1e6:.2f}M tokens", "", "", "", "", "<= 1/3 of the peers"])
    return table(["config", "tokens/s", "vs PyTorch", "vs PyTorch, one core busy", "fraction of the GEMM bound",
                  "peak RSS", "target"], rows, markdown=True)


def bench_targets(report: dict) -> str:
    """The stacked-layer targets of a bench report, one Markdown bullet each: figure, target, met."""
    lines = []
    for t in report.get("targets") or []:
        load = "one core kept busy" if t["load"] == "busy" else "ambient load"
        if t["figure"] == "vs_torch":
            fig = f"{t['value']:.2f}x PyTorch's 2-layer `nn.LSTM` (target >= {t['target']:g}x)"
        else:
            fig = f"peak RSS {t['value']:.0f} MB (target <= {t['target']:.0f} MB)"
        lines.append(f"- `{t['config'].split('@')[0]}`, {load}: {fig}: **{'met' if t['met'] else 'missed'}**")
    return "\n".join(lines)


def bench_bound_check(report: dict) -> str:
    """For each speed target of a bench report (ours against PyTorch): the tokens/s it asks for,
    as a fraction of the config's matrix-multiply bound (FLOPs per token at the run's sgemm rate),
    beside the fractions ours and PyTorch's reached; a target above 100% cannot be met on that
    machine by any implementation that does those multiplies. One Markdown bullet per target."""
    results = {r["name"]: r for r in report["results"]}
    lines = []
    for t in report.get("targets") or []:
        if t["figure"] != "vs_torch" or t["config"] not in results:
            continue
        ours = results[t["config"]]
        torch = results.get(ours.get("vs_torch_of", ""))
        bound = ours.get("bound_tokens_per_s")
        if not torch or not bound:
            continue
        need = t["target"] * torch["summary"]["median"]
        lines.append(f"- `{t['config']}`: {t['target']:g}x PyTorch's {torch['summary']['median']:,.0f} tokens/s is "
                     f"{need:,.0f} tokens/s, {need / bound:.0%} of its matrix-multiply bound ({bound:,.0f} tokens/s); "
                     f"ours reached {ours['summary']['median'] / bound:.0%} ({ours['summary']['median']:,.0f}), "
                     f"PyTorch's full-softmax model {torch['summary']['median'] / torch['bound_tokens_per_s']:.0%} "
                     f"of its own: **{'met' if t['met'] else 'missed'}**"
                     + (", and beyond the bound" if need > bound else ""))
    return "\n".join(lines)


def short_command(cmd: str, words: int = 5) -> str:
    """A process's command line as the bench reports show it: programs by their base name
    (`/x/.venv/bin/python` -> `python`), the first `words` words."""
    parts = [w.rsplit("/", 1)[-1] if "/bin/" in w else w for w in cmd.split()]
    return " ".join(parts[:words])


def bench_conditions(report: dict) -> str:
    """One sentence on the conditions of a bench report: the sgemm rate, the load average and
    the other processes that were running when it started and ended."""
    def others(key):
        procs = report.get(key)
        if procs is None:
            return "not recorded"
        if not procs:
            return "none above 5% CPU"
        return "; ".join(f"{cpu:.0f}% `{short_command(cmd)}`" for cpu, _, cmd in procs[:6])
    return (f"sgemm {report['gemm_gflops']:.0f} GFLOP/s (median of {', '.join(f'{g:.0f}' for g in report['gemm_runs'])}); "
            f"load average (1, 5, 15 min) {report['load_before']} before and {report['load_after']} after; "
            f"other processes at the start: {others('others_before')}; at the end: {others('others_after')}.")


# --------------------------------------------------------------------------- configuration

def config_sections() -> str:
    """A Markdown table of the configuration's sections and their keys, from the schema."""
    rows = [[f"`{name}`", ", ".join(f.name for f in fields(cls))] for name, cls in SECTIONS.items()]
    return table(["section", "keys"], rows, markdown=True)


def _first_sentence(path) -> str:
    """The first sentence of a module's docstring, on one line."""
    import ast
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    first = " ".join(doc.strip().split("\n\n")[0].split())
    end = re.search(r"\.\s+(?=[A-Z`])", first)                # "et al. 2011" does not end it
    return (first[:end.start()] if end else first).rstrip(".:")


def package_layout(package) -> str:
    """The package as a tree, one line per module (its path and the first sentence of its
    docstring) and per file of package data; folders first line from their __init__.py."""
    lines = [f"{package.name}/"]

    def add(indent: str, name: str, text: str) -> None:
        head = f"{indent}{name:<22}"
        width = max(40, 100 - len(head))
        for i, piece in enumerate(textwrap.wrap(text, width, break_on_hyphens=False) or [""]):
            lines.append((head if i == 0 else " " * len(head)) + piece)

    def walk(folder, indent):
        for p in sorted(folder.iterdir(), key=lambda p: (p.is_dir(), p.name)):
            if p.name.startswith((".", "__")) and p.name != "__main__.py":
                continue
            if p.is_dir():
                init = p / "__init__.py"
                add(indent, p.name + "/", _first_sentence(init) if init.exists() else "")
                walk(p, indent + "  ")
            elif p.suffix == ".py":
                add(indent, p.name, _first_sentence(p))
            elif p.suffix != ".pyc":
                add(indent, p.name, "package data")

    walk(package, "  ")
    return "\n".join(lines)
