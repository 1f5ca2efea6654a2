"""Checkpoints: one `.npz` of plain arrays, written atomically, verified by a checksum on load.

Layout (every entry loads with `numpy.load(path, allow_pickle=False)`):
  param/<name>      model parameters (names in model.py: embedding, cell.W_x, cell.W_h, ...;
                    cell.<l>.W_x, ... with two or more layers): the weights to use. With
                    weight averaging under way (train.average, meta progress.avg_count > 0)
                    these are the AVERAGED weights, so every reader gets them unawares
  raw/<name>        only then: the raw iterate that training continues from (same names and
                    shapes as param/); `--resume` reads both
  optim/<name>      optimizer state arrays (e.g. optim/m/cell.W_h for Adam's first moment)
  state/<i>         the hidden state carried between chunks (h, then c for the LSTM; layer by
                    layer from the bottom)
  rng               the random generator's state, as JSON text
  meta              JSON text: format version, step, epoch, lr, schedule state, data position,
                    the resolved configuration and the vocabulary checksum
  checksum          sha256 over every other entry (name, dtype, shape, bytes)

Writing: `fileio.atomic_write` (a temporary file in the same folder, flushed and fsync'ed,
then renamed over the target), so a crash or a full disk leaves the previous checkpoint intact.

Reading (`read` = `load` + `unpack`): the checksum catches damage, but a crafted file can carry a
recomputed one, so `unpack` validates every entry as well, in one place: entry names; meta's
format version, configuration, vocab_size, vocab_sha256, has_state, class_bounds and every
`progress` field (type and range, none missing, none extra); the generator state (one numpy's
PCG64 accepts); parameters, optimizer slots (shaped like their parameter; Adam's v, Adagrad's G,
RMSprop's E not negative; Adam's t an integer >= 0) and the carried state: float, finite, within
the range of the training dtype, the state shaped (train.batch_size, model.hidden_size) per part.
A reader then checks the fit to its use (runs.py). Every refusal is one CheckpointError naming
the entry, with any echoed value shortened (`shown`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import zipfile

import numpy as np

from rnnlm_cli import fileio
from rnnlm_cli.config import build_config
from rnnlm_cli.errors import CheckpointError, ConfigError
from rnnlm_cli.values import SCHEMA_VERSION

FORMAT_VERSION = 1


def _checksum(arrays: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for name in sorted(arrays):
        arr = np.ascontiguousarray(arrays[name])
        digest.update(name.encode())
        digest.update(str(arr.dtype).encode())
        digest.update(str(arr.shape).encode())
        digest.update(arr.tobytes())
    return digest.hexdigest()


def _text(value: str) -> np.ndarray:
    return np.array(value)  # 0-d unicode array: no pickle needed


def pack(params: dict, optim: dict, state: tuple, rng: np.random.Generator | None, meta: dict,
         raw: dict | None = None) -> dict:
    """Flatten everything a checkpoint holds into named arrays (raw: the raw iterate, when
    `params` are averaged weights)."""
    arrays = {f"param/{k}": v for k, v in params.items()}
    arrays.update({f"raw/{k}": v for k, v in (raw or {}).items()})
    arrays.update({f"optim/{k}": v for k, v in optim.items()})
    arrays.update({f"state/{i}": s for i, s in enumerate(state)})
    if rng is not None:
        arrays["rng"] = _text(json.dumps(rng.bit_generator.state))
    arrays["meta"] = _text(json.dumps({"format_version": FORMAT_VERSION, "schema_version": SCHEMA_VERSION, **meta}))
    return arrays


def save(path: str, arrays: dict[str, np.ndarray]) -> None:
    """Write arrays to `path` atomically, with a checksum entry."""
    payload = dict(arrays)
    payload["checksum"] = _text(_checksum(arrays))
    try:
        fileio.atomic_write(path, lambda fh: np.savez(fh, **payload))
    except OSError as exc:
        raise CheckpointError(f"could not write checkpoint {path}: {exc.strerror or exc}; "
                              f"the previous checkpoint is unchanged") from None


def load(path: str) -> dict[str, np.ndarray]:
    """Read and verify a checkpoint; every failure is a CheckpointError naming the problem."""
    if not os.path.exists(path):
        raise CheckpointError(f"checkpoint not found: {path}")
    if os.path.isdir(path):
        raise CheckpointError(f"checkpoint path is a folder, not a file: {path}")
    if os.path.getsize(path) == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes)")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path} is not a checkpoint (not an .npz archive; truncated?)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise CheckpointError(f"checkpoint {path} holds pickled objects; refusing to load it "
                                  f"(rnnlm never unpickles)") from None
        raise CheckpointError(f"checkpoint {path} is corrupted: {exc}") from None
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        raise CheckpointError(f"checkpoint {path} is corrupted: {exc}") from None
    except Exception as exc:  # zlib/crc errors inside a damaged member
        raise CheckpointError(f"checkpoint {path} is corrupted: {type(exc).__name__}: {exc}") from None
    if "checksum" not in arrays or "meta" not in arrays:
        raise CheckpointError(f"{path} is not an rnnlm checkpoint (no meta/checksum entries)")
    stored = str(arrays.pop("checksum"))
    if _checksum(arrays) != stored:
        raise CheckpointError(f"checkpoint {path} is corrupted: checksum mismatch")
    return arrays


def _json_entry(arrays: dict, name: str, where: str) -> dict:
    """A JSON-object entry (meta, rng) of a checkpoint; CheckpointError when it is anything else."""
    value = arrays[name]
    if value.shape != () or value.dtype.kind != "U":
        raise CheckpointError(f"{where}: entry '{name}' is not text")
    try:
        doc = json.loads(str(value))
    except (ValueError, RecursionError):                  # RecursionError: nested a million levels deep
        raise CheckpointError(f"{where}: entry '{name}' is not valid JSON") from None
    if not isinstance(doc, dict):
        raise CheckpointError(f"{where}: entry '{name}' is not a JSON object")
    return doc


def shown(value, limit: int = 60) -> str:
    """A value as a short repr for a message: a crafted entry can hold megabytes."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# meta["progress"]: every field a resumed run depends on (trainer.Progress), its type and range
