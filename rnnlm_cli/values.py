"""Values as users see them: strict-JSON copies of results and short text for numbers.

SCHEMA_VERSION  the version of the fields of every JSON output (the key `schema_version`)
jsonable(obj)   a copy that json.dumps writes as strict JSON: numpy values become Python values,
                tuples become lists, non-finite floats (NaN, inf) become null
fmt_num(x)      a number as short text: ints as they are, floats with 3 significant digits
                (scientific when very small or large), None/NaN as '-', infinities as 'inf'/'-inf'
"""

from __future__ import annotations

import math

import numpy as np

# The version of the fields of every JSON output (docs/reference.md, rnnlm_cli/render/reference.py):
# bumped when a field changes meaning or is removed; new fields do not bump it.
SCHEMA_VERSION = 1


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


def json_digest(doc, digits: int) -> str:
    """The first `digits` hex digits of the SHA-256 of `doc` as canonical JSON (sorted keys;
    values JSON cannot hold written as text): a stable name for a set of settings."""
    import hashlib
    import json

    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:digits]
