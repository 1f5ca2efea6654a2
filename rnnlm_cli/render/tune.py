"""The text of `rnnlm tune --report` (its JSON is the report itself, docs/reference.md)."""

from __future__ import annotations

from rnnlm_cli.render.report import table


def tune_report_text(result: dict) -> str:
    """`rnnlm tune --report`: the trials table, then the parameter importances."""
    keys = sorted({k for t in result["trials"] for k in t["params"]})
    rows = []
    for t in result["trials"]:
        rows.append([t["number"], t["state"], "-" if t["value"] is None else f"{t['value']:.4f}",
                     "-" if t["last_step"] is None else t["last_step"],
                     "-" if t["duration_s"] is None else f"{t['duration_s']:.1f}",
                     *[_value(t["params"].get(k)) for k in keys]])
    lines = [f"study {result['study']}: {len(rows)} trials", "",
             table(["trial", "state", "valid loss", "last step", "seconds", *keys], rows), ""]
    if result["importances"]:
        lines.append("parameter importances (fANOVA):")
        lines += [f"  {k:<30} {v:.3f}" for k, v in result["importances"].items()]
    else:
        lines.append(f"parameter importances: not available ({result['importances_unavailable']})")
    return "\n".join(lines)


def _value(v) -> str:
    if v is None:
        return "-"
    return f"{v:.4g}" if isinstance(v, float) else str(v)