PROGRESS_FIELDS = {
    "step": ("an integer >= 0", lambda v: _is_int(v) and v >= 0),
    "epoch": ("an integer >= 0", lambda v: _is_int(v) and v >= 0),
    "batch": ("an integer >= 0", lambda v: _is_int(v) and v >= 0),
    "tokens": ("an integer >= 0", lambda v: _is_int(v) and v >= 0),
    "lr": ("a finite number >= 0", lambda v: _is_number(v) and math.isfinite(v) and v >= 0),
    "best_loss": ("a number >= 0 (inf before the first validation)", lambda v: _is_number(v) and v >= 0),
    "nonfinite_skipped": ("an integer >= 0", lambda v: _is_int(v) and v >= 0),
    "nonfinite_run": ("an integer >= 0", lambda v: _is_int(v) and v >= 0),
    "clipped": ("an integer >= 0", lambda v: _is_int(v) and v >= 0),
    "wall": ("a finite number >= 0", lambda v: _is_number(v) and math.isfinite(v) and v >= 0),
    "stopped": ("a string", lambda v: isinstance(v, str)),
    "log_loss": ("a finite number >= 0", lambda v: _is_number(v) and math.isfinite(v) and v >= 0),
    "log_count": ("a finite number >= 0", lambda v: _is_number(v) and math.isfinite(v) and v >= 0),
    "k2": ("an integer >= 0", lambda v: _is_int(v) and v >= 0),
    "k2_target": ("an integer >= 0", lambda v: _is_int(v) and v >= 0),
    "avg_started": ("true or false", lambda v: isinstance(v, bool)),
    "avg_start_step": ("an integer >= 0", lambda v: _is_int(v) and v >= 0),
    "avg_count": ("an integer >= 0", lambda v: _is_int(v) and v >= 0),
    "valid_history": ("a list of numbers", lambda v: isinstance(v, list) and all(_is_number(x) for x in v)),
}
# fields newer than the format: a checkpoint written before them holds none (the default applies:
# 0, false, an empty list)
OPTIONAL_PROGRESS = ("k2", "k2_target", "avg_started", "avg_start_step", "avg_count", "valid_history")

# the optimizer slot that accumulates squared gradients (a negative value there gives NaN steps)
SQUARES = {"adagrad": "G", "rmsprop": "E", "adam": "v"}


