"""Sweeps: a grid (and random draws) of configurations, one ordinary training run per point.

plan_sweep(...) -> [Point]   every point's configuration, validated before anything is written;
                             a point's folder is OUT/NAME, NAME = readable values + config hash
point_state(point)           finished (summary.json) | busy (a live run holds it) |
                             resume (checkpoint.npz) | force (files of a run killed before its
                             first checkpoint) | fresh
train_command(point, state)  the `rnnlm train` argv that runs (or resumes) the point
run_sweep(points, jobs)      runs the points that are not finished, `jobs` processes at a time,
                             each with one BLAS thread; a signal (or any exception) stops every
                             child with SIGTERM (each saves a checkpoint) and waits for them

Every launch appends to OUT/logs/NAME.log: a header line `# sweep launch N: MODE`, the
child's stderr and stdout, and `# sweep exit CODE`. A rerun of the same sweep skips finished
runs and resumes interrupted ones (bit-exact, as `rnnlm train --resume`).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from rnnlm_cli import grid
from rnnlm_cli.config import Config, load_config, option_kind
from rnnlm_cli.errors import ConfigError, brief
from rnnlm_cli.fileio import atomic_write_json, make_folders
from rnnlm_cli.paths import folder_kind, shown
from rnnlm_cli.train.lock import LockError, RunLock
from rnnlm_cli.values import SCHEMA_VERSION, json_digest

MANIFEST = "sweep.json"
LOGS = "logs"
MAX_POINTS = 10_000
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
# keys the sweep itself sets for each point
_RESERVED_HOW = {"train.out": "OUT/NAME (use --out)",
                 "train.tensorboard": "the base configuration's folder/NAME (set it there)"}
RESERVED = tuple(_RESERVED_HOW)


@dataclass
class Point:
    """One run of a sweep: its name (its folder under OUT), its overrides, its configuration."""

    name: str
    values: dict                  # key -> value text, as given in the grid or drawn
    cfg: Config
    config_hash: str
    folder: str                   # OUT/NAME as the user's --out spells it
    overrides: list = field(default_factory=list)


def config_hash(cfg: Config) -> str:
    """8 hex digits of the resolved configuration without its output folder."""
    doc = cfg.to_dict()
    doc["train"] = {k: v for k, v in doc["train"].items() if k != "out"}
    return json_digest(doc, 8)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", text).strip("_") or "x"


def point_name(values: dict, digest: str) -> str:
    """'cell-gru_lr-0.003-1a2b3c4d': each key's last part and value, then the config hash."""
    readable = "_".join(f"{_slug(k.split('.')[-1])}-{_slug(v)}" for k, v in values.items())[:80]
    return f"{readable}-{digest}" if readable else digest


def _check_key(key: str, where: str) -> None:
    """A configuration key a sweep may set (ConfigError prefixed by `where` for an unknown key or
    one the sweep sets itself)."""
    try:
        option_kind(key)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    if key in RESERVED:
        raise ConfigError(f"{where}: the sweep sets {key} itself, for each run {_RESERVED_HOW[key]}")


def parse_ablations(ablations) -> list[list[str]]:
    """Each --ablate text ("KEY=VALUE [KEY=VALUE ...]") as its overrides, validated against the schema."""
    parsed = []
    for text in ablations:
        pairs = text.split()
        if not pairs:
            raise ConfigError("--ablate '': expected KEY=VALUE [KEY=VALUE ...]")
        where = f"--ablate {brief(text, quote=False)}"
        keys = []
        for pair in pairs:
            key, eq, value = pair.partition("=")
            if not eq or not key:
                raise ConfigError(f"{where}: expected KEY=VALUE, got {brief(pair)}")
            _check_key(key, where)
            if key in keys:
                raise ConfigError(f"{where}: {key} is given twice")
            keys.append(key)
            grid.check_value(key, value, where)
        parsed.append(pairs)
    return parsed


