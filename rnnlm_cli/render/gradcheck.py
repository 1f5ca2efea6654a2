"""`rnnlm gradcheck` as text: one row per checked parameter, the reason of each check that could not
measure, then a PASSED/FAILED line."""

from __future__ import annotations

from rnnlm_cli.render.report import table

HEADERS = ("layers", "cell", "bptt", "tied", "softmax", "setting", "param", "max_rel_error", "checked", "result")


def render_table(result: dict) -> str:
    """The checks of analysis.gradcheck.run_gradcheck as an aligned table plus one summary line."""
    checks = result["checks"]
    rows = [(str(c.get("num_layers", 1)), c["cell"], c["bptt"], "yes" if c["tie_weights"] else "no", c.get("softmax", "full"), c["setting"],
             c["param"], _error(c["max_rel_error"]), str(c["checked"]), "ok" if c["passed"] else "FAIL")
            for c in checks]
    failed = sum(not c["passed"] for c in checks)
    errors = [c["max_rel_error"] for c in checks]
    worst = "NaN/inf" if None in errors else _error(max(errors, default=0.0))
    verdict = "PASSED" if result["passed"] else f"FAILED ({failed} of {len(checks)} checks)"
    reasons = list(dict.fromkeys(c["reason"] for c in checks if c.get("reason")))   # each once, in order
    return (table(HEADERS, rows, align="rllllllrrl") + "\n"
            + "".join(f"cannot measure: {reason}\n" for reason in reasons)
            + f"{verdict}: {len(checks)} checks, largest relative error {worst} "
              f"(tolerance {result['tolerance']:.0e})")


def _error(value) -> str:
    """A relative error as text; None (NaN or inf met) as 'NaN/inf'."""
    return "NaN/inf" if value is None else f"{value:.2e}"