def _check_meta(meta: dict, where: str):
    """Every meta entry the readers use, when present: type and range (format version first).
    Returns the configuration it holds (None when it holds none)."""
    cfg = None
    version = meta.get("format_version")
    if not _is_int(version) or version != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint format version {shown(version)} is not supported "
                              f"(this rnnlm reads version {FORMAT_VERSION})")

    def bad(key, value, expected):
        raise CheckpointError(f"{where}: meta entry '{key}' is {shown(value)}, expected {expected}")

    if "config" in meta:
        if not isinstance(meta["config"], dict):
            bad("config", meta["config"], "a mapping of configuration sections")
        try:
            cfg = build_config(meta["config"])
        except ConfigError as exc:
            raise CheckpointError(f"{where} holds an unreadable configuration: {exc}") from None
    vocab_size = meta.get("vocab_size")
    if "vocab_size" in meta and not (_is_int(vocab_size) and vocab_size >= 1):
        bad("vocab_size", vocab_size, "a positive integer")
    if meta.get("vocab_sha256") is not None and not isinstance(meta["vocab_sha256"], str):
        bad("vocab_sha256", meta["vocab_sha256"], "a sha256 hex string")
    if "has_state" in meta and not isinstance(meta["has_state"], bool):
        bad("has_state", meta["has_state"], "true or false")
    bounds = meta.get("class_bounds")
    if bounds is not None:
        if not (isinstance(bounds, list) and len(bounds) >= 2 and all(_is_int(b) for b in bounds)):
            bad("class_bounds", bounds, "null or a list of at least 2 integer word ids")
        if bounds[0] != 0 or any(b >= c for b, c in zip(bounds, bounds[1:])) or (
                _is_int(vocab_size) and bounds[-1] != vocab_size):
            bad("class_bounds", bounds, f"word ids increasing from 0 to the vocabulary size ({shown(vocab_size)})")
    if "progress" in meta:
        progress = meta["progress"]
        if not isinstance(progress, dict):
            bad("progress", progress, "a mapping")
        missing = [k for k in PROGRESS_FIELDS if k not in progress and k not in OPTIONAL_PROGRESS]
        extra = [k for k in progress if k not in PROGRESS_FIELDS]
        if missing or extra:
            raise CheckpointError(f"{where}: meta entry 'progress' "
                                  + (f"lacks {', '.join(missing)}" if missing else "")
                                  + ("; " if missing and extra else "")
                                  + (f"has unknown fields {shown(', '.join(map(str, extra)))}" if extra else ""))
        for key, (expected, ok) in PROGRESS_FIELDS.items():
            if key in progress and not ok(progress[key]):
                bad(f"progress.{key}", progress[key], expected)
    return cfg


def _check_arrays(params: dict, optim: dict, state: tuple, meta: dict, cfg, where: str) -> None:
    """Parameters, optimizer slots and the carried state: numeric and finite; the embedding has
    vocab_size rows; class_bounds are there exactly when the configuration says softmax=class
    (other classes would silently score other words); each optimizer slot `<slot>/<name>`
    shaped like parameter <name>."""
    if not params:
        raise CheckpointError(f"{where} holds no parameters")
    for name, value in params.items():
        _check_float(value, f"parameter {name}", where)
    emb = params.get("embedding")
    if "vocab_size" in meta and (emb is None or emb.ndim != 2 or emb.shape[0] != meta["vocab_size"]):
        E = f", {cfg.model.embedding_size}" if cfg is not None else ", E"
        raise CheckpointError(f"{where}: parameter embedding has shape {None if emb is None else emb.shape}, "
                              f"expected ({meta['vocab_size']}{E}) for its vocab_size")
    if cfg is not None:
        bounds = meta.get("class_bounds")
        if cfg.model.softmax == "class" and bounds is None:
            raise CheckpointError(f"{where}: meta entry 'class_bounds' is missing, but its configuration says "
                                  f"model.softmax=class")
        if cfg.model.softmax != "class" and bounds is not None:
            raise CheckpointError(f"{where}: meta entry 'class_bounds' is set, but its configuration says "
                                  f"model.softmax={cfg.model.softmax}")
    for name, value in optim.items():
        if name == "t":                          # Adam's step count
            if value.shape != () or value.dtype.kind not in "iu" or int(value) < 0:
                raise CheckpointError(f"{where}: optimizer entry t is {shown(value.tolist())} of dtype {value.dtype}, "
                                      f"expected an integer step count >= 0")
            continue
        slot, _, param = name.partition("/")
        if param not in params:
            raise CheckpointError(f"{where}: optimizer entry {shown(name)} belongs to no parameter")
        if value.dtype.kind != "f":
            raise CheckpointError(f"{where}: optimizer entry {name} has dtype {value.dtype}, expected float")
        if value.shape != params[param].shape:
            raise CheckpointError(f"{where}: optimizer entry {name} has shape {value.shape}, expected "
                                  f"{params[param].shape} (that of parameter {param})")
        _check_finite(value, f"optimizer entry {name}", where)
    for i, value in enumerate(state):
        _check_float(value, f"hidden-state entry state/{i}", where)