def parse_grids(grids, ranges, n_random: int | None) -> tuple[list, list]:
    """The grid's keys and values and the random ranges, validated against the schema."""
    if not grids and not ranges and not n_random:
        raise ConfigError("nothing to sweep: give --grid KEY=V1,V2,..., --random N with --range KEY=DIST(a,b), "
                          "or --ablate KEY=VALUE")
    if ranges and not n_random:
        raise ConfigError("--range needs --random N (how many points to draw)")
    if n_random and not ranges:
        raise ConfigError("--random needs at least one --range KEY=DIST(a,b)")
    parsed = [grid.parse_sweep(g, "--grid") for g in grids]
    rs = [grid.parse_range(r) for r in ranges]
    keys = [k for k, _ in parsed] + [r.key for r in rs]
    twice = next((k for k in keys if keys.count(k) > 1), None)
    if twice:
        raise ConfigError(f"{brief(twice, quote=False)} is swept twice; give all its values in one --grid or --range")
    for key, values in parsed:
        where = f"--grid {brief(key, quote=False)}"
        _check_key(key, where)
        for v in values:
            grid.check_value(key, v, where)
    for r in rs:
        if r.key in RESERVED:
            raise ConfigError(f"--range {r.key}: the sweep sets {r.key} itself, for each run {_RESERVED_HOW[r.key]}")
    return parsed, rs


def plan_sweep(config_path: str | None, overrides, grids, ranges, n_random: int | None, seed: int,
               out: str, ablations=()) -> list[Point]:
    """Every point of the sweep, its configuration validated (ConfigError before any write).
    With `ablations`: the base configuration (named base-HASH) and one point per ablation, each
    the base with that ablation's keys changed."""
    if ablations:
        if grids or ranges or n_random:
            raise ConfigError("--ablate runs the base configuration and one run per --ablate; it does not "
                              "combine with --grid or --random (run those as a sweep of their own)")
        return _plan_ablation(config_path, overrides, parse_ablations(ablations), out)
    parsed, rs = parse_grids(grids, ranges, n_random)
    size = 1
    for _, values in parsed:
        size *= len(values)
    size *= n_random or 1
    if size > MAX_POINTS:
        raise ConfigError(f"a sweep of {size:,} runs; at most {MAX_POINTS:,} (give fewer values)")
    rng = np.random.default_rng(seed)
    draws = [[(r.key, grid.override(r.key, grid.draw(r, rng)).partition("=")[2]) for r in rs]
             for _ in range(n_random or 0)] or [[]]
    combos = grid.expand_sweeps([f"{k}={','.join(v)}" for k, v in parsed], "--grid", "a sweep runs",
                                MAX_POINTS, "(give fewer values)") if parsed else [("", [])]
    points, seen = [], set()
    for _, grid_overrides in combos:
        for draw in draws:
            values = dict(o.split("=", 1) for o in grid_overrides)
            values.update(draw)
            sets = [f"{k}={v}" for k, v in values.items()]
            cfg, digest = _configure(config_path, overrides, sets, "point")
            if digest in seen:          # two random draws that coincide: one run
                continue
            seen.add(digest)
            points.append(_point(point_name(values, digest), values, cfg, digest, out, sets))
    _check_shared_data(points)
    return points


def _plan_ablation(config_path, overrides, ablations: list[list[str]], out: str) -> list[Point]:
    points = []
    for sets in [[]] + ablations:
        cfg, digest = _configure(config_path, overrides, sets, "--ablate")
        if sets and digest == points[0].config_hash:
            raise ConfigError(f"--ablate {' '.join(sets)} changes nothing: the base configuration already has "
                              f"{'these values' if len(sets) > 1 else 'this value'}")
        twin = next((p for p in points[1:] if p.config_hash == digest), None)
        if twin is not None:
            raise ConfigError(f"--ablate {' '.join(sets)} gives the same configuration as --ablate "
                              f"{' '.join(f'{k}={v}' for k, v in twin.values.items())}")
        values = dict(o.split("=", 1) for o in sets)
        points.append(_point(point_name(values, digest) if sets else f"base-{digest}", values, cfg, digest, out, sets))
    _check_shared_data(points)
    return points


