"""Checkpoints: one `.npz` of plain arrays, written atomically, verified by a checksum on load.

Layout (every entry loads with `numpy.load(path, allow_pickle=False)`):
  param/<name>      model parameters (names in model.py: embedding, cell.W_x, cell.W_h, ...)
  optim/<name>      optimizer state arrays (e.g. optim/m/cell.W_h for Adam's first moment)
  state/<i>         the hidden state carried between chunks (h, then c for the LSTM)
  rng               the random generator's state, as JSON text
  meta              JSON text: format version, step, epoch, lr, schedule state, data position,
                    the resolved configuration and the vocabulary checksum
  checksum          sha256 over every other entry (name, dtype, shape, bytes)

Writing: `fileio.atomic_write` (a temporary file in the same folder, flushed and fsync'ed,
then renamed over the target), so a crash or a full disk leaves the previous checkpoint intact.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile

import numpy as np

from rnnlm_cli import fileio
from rnnlm_cli.errors import CheckpointError

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


def pack(params: dict, optim: dict, state: tuple, rng: np.random.Generator | None, meta: dict) -> dict:
    """Flatten everything a checkpoint holds into named arrays."""
    arrays = {f"param/{k}": v for k, v in params.items()}
    arrays.update({f"optim/{k}": v for k, v in optim.items()})
    arrays.update({f"state/{i}": s for i, s in enumerate(state)})
    if rng is not None:
        arrays["rng"] = _text(json.dumps(rng.bit_generator.state))
    arrays["meta"] = _text(json.dumps({"format_version": FORMAT_VERSION, **meta}))
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
    except ValueError:
        raise CheckpointError(f"{where}: entry '{name}' is not valid JSON") from None
    if not isinstance(doc, dict):
        raise CheckpointError(f"{where}: entry '{name}' is not a JSON object")
    return doc


def unpack(arrays: dict[str, np.ndarray], where: str = "checkpoint") -> tuple[dict, dict, tuple, dict | None, dict]:
    """(params, optim, state, rng_state, meta) from a loaded checkpoint."""
    params = {k[len("param/"):]: v for k, v in arrays.items() if k.startswith("param/")}
    optim = {k[len("optim/"):]: v for k, v in arrays.items() if k.startswith("optim/")}
    n_state = sum(1 for k in arrays if k.startswith("state/"))
    if any(f"state/{i}" not in arrays for i in range(n_state)):
        raise CheckpointError(f"{where}: the hidden-state entries are not numbered 0..{n_state - 1}")
    state = tuple(arrays[f"state/{i}"] for i in range(n_state))
    rng_state = _json_entry(arrays, "rng", where) if "rng" in arrays else None
    meta = _json_entry(arrays, "meta", where)
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint format version {meta.get('format_version')} is not supported "
                              f"(this rnnlm reads version {FORMAT_VERSION})")
    return params, optim, state, rng_state, meta


def read(path: str) -> tuple[dict, dict, tuple, dict | None, dict]:
    """load + unpack."""
    return unpack(load(path), f"checkpoint {path}")