def _check_float(value: np.ndarray, what: str, where: str) -> None:
    """A float array whose every value is finite (CheckpointError naming `what` otherwise)."""
    if value.dtype.kind != "f":
        raise CheckpointError(f"{where}: {what} has dtype {value.dtype}, expected float")
    _check_finite(value, what, where)


def _check_finite(value: np.ndarray, what: str, where: str) -> None:
    if not np.all(np.isfinite(value)):
        raise CheckpointError(f"{where}: {what} holds non-finite values (NaN or inf)")


def _check_against_config(params: dict, optim: dict, state: tuple, meta: dict, cfg, where: str) -> None:
    """Entries the checkpoint's own configuration fixes: every float fits the training dtype (a
    float64 value beyond float32's range would become inf on the cast), the optimizer's
    accumulator of squares holds no negative value, and the carried state
    (when meta has_state) is the cell's parts, each (train.batch_size, model.hidden_size)."""
    dtype = np.dtype(cfg.train.dtype)
    top = float(np.finfo(dtype).max)
    named = [(f"parameter {k}", v) for k, v in params.items()] + [
        (f"optimizer entry {k}", v) for k, v in optim.items() if k != "t"] + [
        (f"hidden-state entry state/{i}", v) for i, v in enumerate(state)]
    for name, value in named:
        if value.size and value.dtype.itemsize > dtype.itemsize and float(np.max(np.abs(value))) > top:
            raise CheckpointError(f"{where}: {name} holds {float(np.max(np.abs(value))):.3g}, beyond the "
                                  f"{top:.3g} of {dtype} (train.dtype) it is cast to")
    squares = SQUARES.get(cfg.train.optimizer)
    for name, value in optim.items():
        if squares and name.startswith(f"{squares}/") and np.any(value < 0):
            raise CheckpointError(f"{where}: optimizer entry {name} holds negative values ({cfg.train.optimizer} "
                                  f"accumulates squares there)")
    if "has_state" not in meta:
        return
    from rnnlm_cli.nn.cells import make_cell

    parts = (len(make_cell(cfg.model.cell, 1).initial_state(1, dtype)) * cfg.model.num_layers
             if meta["has_state"] else 0)
    expected = [(cfg.train.batch_size, cfg.model.hidden_size)] * parts
    if [s.shape for s in state] != expected:
        raise CheckpointError(f"{where}: the carried hidden state has shapes {shown([s.shape for s in state])}, "
                              f"expected {expected} (has_state {str(meta['has_state']).lower()}, "
                              f"train.batch_size x model.hidden_size per part)")


def _check_rng(rng_state: dict, where: str) -> None:
    """The generator state must be one numpy accepts for the generator training uses (PCG64)."""
    try:
        if rng_state.get("bit_generator") != "PCG64":
            raise ValueError("not a PCG64 state")
        np.random.PCG64().state = rng_state
    except Exception:   # numpy raises ValueError, TypeError, KeyError, OverflowError... for a bad state
        raise CheckpointError(f"{where}: entry 'rng' is not a state of numpy's PCG64 generator") from None


