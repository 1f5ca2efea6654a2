"""The long-range study's tables (Markdown) and figure (PNG), from its result (study/longrange.py's
`run_study`, results/longrange.json). The README's generated section and results/longrange.md
are both rendered here."""

from __future__ import annotations

import math


def _num(v, fmt="{:.2f}") -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else fmt.format(v)


def _solved(v) -> str:
    return "none" if v is None else str(v)


def summary_table(result: dict) -> str:
    """Per model x truncation: longest copy delay / agreement distance solved, copy accuracy per
    delay, and the gradient horizon at init and after training."""
    study = result["study"]
    delays = [str(T) for T in (study.get("copy") or {}).get("delays", [])]
    dists = [str(d) for d in (study.get("agreement") or {}).get("distances", [])]
    head = ["model", "truncation", "copy: longest T solved", *[f"T={T}" for T in delays],
            "agreement: longest d solved", *[f"d={d}" for d in dists], "horizon init -> trained (window)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in result["summary"]:
        cells = [row["model"], row["truncation"], _solved(row.get("copy_longest_solved")),
                 *[_num(row["copy_accuracy"].get(T)) for T in delays],
                 _solved(row.get("agreement_longest_solved")),
                 *[_num(row["agreement_accuracy"].get(d)) for d in dists],
                 f"{row['horizon_init']} -> {_num(row['horizon_trained'], '{}')} ({row['horizon_window']})"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def runs_table(result: dict) -> str:
    """Every run: accuracy, losses against the memoryless baseline, horizons, clip rate, time."""
    head = ["task", "length", "model", "truncation", "accuracy", "solved", "loss/recalled (memoryless)",
            "loss/token (memoryless)", "horizon init", "decay init", "horizon trained", "decay trained",
            "clip rate", "k2 chosen", "train s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in result["runs"]:
        s = r["scores"]
        if r.get("failed"):
            lines.append("| " + " | ".join([r["task"], str(r["length"]), r["model"], r["truncation"], "failed",
                                             "no", "-", "-", str(r["horizon_init"]["horizon"]), "-", "-", "-", "-",
                                             "-", "-"]) + " |")
            continue
        if r["task"] == "copy":
            recalled = f"{_num(s['loss_per_recalled_symbol'])} ({_num(s['baseline']['per_recalled_symbol'])})"
            token = f"{_num(s['loss_per_token'], '{:.3f}')} ({_num(s['baseline']['per_token'], '{:.3f}')})"
        else:
            recalled = token = "-"
        k2 = ", ".join(str(h["target"]) for h in r.get("k2_history") or []) or "-"
        if len(k2) > 40:
            k2 = k2[:37] + "..."
        hi, ht = r["horizon_init"], r["horizon_trained"]
        lines.append("| " + " | ".join([
            r["task"], str(r["length"]), r["model"], r["truncation"], _num(r["accuracy"], "{:.3f}"),
            "yes" if r["solved"] else "no", recalled, token,
            f"{hi['horizon']}{'+' if hi['horizon_is_lower_bound'] else ''}", _num(hi["decay_rate"], "{:.3f}"),
            f"{ht['horizon']}{'+' if ht['horizon_is_lower_bound'] else ''}", _num(ht["decay_rate"], "{:.3f}"),
            _num(r["clip_rate"]), k2, _num(r["train_wall_s"], "{:.0f}")]) + " |")
    return "\n".join(lines)


def auto_table(result: dict) -> str:
    """Fixed TBPTT(k1, k1) against k2 auto for the models that ran both: accuracy, tokens/s and
    the k2 chosen, per task length."""
    runs = {(r["task"], r["length"], r["model"], r["truncation"]): r for r in result["runs"]}
    auto = [r for r in result["runs"] if r.get("k2_history")]
    head = ["task", "length", "model", "accuracy fixed / auto", "tokens/s fixed / auto", "k2 chosen (auto)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    fixed_name = _fixed_name(result)
    for r in auto:
        f = runs.get((r["task"], r["length"], r["model"], fixed_name))
        f = f if f and not f.get("failed") else None
        targets = [h["target"] for h in r["k2_history"]]
        chosen = f"{min(targets)}-{max(targets)}, last {targets[-1]}" if targets else "-"
        lines.append("| " + " | ".join([
            r["task"], str(r["length"]), r["model"],
            f"{_num(f and f['accuracy'], '{:.3f}')} / {_num(r['accuracy'], '{:.3f}')}",
            f"{_num(f and f['tokens_per_sec'], '{:,.0f}')} / {_num(r['tokens_per_sec'], '{:,.0f}')}", chosen]) + " |")
    return "\n".join(lines)


def _fixed_name(result: dict) -> str | None:
    """The truncation that is stream mode with a fixed k2 (the one auto is compared with)."""
    for name, settings in result["study"]["truncations"].items():
        if "train.bptt=stream" in settings and not any(s.startswith("train.k2=auto") for s in settings):
            return name
    return None


def markdown(result: dict) -> str:
    s = result["study"]
    copy, agr = s.get("copy") or {}, s.get("agreement") or {}
    parts = ["# Long-range memory study", "",
             "Written by `rnnlm longrange` (`make longrange`) from its result, results/longrange.json. "
             f"Copy task: m = {copy.get('symbols')} symbols of an alphabet of a = {copy.get('alphabet')}, "
             f"{copy.get('train')} training lines per delay; agreement: {agr.get('train')} training sentences per "
             f"distance. Solved: test recall accuracy >= {s['solved']}. Horizon: the largest lag whose normalised "
             f"gradient norm stays above {s['threshold']} (`+`: it never fell below within the window). "
             f"{len(result['runs'])} runs, {result['jobs']} at a time.", "",
             "## Per model", "", summary_table(result), "",
             "## Fixed k2 against `train.k2: auto`", "", auto_table(result), "",
             "## Every run", "", runs_table(result), ""]
    return "\n".join(parts)


def plot(result: dict, path: str) -> None:
    """Recall accuracy against the copy delay and the agreement distance, a line per model x
    truncation, with chance level dashed."""
    from rnnlm_cli.render.report import require_matplotlib, save_png

    plt = require_matplotlib("--plot")
    s = result["study"]
    tasks = [t for t in ("copy", "agreement") if s.get(t)]
    fig, axes = plt.subplots(1, len(tasks), figsize=(6 * len(tasks), 4.2), squeeze=False)
    styles = {name: st for name, st in zip(s["truncations"], ("-", "--", ":", "-."))}
    colours = {name: f"C{i}" for i, name in enumerate(s["models"])}
    for ax, task in zip(axes[0], tasks):
        for row in result["summary"]:
            acc = row[f"{task}_accuracy"]
            if not acc:
                continue
            xs = sorted(int(k) for k in acc)
            ax.plot(xs, [math.nan if acc[str(x)] is None else acc[str(x)] for x in xs], styles.get(row["truncation"], "-"), marker="o", ms=3,
                    color=colours[row["model"]], label=f"{row['model']} {row['truncation']}")
        chance = 1 / s["copy"]["alphabet"] if task == "copy" else 0.5
        ax.axhline(chance, color="grey", lw=0.8, ls="--")
        ax.set_xscale("log", base=2)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("delay T (blanks)" if task == "copy" else "subject-verb distance d (words)")
        ax.set_ylabel("test recall accuracy")
        ax.set_title("copy task" if task == "copy" else "agreement")
    axes[0][-1].legend(fontsize=7, ncol=2, loc="upper right")
    save_png(fig, path, dpi=90)


def readme_section(result: dict) -> str:
    """The README's generated part: the per-model table and the auto comparison."""
    return summary_table(result) + "\n\nFixed k2 against `train.k2: auto`:\n\n" + auto_table(result)


def k2_records_table(records: list[dict]) -> str:
    """Result records of training runs (render/results.make_record) side by side: the truncation,
    tokens/s, validation and test perplexity, and what k2 auto chose."""
    head = ["run", "k1", "k2", "updates", "tokens/s", "valid ppl", "test ppl", "k2 chosen (measurements)", "mean k2"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in records:
        tc, s = r["config"]["train"], r["summary"]
        auto = s.get("k2_auto")
        chosen = f"{', '.join(map(str, auto['targets']))} ({auto['measurements']})" if auto else "-"
        lines.append("| " + " | ".join([
            r["name"], str(tc["k1"]), str(tc["k2"] or tc["k1"]), f"{s['steps']:,}", _num(s["tokens_per_sec"], "{:,.0f}"),
            _num(s.get("valid_ppl"), "{:.1f}"), _num(s.get("test_ppl"), "{:.1f}"), chosen,
            _num(auto and auto.get("mean_k2"), "{:.1f}")]) + " |")
    return "\n".join(lines)
