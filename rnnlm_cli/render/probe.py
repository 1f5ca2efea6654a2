"""`rnnlm probe` results (schema: analysis.probe.run_probe) as a text table, CSV and a PNG, and
the table of `rnnlm probe-horizons` (gradient horizon next to long-distance accuracy)."""

from __future__ import annotations

from rnnlm_cli.render.report import csv_text, require_matplotlib, save_png, table

CSV_FIELDS = ("label", "bin", "lo", "hi", "n", "correct", "accuracy", "ci_low", "ci_high", "mean_margin")
GROUP = 26     # one model's columns: "  " + acc 5 + " " + 95% CI 11 + " " + margin 6


def _fmt(value, spec: str, empty: str = "-") -> str:
    return empty if value is None else format(value, spec)


def _cells(row: dict) -> list[str]:
    """acc, 95% CI and margin of one bin (or `all`) of one model, as text."""
    ci = "-" if row["ci_low"] is None else f"[{row['ci_low']:.2f},{row['ci_high']:.2f}]"
    return [_fmt(row["accuracy"], ".3f"), ci, _fmt(row["mean_margin"], "+.2f")]


def render_table(result: dict) -> str:
    """Rows = distance bins (and all), one column group per model: accuracy, 95% CI, margin."""
    models = result["models"]
    lo, hi = result["distance_range"]
    head = [f"probe: {result['data']}, {result['items']} items, distance {lo}-{hi}",
            "acc: share of items with log p(verb) > log p(wrong); 95% CI: Wilson score interval; "
            "margin: mean log p(verb) - log p(wrong) in nats"]
    labels = [m["label"] if len(m["label"]) <= GROUP - 2 else "..." + m["label"][5 - GROUP:] for m in models]
    head.append("".ljust(13) + "".join(f"  {label:<{GROUP - 2}}" for label in labels).rstrip())
    groups = [m["bins"] for m in models]
    rows = [[b["bin"], b["n"]] + [c for g in groups for c in _cells(g[i])] for i, b in enumerate(models[0]["bins"])] \
        if models else []
    rows.append(["all", models[0]["overall"]["n"] if models else 0] + [c for m in models for c in _cells(m["overall"])])
    body = table(["distance", "n"] + ["acc", "95% CI", "margin"] * len(models), rows,
                 align="lr" + "rlr" * len(models), widths=[8, 5] + [5, 11, 6] * len(models),
                 sep=[""] + ["  ", " ", " "] * len(models))
    lines = head + [body]
    ppl = [m.get("valid_ppl") for m in models]
    if any(p is not None for p in ppl):
        lines.append(f"{'valid ppl':<13}" + "".join(f"  {_fmt(p, '.2f'):>5}{'':<{GROUP - 7}}" for p in ppl).rstrip())
    return "\n".join(lines)


def csv_rows(result: dict):
    """One row per (model, bin), then an `all` row per model; columns CSV_FIELDS."""
    lo, hi = result["distance_range"]
    for m in result["models"]:
        for row in m["bins"] + [{"bin": "all", "lo": lo, "hi": hi, **m["overall"]}]:
            yield [m["label"]] + [row[k] for k in CSV_FIELDS[1:]]


def render_csv(result: dict) -> str:
    return csv_text(CSV_FIELDS, csv_rows(result))


def plot(result: dict, path: str) -> None:
    """Accuracy against distance, one line per model: bins with their Wilson intervals, and
    per-distance accuracy as faint dots; chance (0.5) dashed."""
    plt = require_matplotlib()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for m in result["models"]:
        mid = [(b["lo"] + b["hi"]) / 2 for b in m["bins"]]
        acc = [b["accuracy"] for b in m["bins"]]
        err = [[a - b["ci_low"] for a, b in zip(acc, m["bins"])], [b["ci_high"] - a for a, b in zip(acc, m["bins"])]]
        line = ax.errorbar(mid, acc, yerr=err, marker="o", capsize=3, label=m["label"])
        ax.plot([d["distance"] for d in m["distances"]], [d["accuracy"] for d in m["distances"]],
                ".", alpha=0.25, color=line[0].get_color())
    ax.axhline(0.5, color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel("distance (words between subject and verb)")
    ax.set_ylabel("agreement accuracy")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize="small")
    ax.set_title(f"{result['items']} probe items; bins with Wilson 95% intervals")
    save_png(fig, path, dpi=120)


def horizon_table(result: dict, diagnoses: dict[str, dict]) -> str:
    """Each model's gradient horizon (from `rnnlm diagnose-gradients --format json`, keyed by
    the probe label) next to its accuracy in the two longest distance bins."""
    rows = []
    for m in result["models"]:
        diag = diagnoses.get(m["label"])
        entry = diag["models"][0] if diag and diag.get("models") else {}
        horizon, half = entry.get("horizon"), entry.get("half_life")
        shown = "-" if horizon is None else f"{'>=' if entry.get('horizon_is_lower_bound') else ''}{horizon}"
        rows.append([m["label"], shown, "-" if half is None else f"{half:.1f}"]
                    + [f"{b['accuracy']:.3f} [{b['ci_low']:.2f},{b['ci_high']:.2f}]" for b in m["bins"][-2:]])
    bins = [b["bin"] for b in result["models"][0]["bins"][-2:]] if result["models"] else []
    steps = next((d.get("steps") for d in diagnoses.values() if d), None)
    threshold = next((d.get("threshold") for d in diagnoses.values() if d), None)
    title = (f"gradient horizon (largest lag whose normalised gradient norm stays above {threshold}, "
             f"T = {steps}) against agreement accuracy at long distances")
    return table(["model", "horizon", "half-life"] + [f"acc {b}" for b in bins], rows, title=title,
                 align="lrr" + "l" * len(bins), widths=[12, 8, 10] + [19] * len(bins),
                 sep=["", ""] + ["  "] * len(bins))