def _check_raw(raw: dict, params: dict, meta: dict, where: str) -> None:
    """The raw iterate beside averaged weights: there exactly when meta's progress says an
    average is held (avg_count > 0), with param/'s names and shapes, float and finite."""
    progress = meta.get("progress") if isinstance(meta.get("progress"), dict) else {}
    averaged = progress.get("avg_count", 0) > 0
    if raw and not averaged:
        raise CheckpointError(f"{where}: raw/ entries are present, but meta progress.avg_count is "
                              f"{shown(progress.get('avg_count', 0))} (no average is held)")
    if averaged and "progress" in meta and not raw:
        raise CheckpointError(f"{where}: meta progress.avg_count is {progress['avg_count']}, but the raw/ "
                              f"entries of the raw iterate are missing")
    if raw and set(raw) != set(params):
        odd = sorted(set(raw) ^ set(params))[0]
        raise CheckpointError(f"{where}: the raw/ and param/ entries name different parameters ({shown(odd)})")
    for name, value in raw.items():
        if value.dtype.kind != "f" or value.shape != params[name].shape:
            raise CheckpointError(f"{where}: entry raw/{name} has dtype {value.dtype} and shape {value.shape}, "
                                  f"expected float {params[name].shape} (that of param/{name})")
        _check_finite(value, f"entry raw/{name}", where)


KNOWN = ("param/", "raw/", "optim/", "state/")


@dataclasses.dataclass
class Snapshot:
    """A checkpoint read back, every entry validated (unpack_all).

    params  the weights to use (averaged ones while averaging: what readers want)
    raw     the raw iterate training continues from ({} when params are it)
    optim, state, rng_state, meta: as `unpack` returns them"""

    params: dict
    raw: dict
    optim: dict
    state: tuple
    rng_state: dict | None
    meta: dict

    @property
    def iterate(self) -> dict:
        """The raw iterate: `raw`, or `params` when no average is held."""
        return self.raw or self.params


def unpack(arrays: dict[str, np.ndarray], where: str = "checkpoint") -> tuple[dict, dict, tuple, dict | None, dict]:
    """(params, optim, state, rng_state, meta) from a loaded checkpoint, every entry validated:
    the names, each array's dtype, rank and finiteness, the generator state, and every meta
    entry present (a crafted file with a recomputed checksum is refused here, naming the entry).
    Whether the entries fit a model is the reader's check (runs.py). `params` are the weights
    to use (averaged ones while averaging); `unpack_all` also returns the raw iterate."""
    s = unpack_all(arrays, where)
    return s.params, s.optim, s.state, s.rng_state, s.meta


def unpack_all(arrays: dict[str, np.ndarray], where: str = "checkpoint") -> Snapshot:
    """`unpack`, with the raw iterate (raw/ entries) as well: a Snapshot."""
    for name in arrays:
        if not (name.startswith(KNOWN) or name in ("rng", "meta")):
            raise CheckpointError(f"{where}: unknown entry {shown(name)}")
    params = {k[len("param/"):]: v for k, v in arrays.items() if k.startswith("param/")}
    raw = {k[len("raw/"):]: v for k, v in arrays.items() if k.startswith("raw/")}
    optim = {k[len("optim/"):]: v for k, v in arrays.items() if k.startswith("optim/")}
    n_state = sum(1 for k in arrays if k.startswith("state/"))
    if any(f"state/{i}" not in arrays for i in range(n_state)):
        raise CheckpointError(f"{where}: the hidden-state entries are not numbered 0..{n_state - 1}")
    state = tuple(arrays[f"state/{i}"] for i in range(n_state))
    meta = _json_entry(arrays, "meta", where)
    cfg = _check_meta(meta, where)
    rng_state = _json_entry(arrays, "rng", where) if "rng" in arrays else None
    if rng_state is not None:
        _check_rng(rng_state, where)
    _check_arrays(params, optim, state, meta, cfg, where)
    _check_raw(raw, params, meta, where)
    if cfg is not None:
        _check_against_config({**params, **{f"raw/{k}": v for k, v in raw.items()}}, optim, state, meta, cfg, where)
    return Snapshot(params, raw, optim, state, rng_state, meta)


def read(path: str) -> tuple[dict, dict, tuple, dict | None, dict]:
    """load + unpack."""
    return unpack(load(path), f"checkpoint {path}")


def read_all(path: str) -> Snapshot:
    """load + unpack_all: what resuming and rolling back read (the raw iterate too)."""
    return unpack_all(load(path), f"checkpoint {path}")