def _configure(config_path, overrides, sets: list[str], what: str) -> tuple[Config, str]:
    """A point's resolved configuration and its hash (ConfigError naming the point's overrides)."""
    try:
        cfg = load_config(config_path, list(overrides) + sets)
    except ConfigError as exc:
        raise ConfigError(f"{what} {' '.join(sets)}: {exc}") from None
    return cfg, config_hash(cfg)


def _point(name: str, values: dict, cfg: Config, digest: str, out: str, sets: list[str]) -> Point:
    """The point that runs `cfg` in OUT/NAME (and, with train.tensorboard, its own event folder
    TENSORBOARD/NAME)."""
    folder = os.path.join(out, name)
    own = {"train.out": folder}
    if cfg.train.tensorboard:
        own["train.tensorboard"] = os.path.join(cfg.train.tensorboard, name)
        sets = sets + [f"train.tensorboard={own['train.tensorboard']}"]
    return Point(name, values, cfg.with_values(own), digest, folder, sets)


def _check_shared_data(points: list[Point]) -> None:
    """Points whose data settings differ may not share one prepared-data folder (each run would
    rebuild it under the others)."""
    by_folder: dict[str, tuple] = {}
    for p in points:
        data = p.cfg.data
        doc = json.dumps(p.cfg.to_dict()["data"], sort_keys=True, default=str)
        first = by_folder.setdefault(data.prepared, (doc, p))
        if first[0] != doc:
            raise ConfigError(f"runs {first[1].name} and {p.name} have different data settings but share the "
                              f"prepared-data folder {shown(data.prepared)}; each data setting needs its own "
                              f"folder: run one sweep per data setting, each with its own data.prepared")


def check_sweep_folder(out: str, own=(MANIFEST, LOGS), what: str = "a sweep") -> None:
    """OUT must be new, empty, or an earlier study's folder (only run folders and the names in
    `own`); never a run, a prepared-data folder, a file, or a folder of other files
    (ConfigError, nothing written)."""
    if os.path.lexists(out) and not os.path.isdir(out):
        raise ConfigError(f"--out {shown(out)} is a file; {what} writes into a folder")
    if not os.path.isdir(out):
        return
    kind = folder_kind(out)
    if kind is not None:
        raise ConfigError(f"--out {shown(out)} is a {'training run' if kind == 'run' else 'prepared-data'} "
                          f"folder; choose another path")
    foreign = [n for n in sorted(os.listdir(out)) if n not in own and folder_kind(os.path.join(out, n)) != "run"]
    if foreign:
        raise ConfigError(f"--out {shown(out)} holds files {what} did not write ({brief(foreign[0], quote=False)}"
                          f"{', ...' if len(foreign) > 1 else ''}); choose a new or empty folder")


# --------------------------------------------------------------------------- one point's state

FINISHED, BUSY, RESUME, FORCE, FRESH = "finished", "busy", "resume", "force", "fresh"


def point_state(point: Point) -> str:
    folder = point.folder
    if not os.path.isdir(folder):
        return FRESH
    try:
        RunLock(folder).check()
    except LockError:
        return BUSY
    if os.path.isfile(os.path.join(folder, "summary.json")):
        return FINISHED
    if os.path.isfile(os.path.join(folder, "checkpoint.npz")):
        return RESUME
    return FORCE if folder_kind(folder) == "run" else FRESH


def train_command(config_path: str | None, overrides, point: Point, state: str, program=("rnnlm",)) -> list[str]:
    """The argv of the `rnnlm train` that runs the point from `state` (resume, force or fresh)."""
    argv = list(program) + ["train"]
    argv += ["--config", config_path] if config_path else []
    for text in list(overrides) + point.overrides:
        argv += ["--set", text]
    argv += ["--out", point.folder]
    argv += {RESUME: ["--resume"], FORCE: ["--force"]}.get(state, [])
    return argv


