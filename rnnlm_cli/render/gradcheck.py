"""`rnnlm gradcheck` as text: one row per checked parameter, then a PASSED/FAILED line."""

from __future__ import annotations

from rnnlm_cli.render.report import table

HEADERS = ("cell", "bptt", "tied", "softmax", "setting", "param", "max_rel_error", "checked", "result")


def render_table(result: dict) -> str:
    """The checks of analysis.gradcheck.run_gradcheck as an aligned table plus one summary line."""
    checks = result["checks"]
    rows = [(c["cell"], c["bptt"], "yes" if c["tie_weights"] else "no", c.get("softmax", "full"), c["setting"],
             c["param"], f"{c['max_rel_error']:.2e}", str(c["checked"]), "ok" if c["passed"] else "FAIL")
            for c in checks]
    failed = sum(not c["passed"] for c in checks)
    worst = max((c["max_rel_error"] for c in checks), default=0.0)
    verdict = "PASSED" if result["passed"] else f"FAILED ({failed} of {len(checks)} checks)"
    return (table(HEADERS, rows, align="llllllrrl") + "\n"
            + f"{verdict}: {len(checks)} checks, largest relative error {worst:.2e} "
              f"(tolerance {result['tolerance']:.0e})")
