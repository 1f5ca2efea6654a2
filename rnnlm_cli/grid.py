"""Grids and search spaces over configuration keys, validated against the schema.

One parser serves `diagnose-gradients --sweep`, `sweep --grid/--range` and `tune --space`:
  parse_sweep('model.cell=tanh,gru')         -> ('model.cell', ['tanh', 'gru'])  (commas inside [] stay)
  expand_sweeps([...])                        -> [(label, ['model.cell=tanh', ...])], one per combination
  parse_range('train.lr=loguniform(1e-4,1e-2)') -> Range('train.lr', 'loguniform', (0.0001, 0.01))
A value is read as `--set KEY=VALUE` reads it (a YAML scalar: `false`, `1e-3`) and checked with the
key's own validator (config.set_value) before anything is run, so an unknown key or an invalid
value is one ConfigError naming it.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass
from typing import Any

from rnnlm_cli.config import option_kind, set_value
from rnnlm_cli.errors import ConfigError, brief

MAX_SWEEP_MODELS = 1000      # models of one grid; a grid beyond is a typo, not a study


def parse_sweep(text: str, option: str = "--sweep") -> tuple[str, list[str]]:
    """'model.cell=tanh,gru' -> ('model.cell', ['tanh', 'gru']); commas inside [] stay."""
    key, sep, raw = text.partition("=")
    parts = key.strip().split(".")
    values, depth, cur = [], 0, ""
    for ch in raw:
        depth += (ch == "[") - (ch == "]")
        if ch == "," and depth == 0:
            values.append(cur.strip())
            cur = ""
        else:
            cur += ch
    values.append(cur.strip())
    if not sep or len(parts) != 2 or not all(parts) or not all(values) or depth != 0:
        raise ConfigError(f"{option} expects section.key=value1,value2,..., got {brief(text)}")
    return key.strip(), values


def expand_sweeps(sweeps, option: str = "--sweep", what: str = "diagnose-gradients compares",
                  limit: int = MAX_SWEEP_MODELS, fewer: str = "side by side (sweep fewer values)") -> list[tuple[str, list[str]]]:
    """The grid of several --sweep options: [(label, overrides)], one per combination."""
    parsed = [parse_sweep(s, option) for s in sweeps]
    if not parsed:
        return [("", [])]
    keys = [k for k, _ in parsed]
    twice = next((k for k in keys if keys.count(k) > 1), None)
    if twice:       # the later value would win while the label still named the earlier one
        raise ConfigError(f"{option} {brief(twice, quote=False)} is given twice; give all its values in one "
                          f"{option} {brief(twice, quote=False)}=V1,V2,...")
    size = math.prod(len(values) for _, values in parsed)
    if size > limit:
        raise ConfigError(f"{option}: a grid of {size:,} models; {what} at most {limit:,} {fewer}")
    grid = []
    for combo in itertools.product(*[[(k, v) for v in values] for k, values in parsed]):
        label = " ".join(f"{k.split('.')[1]}={v}" for k, v in combo)
        grid.append((label, [f"{k}={v}" for k, v in combo]))
    return grid


def check_value(key: str, text: str, where: str) -> Any:
    """The value `text` of config key `key` as `--set key=text` reads it (ConfigError prefixed by `where`)."""
    try:
        return set_value(key, text)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


# --------------------------------------------------------------------------- search spaces

DISTRIBUTIONS = ("uniform", "loguniform", "int", "choice")
_RANGE = re.compile(r"^\s*([a-z]+)\s*\((.*)\)\s*$", re.S)


@dataclass(frozen=True)
class Range:
    """One key's distribution: uniform(a,b), loguniform(a,b) (a > 0), int(a,b) (inclusive),
    choice(x,y,...). `args` are numbers for the first three, the key's values for choice."""

    key: str
    kind: str
    args: tuple

    def text(self) -> str:
        return f"{self.kind}({', '.join(str(a) for a in self.args)})"


def make_range(key: str, kind: str, args: list, where: str) -> Range:
    """A Range validated against the schema: known key, known distribution, sensible bounds,
    and bounds (or choices) that are valid values of the key."""
    try:
        number_kind = option_kind(key)           # also refuses an unknown key, with a did-you-mean
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    if kind not in DISTRIBUTIONS:
        raise ConfigError(f"{where}: unknown distribution {brief(kind)}; use one of {', '.join(DISTRIBUTIONS)}")
    if kind == "choice":
        if not args:
            raise ConfigError(f"{where}: choice() needs at least one value")
        values = tuple(check_value(key, str(a), where) for a in args)
        return Range(key, kind, values)
    if len(args) != 2:
        raise ConfigError(f"{where}: {kind}() takes two bounds, got {len(args)}")
    try:
        if kind == "int":
            lo, hi = (int(str(a).strip()) for a in args)
        else:
            lo, hi = (float(str(a).strip()) for a in args)
    except ValueError:
        raise ConfigError(f"{where}: {kind}() bounds must be {'integers' if kind == 'int' else 'numbers'}, "
                          f"got {brief(', '.join(str(a) for a in args))}") from None
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi or (kind != "int" and lo == hi):
        raise ConfigError(f"{where}: {kind}({lo}, {hi}) needs finite bounds with low < high")
    if kind == "loguniform" and lo <= 0:
        raise ConfigError(f"{where}: loguniform({lo}, {hi}) needs a low bound above 0")
    if kind == "int" and number_kind == "TEXT" or kind != "int" and number_kind != "FLOAT":
        raise ConfigError(f"{where}: {key} takes {number_kind.lower()} values; "
                          f"use {'int(a,b) or ' if number_kind == 'INTEGER' else ''}choice(...)")
    for bound in (lo, hi):
        check_value(key, str(bound), where)
    return Range(key, kind, (lo, hi))


def parse_range(text: str, option: str = "--range") -> Range:
    """'train.lr=loguniform(1e-4,1e-2)' -> Range; ConfigError for anything else."""
    key, sep, raw = text.partition("=")
    match = _RANGE.match(raw)
    if not sep or not match:
        raise ConfigError(f"{option} expects section.key=DIST(a,b) with DIST one of "
                          f"{', '.join(DISTRIBUTIONS)}, got {brief(text)}")
    args = [a.strip() for a in match.group(2).split(",")] if match.group(2).strip() else []
    return make_range(key.strip(), match.group(1), args, f"{option} {brief(text, quote=False)}")


def draw(r: Range, rng) -> Any:
    """One value of a Range from a numpy Generator (floats rounded to 4 significant digits, so
    run names stay readable; the rounded value is the one trained)."""
    if r.kind == "choice":
        return r.args[int(rng.integers(len(r.args)))]
    lo, hi = r.args
    if r.kind == "int":
        return int(rng.integers(lo, hi + 1))
    x = math.exp(rng.uniform(math.log(lo), math.log(hi))) if r.kind == "loguniform" else rng.uniform(lo, hi)
    return float(f"{min(max(x, lo), hi):.4g}")


def override(key: str, value: Any) -> str:
    """A --set text for a value drawn from a Range (floats written so YAML reads them back as floats)."""
    if isinstance(value, bool):
        return f"{key}={'true' if value else 'false'}"
    if isinstance(value, float):
        text = repr(value)
        return f"{key}={text if ('.' in text or 'e' in text or 'n' in text) else text + '.0'}"
    return f"{key}={value}"
