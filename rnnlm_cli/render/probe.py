"""`rnnlm probe` results (schema: analysis.probe.run_probe, or analysis.probe.probe_over_seeds
with --over-seeds) as a text table, CSV and a PNG; the table of `rnnlm probe-horizons`
(gradient horizon next to long-distance accuracy); and the Markdown tables that README.md and
results/probe.md show, generated from results/probe.json between marker comments
(`<!-- probe-table: begin -->` ... `<!-- probe-table: end -->`)."""

from __future__ import annotations

import re

from rnnlm_cli.render.report import csv_text, require_matplotlib, save_png, table

CSV_FIELDS = ("label", "bin", "lo", "hi", "n", "correct", "accuracy", "ci_low", "ci_high", "mean_margin")
SEED_CSV_FIELDS = ("label", "bin", "lo", "hi", "n", "seeds", "accuracy_mean", "accuracy_min", "accuracy_max",
                   "margin_mean", "margin_min", "margin_max")
GROUP = 26     # one model's columns: "  " + acc 5 + " " + 95% CI 11 + " " + margin 6


def _fmt(value, spec: str, empty: str = "-") -> str:
    return empty if value is None else format(value, spec)


def _cells(row: dict) -> list[str]:
    """acc, 95% CI and margin of one bin (or `all`) of one model, as text."""
    ci = "-" if row["ci_low"] is None else f"[{row['ci_low']:.2f},{row['ci_high']:.2f}]"
    return [_fmt(row["accuracy"], ".3f"), ci, _fmt(row["mean_margin"], "+.2f")]


def _seed_cells(row: dict) -> list[str]:
    """Mean accuracy, its range over seeds and mean margin of one bin (or `all`), as text."""
    acc, margin = row["accuracy"], row["mean_margin"]
    rng = "-" if acc["min"] is None else f"[{acc['min']:.2f},{acc['max']:.2f}]"
    return [_fmt(acc["mean"], ".3f"), rng, _fmt(margin["mean"], "+.2f")]


def render_table(result: dict) -> str:
    """Rows = distance bins (and all), one column group per model: accuracy, 95% CI, margin;
    over seeds: mean accuracy, its range (lowest and highest seed), mean margin."""
    models = result["models"]
    lo, hi = result["distance_range"]
    head = [f"probe: {result['data']}, {result['items']} items, distance {lo}-{hi}"]
    if result.get("over_seeds"):
        cells, names = _seed_cells, ["acc", "range", "margin"]
        head.append("acc: mean over seeds of the share of items with log p(verb) > log p(wrong); range: lowest "
                    "and highest seed; margin: mean log p(verb) - log p(wrong) in nats, mean over seeds")
    else:
        cells, names = _cells, ["acc", "95% CI", "margin"]
        head.append("acc: share of items with log p(verb) > log p(wrong); 95% CI: Wilson score interval; "
                    "margin: mean log p(verb) - log p(wrong) in nats")
    labels = [m["label"] if len(m["label"]) <= GROUP - 2 else "..." + m["label"][5 - GROUP:] for m in models]
    head.append("".ljust(13) + "".join(f"  {label:<{GROUP - 2}}" for label in labels).rstrip())
    groups = [m["bins"] for m in models]
    rows = [[b["bin"], b["n"]] + [c for g in groups for c in cells(g[i])] for i, b in enumerate(models[0]["bins"])] \
        if models else []
    rows.append(["all", models[0]["overall"]["n"] if models else 0] + [c for m in models for c in cells(m["overall"])])
    body = table(["distance", "n"] + names * len(models), rows,
                 align="lr" + "rlr" * len(models), widths=[8, 5] + [5, 11, 6] * len(models),
                 sep=[""] + ["  ", " ", " "] * len(models))
    lines = head + [body]
    ppl = [m.get("valid_ppl") for m in models]
    ppl = [p["mean"] if isinstance(p, dict) else p for p in ppl]
    if any(p is not None for p in ppl):
        lines.append(f"{'valid ppl':<13}" + "".join(f"  {_fmt(p, '.2f'):>5}{'':<{GROUP - 7}}" for p in ppl).rstrip())
    if result.get("over_seeds"):
        seeds = [",".join(str(x) for x in m["seeds"]) for m in models]
        lines.append(f"{'seeds':<13}" + "".join(f"  {s:<{GROUP - 2}}" for s in seeds).rstrip())
    return "\n".join(lines)


def csv_rows(result: dict):
    """One row per (model, bin), then an `all` row per model; columns CSV_FIELDS."""
    lo, hi = result["distance_range"]
    for m in result["models"]:
        for row in m["bins"] + [{"bin": "all", "lo": lo, "hi": hi, **m["overall"]}]:
            yield [m["label"]] + [row[k] for k in CSV_FIELDS[1:]]