def shell_command(argv: list[str]) -> str:
    """One line for bash: one BLAS thread, then the command, every word quoted."""
    return " ".join(f"{k}={v}" for k, v in ONE_THREAD.items()) + " " + shlex.join(argv)


# --------------------------------------------------------------------------- running

def write_manifest(out: str, config_path, overrides, grids, ranges, n_random, seed, points, ablations=()) -> None:
    make_folders(out)
    atomic_write_json(os.path.join(out, MANIFEST), {
        "schema_version": SCHEMA_VERSION, "config": config_path, "set": list(overrides), "grid": list(grids), "range": list(ranges),
        "random": n_random, "seed": seed, "ablate": list(ablations),
        "runs": [{"name": p.name, "values": p.values, "config_hash": p.config_hash} for p in points]})


def _launches(log_path: str) -> int:
    try:
        with open(log_path, encoding="utf-8", errors="replace") as fh:
            return sum(1 for line in fh if line.startswith("# sweep launch "))
    except OSError:
        return 0


def run_sweep(points: list[Point], out: str, jobs: int, argv_of, log=None, poll: float = 0.1) -> dict:
    """Run the points that are not finished, `jobs` at a time; returns {name: outcome} with
    outcome "finished" (before this sweep), "busy", "done", "interrupted (exit 130|143)" (the run
    was stopped by a signal; a rerun resumes it) or "failed (exit N)".

    argv_of(point, state) -> the command. Stopping (a signal turned into an exception by the
    caller, or any error): every running child gets SIGTERM, saves a checkpoint and is waited
    for; then the exception goes on.
    """
    log = log or (lambda message: None)
    outcome: dict[str, str] = {}
    queue = []
    for p in points:
        state = point_state(p)
        if state in (FINISHED, BUSY):
            outcome[p.name] = state
            log(f"{p.name}: {'finished earlier, skipped' if state == FINISHED else 'in use by a live run, skipped'}")
        else:
            queue.append((p, state))
    logs = os.path.join(out, LOGS)
    make_folders(logs)
    env = {**os.environ, **ONE_THREAD}
    running: dict = {}
    try:
        while queue or running:
            while queue and len(running) < jobs:
                p, state = queue.pop(0)
                path = os.path.join(logs, f"{p.name}.log")
                n = _launches(path) + 1
                fh = open(path, "a", encoding="utf-8")
                fh.write(f"# sweep launch {n}: {state} ({time.strftime('%Y-%m-%d %H:%M:%S')})\n")
                fh.flush()
                proc = subprocess.Popen(argv_of(p, state), stdout=fh, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, env=env)
                running[proc] = (p, fh)
                log(f"{p.name}: started ({state})")
            time.sleep(poll)
            for proc in [q for q in running if q.poll() is not None]:
                p, fh = running.pop(proc)
                fh.write(f"# sweep exit {proc.returncode}\n")
                fh.close()
                code = proc.returncode
                outcome[p.name] = ("done" if code == 0 else f"interrupted (exit {code})" if code in (130, 143)
                                   else f"failed (exit {code})")
                log(f"{p.name}: {outcome[p.name]}")
    finally:
        _stop(running)
    return outcome


def _stop(running: dict, grace: float = 120.0) -> None:
    """SIGTERM to every child (each saves a checkpoint and exits), wait; SIGKILL after `grace` s."""
    for proc in running:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc, (p, fh) in running.items():
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if not fh.closed:
            fh.write(f"# sweep exit {proc.returncode} (stopped)\n")
            fh.close()
    running.clear()


def python_program() -> tuple[str, ...]:
    """The program that runs a point locally: this interpreter with the rnnlm package."""
    return (sys.executable, "-m", "rnnlm_cli")


def prepare_data(points: list[Point], log=None, progress=None) -> None:
    """Build (or check) each distinct prepared-data folder once, before runs start in parallel."""
    from rnnlm_cli.data.corpus import ensure_prepared

    done = set()
    for p in points:
        if p.cfg.data.prepared in done:
            continue
        done.add(p.cfg.data.prepared)
        ensure_prepared(p.cfg, progress=progress, log=log)
