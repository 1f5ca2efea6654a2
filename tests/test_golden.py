"""Golden numbers: fixed seeds in float64 give the numbers recorded in tests/golden/golden.json
(see tests/golden_numbers.py for what they are and when to regenerate them)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from golden_numbers import compute_all

GOLDEN = Path(__file__).parent / "golden" / "golden.json"


# A gradient check's error is a difference quotient's rounding noise (about 1e-8 in float64): its
# last digits follow the BLAS kernel the CPU picks (one machine gave 7.8e-8, another 4.7e-8 for
# the same check, from the same code). Such numbers must stay at the noise level, within a
# factor of NOISE_FACTOR of the record, not match it to 1e-9.
NOISE_KEYS = ("max_rel_error",)
NOISE_FACTOR = 10.0
NOISE_CEILING = 1e-6            # gradcheck's float64 tolerance


def _noise_level_match(path: str, expected: float, actual: float) -> bool:
    if not path[:-1].endswith(NOISE_KEYS):
        return False
    both_small = expected <= NOISE_CEILING and actual <= NOISE_CEILING
    return both_small and (expected == actual == 0.0 or
                           (expected > 0 and actual > 0 and max(expected, actual) / min(expected, actual) <= NOISE_FACTOR))


def _differences(expected, actual, path=""):
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{path}: expected a mapping, got {actual!r}"]
        out = [f"{path}{k}: missing" for k in expected if k not in actual]
        # a key the record lacks is a new output (e.g. the layer count of a gradient check), not a
        # changed number: only the record's own keys are compared
        for k in expected:
            if k in actual:
                out += _differences(expected[k], actual[k], f"{path}{k}/")
        return out
    if isinstance(expected, float) and isinstance(actual, float):
        if math.isnan(expected) and math.isnan(actual):
            return []
        if math.isclose(expected, actual, rel_tol=1e-9, abs_tol=1e-12) or _noise_level_match(path, expected, actual):
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


def test_noise_level_keys_still_catch_a_real_change():
    """Only gradcheck errors get the noise allowance, and only at the noise level."""
    assert not _differences({"c": {"max_rel_error": 7.8e-8}}, {"c": {"max_rel_error": 4.7e-8}})
    assert _differences({"c": {"max_rel_error": 7.8e-8}}, {"c": {"max_rel_error": 3e-6}})      # a failing check
    assert _differences({"c": {"max_rel_error": 7.8e-8}}, {"c": {"max_rel_error": 1e-10}})     # 780x apart
    assert _differences({"c": {"loss": 7.8e-8}}, {"c": {"loss": 4.7e-8}})                      # any other number