def seed_csv_rows(result: dict):
    """Over seeds: one row per (model, bin), then an `all` row per model; columns SEED_CSV_FIELDS."""
    lo, hi = result["distance_range"]
    for m in result["models"]:
        seeds = " ".join(str(x) for x in m["seeds"])
        for row in m["bins"] + [{"bin": "all", "lo": lo, "hi": hi, **m["overall"]}]:
            acc, margin = row["accuracy"], row["mean_margin"]
            yield [m["label"], row["bin"], row["lo"], row["hi"], row["n"], seeds, acc["mean"], acc["min"], acc["max"],
                   margin["mean"], margin["min"], margin["max"]]


def render_csv(result: dict) -> str:
    if result.get("over_seeds"):
        return csv_text(SEED_CSV_FIELDS, seed_csv_rows(result))
    return csv_text(CSV_FIELDS, csv_rows(result))


def plot(result: dict, path: str) -> None:
    """Accuracy against distance, one line per model: bins with their Wilson intervals, and
    per-distance accuracy as faint dots; over seeds, the mean with bars from the lowest to the
    highest seed. Chance (0.5) dashed."""
    plt = require_matplotlib()
    seeds = bool(result.get("over_seeds"))
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for m in result["models"]:
        mid = [(b["lo"] + b["hi"]) / 2 for b in m["bins"]]
        if seeds:
            acc = [b["accuracy"]["mean"] for b in m["bins"]]
            err = [[a - b["accuracy"]["min"] for a, b in zip(acc, m["bins"])],
                   [b["accuracy"]["max"] - a for a, b in zip(acc, m["bins"])]]
            dots = [d["accuracy"]["mean"] for d in m["distances"]]
        else:
            acc = [b["accuracy"] for b in m["bins"]]
            err = [[a - b["ci_low"] for a, b in zip(acc, m["bins"])],
                   [b["ci_high"] - a for a, b in zip(acc, m["bins"])]]
            dots = [d["accuracy"] for d in m["distances"]]
        line = ax.errorbar(mid, acc, yerr=err, marker="o", capsize=3, label=m["label"])
        ax.plot([d["distance"] for d in m["distances"]], dots, ".", alpha=0.25, color=line[0].get_color())
    ax.axhline(0.5, color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel("distance (words between subject and verb)")
    ax.set_ylabel("agreement accuracy")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize="small")
    ax.set_title(f"{result['items']} probe items; " + ("bins: mean over seeds, bars from lowest to highest seed"
                                                        if seeds else "bins with Wilson 95% intervals"))
    save_png(fig, path, dpi=120)


def _lower(flag) -> str:
    return ">=" if flag else ""


def _horizon_spread(model: dict, md: bool = False) -> str:
    """Over seeds: mean horizon [lowest,highest] (with >= where that is a bound: the seed's
    gradient never fell below the threshold); Markdown: `mean [lowest, highest]`, or
    `value (every seed)` when all seeds agree."""
    h, flags = model["horizon"], model["horizon_is_lower_bound"]
    if h["mean"] is None:
        return "-"
    bound = {v: any(f for x, f in zip(h["per_seed"], flags) if x == v) for v in h["per_seed"]}
    lowest, highest = (f"{_lower(bound[v])}{v:.0f}" for v in (h["min"], h["max"]))
    mean = f"{_lower(any(flags))}{h['mean']:.1f}"
    if not md:
        return f"{mean} [{lowest},{highest}]"
    return f"{lowest} (every seed)" if h["min"] == h["max"] else f"{mean} [{lowest}, {highest}]"


def _acc_spread(row: dict) -> str:
    acc = row["accuracy"]
    return f"{acc['mean']:.3f} [{acc['min']:.2f},{acc['max']:.2f}]"


def horizon_table(result: dict) -> str:
    """Each model's gradient horizon (a probe result with horizons added, analysis.probe.
    add_horizons) next to its accuracy in the two longest distance bins; over seeds, means
    with the range over seeds."""
    seeds = bool(result.get("over_seeds"))
    rows = []
    for m in result["models"]:
        long_bins = m["bins"][-2:]
        if seeds:
            half = m["half_life"]["mean"]
            rows.append([m["label"], str(len(m["seeds"])), _horizon_spread(m), "-" if half is None else f"{half:.1f}"]
                        + [_acc_spread(b) for b in long_bins])
            continue
        horizon, half = m.get("horizon"), m.get("half_life")
        shown = "-" if horizon is None else f"{_lower(m.get('horizon_is_lower_bound'))}{horizon}"
        rows.append([m["label"], shown, "-" if half is None else f"{half:.1f}"]
                    + [f"{b['accuracy']:.3f} [{b['ci_low']:.2f},{b['ci_high']:.2f}]" for b in long_bins])
    bins = [b["bin"] for b in result["models"][0]["bins"][-2:]] if result["models"] else []
    title = (f"gradient horizon (largest lag whose normalised gradient norm stays above "
             f"{result.get('horizon_threshold')}, T = {result.get('horizon_steps')}) against agreement accuracy "
             f"at long distances")
    if seeds:
        title += "; mean over seeds [lowest, highest seed]"
        return table(["model", "seeds", "horizon", "half-life"] + [f"acc {b}" for b in bins], rows, title=title,
                     align="lrrr" + "l" * len(bins), widths=[12, 5, 19, 10] + [19] * len(bins),
                     sep=["", " ", ""] + ["  "] * len(bins))
    return table(["model", "horizon", "half-life"] + [f"acc {b}" for b in bins], rows, title=title,
                 align="lrr" + "l" * len(bins), widths=[12, 8, 10] + [19] * len(bins),
                 sep=["", ""] + ["  "] * len(bins))


