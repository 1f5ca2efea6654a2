"""Golden numbers: fixed seeds in float64 give the numbers recorded in tests/golden/golden.json
(see tests/golden_numbers.py for what they are and when to regenerate them)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from golden_numbers import compute_all

GOLDEN = Path(__file__).parent / "golden" / "golden.json"


def _differences(expected, actual, path=""):
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{path}: expected a mapping, got {actual!r}"]
        out = [f"{path}{k}: missing" for k in expected if k not in actual]
        out += [f"{path}{k}: not in the golden record" for k in actual if k not in expected]
        for k in expected:
            if k in actual:
                out += _differences(expected[k], actual[k], f"{path}{k}/")
        return out
    if isinstance(expected, float) and isinstance(actual, float):
        if math.isnan(expected) and math.isnan(actual):
            return []
        if math.isclose(expected, actual, rel_tol=1e-9, abs_tol=1e-12):
            return []
    elif expected == actual:
        return []
    return [f"{path[:-1]}: expected {expected!r}, got {actual!r}"]


@pytest.fixture(scope="module")
def computed(tmp_path_factory):
    return compute_all(tmp_path_factory.mktemp("golden"))


@pytest.mark.parametrize("part", ["grads", "cli"])
def test_golden_numbers(computed, part):
    expected = json.loads(GOLDEN.read_text())[part]
    diffs = _differences(expected, json.loads(json.dumps(computed[part])))
    assert not diffs, f"{len(diffs)} numbers changed, e.g.:\n" + "\n".join(diffs[:15])


def test_golden_record_is_not_trivial():
    """The record covers every cell x softmax x tying x mode, and its numbers vary."""
    doc = json.loads(GOLDEN.read_text())
    assert len(doc["grads"]) == 4 * 2 * 2 * 3
    losses = {round(v["loss"], 9) for v in doc["grads"].values()}
    assert len(losses) > 40