# --------------------------------------------------------------------------- Markdown for the docs

CELL_NAMES = {"tanh": "tanh", "relu": "ReLU", "gru": "GRU", "lstm": "LSTM"}


def describe_cell(model: dict) -> str:
    """tanh, uniform init / ReLU, identity init (IRNN) / GRU, uniform init ..."""
    name = CELL_NAMES.get(model.get("cell"), str(model.get("cell")))
    init = model.get("recurrent_init")
    text = f"{name}, {init} init" if init else name
    return text + (" (IRNN)" if model.get("cell") == "relu" and init == "identity" else "")


def describe_bptt(model: dict) -> str:
    """full sentences / stream, k1 = k2 = 5 / ..."""
    bptt, k1, k2 = model.get("bptt"), model.get("k1"), model.get("k2")
    if bptt == "full":
        return "full sentences"
    if k2 is None:
        return f"{bptt}, k1 = {k1}"
    return f"{bptt}, k1 = k2 = {k1}" if k1 == k2 else f"{bptt}, k1 = {k1}, k2 = {k2}"


def _md_spread(sp: dict, digits: int = 3) -> str:
    """`mean [lowest, highest]` of a spread over seeds; `value (every seed)` when all agree."""
    if sp["mean"] is None:
        return "-"
    if sp["min"] == sp["max"]:
        return f"{sp['mean']:.{digits}f} (every seed)"
    return f"{sp['mean']:.{digits}f} [{sp['min']:.{digits}f}, {sp['max']:.{digits}f}]"


def readme_table(result: dict) -> str:
    """The README's probe table (Markdown) from a probe result over seeds with horizons
    (results/probe.json): per model, mean accuracy at the two longest distance bins and the
    gradient horizon, each with its range over seeds."""
    models = result["models"]
    bins = [b["bin"] for b in models[0]["bins"][-2:]]
    rows = [[m["label"], describe_cell(m), describe_bptt(m), str(len(m["seeds"]))]
            + [_md_spread(b["accuracy"]) for b in m["bins"][-2:]] + [_horizon_spread(m, md=True)] for m in models]
    return table(["model", "cell", "BPTT", "seeds"] + [f"acc d = {b}" for b in bins] + ["gradient horizon"],
                 rows, markdown=True)


def seed_table(result: dict) -> str:
    """Markdown, one row per model and seed: validation perplexity, accuracy in the two longest
    distance bins (Wilson 95% interval) and the gradient horizon of that run."""
    models = result["models"]
    bins = [b["bin"] for b in models[0]["bins"][-2:]]
    rows = []
    for m in models:
        for run in m["runs"]:
            horizon = run.get("horizon")
            rows.append([m["label"], str(run["seed"]), _fmt(run.get("valid_ppl"), ".2f")]
                        + [f"{b['accuracy']:.3f} [{b['ci_low']:.2f}, {b['ci_high']:.2f}]" for b in run["bins"][-2:]]
                        + ["-" if horizon is None else f"{_lower(run.get('horizon_is_lower_bound'))}{horizon}"])
    return table(["model", "seed", "valid ppl"] + [f"acc d = {b}" for b in bins] + ["horizon"], rows, markdown=True)


def doc_regions(result: dict) -> dict[str, str]:
    """The generated regions of README.md and results/probe.md, by marker name."""
    return {"probe-table": readme_table(result), "probe-seeds": seed_table(result),
            "probe-accuracy": "```\n" + render_table(result) + "\n```",
            "probe-horizons": "```\n" + horizon_table(result) + "\n```"}


def _marker(name: str) -> re.Pattern:
    return re.compile(rf"(<!-- {re.escape(name)}: begin -->\n)(.*?)(<!-- {re.escape(name)}: end -->)", re.S)


def region(text: str, name: str) -> str | None:
    """The text between `<!-- NAME: begin -->` and `<!-- NAME: end -->` lines (None if absent)."""
    found = _marker(name).search(text)
    return None if found is None else found.group(2).rstrip("\n")


def replace_regions(text: str, bodies: dict[str, str]) -> str:
    """`text` with each marked region that it holds replaced by its body (markers kept)."""
    for name, body in bodies.items():
        text = _marker(name).sub(lambda m: m.group(1) + body + "\n" + m.group(3), text)
    return text
