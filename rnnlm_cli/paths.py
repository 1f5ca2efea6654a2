"""What a command reads and what it writes, and the one rule between them.

The rule (`check_paths`): an output may not be, contain, or sit inside an input or another
output of the same command, unless the tool owns it. Every command calls it with its inputs
(config files, corpora, prepared-data folders and checkpoints it reads, text files it
evaluates, probe data, result records) and its outputs (the prepared folder, train.out,
--record, --per-token, --plot, ...) before any work, and a breach is a ConfigError (exit 2):
one line naming both paths. Paths are compared after os.path.realpath, and existing files also
by device and inode, so a symlink, a hard link, `..` or `.` cannot dodge the rule.

"Unless the tool owns it": an output folder may declare the files the tool itself keeps in it
(a run folder's config.yaml and checkpoint.npz); reading one of those is not a breach
(`train --config RUN/config.yaml --out RUN --resume`).

Folders the tool owns (`folder_kind`):
  prepared   a prepared-data folder: its meta.json, written by preprocess, carries the format
             marker (`"format": "rnnlm prepared data"`; folders of earlier versions: a
             format_version and the sources). Its own files: PREPARED_FILES.
  run        a training run's folder: it holds one of checkpoint.npz, best.npz, metrics.jsonl,
             summary.json or train.lock. Its own files: RUN_FILES.
So an output also may not be one of the own files of a folder the tool owns (`--plot
prep/vocab.txt`), a run's output folder may not be a prepared-data folder, a prepared-data
output may not be a run folder, and a prepared-data folder, which is replaced whole when it is
rebuilt, may not be or contain the current folder.
"""

from __future__ import annotations

import json
import os
import stat
from typing import Iterable, NamedTuple

from rnnlm_cli.errors import ConfigError

PREPARED_MARKER = "rnnlm prepared data"
PREPARED_FILES = ("vocab.txt", "train.npy", "valid.npy", "test.npy", "meta.json", "config.yaml")
RUN_MARKERS = ("checkpoint.npz", "best.npz", "metrics.jsonl", "summary.json", "train.lock")
RUN_FILES = RUN_MARKERS + ("config.yaml",)
OWN_FILES = {"prepared": PREPARED_FILES, "run": RUN_FILES}
KIND_NAMES = {"prepared": "prepared-data folder", "run": "training run folder", "corpus": "corpus folder"}

_SHOWN = 200          # characters of a path shown in a message


class In(NamedTuple):
    """A path a command reads; `label` names it in messages ("checkpoint", "config file").
    kind: "file" or "folder". An input that is missing or of the other kind is left to the
    command's own checks (nothing is there to protect, and its message says more)."""

    label: str
    path: str
    kind: str = "file"


class Out(NamedTuple):
    """A path a command writes. kind: "file", "run" (a training run's folder), "prepared" (a
    prepared-data folder, replaced whole) or "corpus" (a folder of generated files, `owns`:
    written into a new or empty folder, or over an earlier such corpus, never among other files). owns: names of the tool's own files inside an output
    folder, which the command may also read."""

    label: str
    path: str
    kind: str = "file"
    owns: tuple[str, ...] = ()


def shown(path) -> str:
    """A path as a message shows it: as given, cut in the middle when very long."""
    text = os.fspath(path) if isinstance(path, os.PathLike) else str(path)
    if len(text) <= _SHOWN:
        return text
    half = (_SHOWN - 3) // 2
    return f"{text[:half]}...{text[-half:]}"


def brief_name(name: str) -> str:
    """A file name for a message, cut when absurdly long."""
    return name if len(name) <= 60 else f"{name[:57]}..."


def _real(path: str) -> str:
    return os.path.realpath(os.path.abspath(os.fspath(path)))


def _stat(path: str):
    try:
        return os.stat(path)
    except (OSError, ValueError):
        return None


def _relation(a: str, b: str) -> str | None:
    """How path a stands to path b: 'is', 'inside', 'contains' or None (both real paths)."""
    if a == b:
        return "is"
    if os.path.commonpath([a, b]) == b:
        return "inside"
    if os.path.commonpath([a, b]) == a:
        return "contains"
    return None


def _same_file(a: str, b: str) -> bool:
    sa, sb = _stat(a), _stat(b)
    return sa is not None and sb is not None and (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def _breach(out: Out, rel: str, other_label: str, other_path: str) -> ConfigError:
    words = {"is": "is also", "inside": "is inside", "contains": "contains"}[rel]
    return ConfigError(f"{out.label} {shown(out.path)} {words} the {other_label} {shown(other_path)}; "
                       f"choose another path")


def check_paths(inputs: Iterable[In], outputs: Iterable[Out]) -> None:
    """Refuse (ConfigError, exit 2) an output that is, contains or sits inside an input or
    another output, or that would write over what the tool owns elsewhere (see the module
    docstring). Inputs or outputs given as None or with an empty path are skipped, and so are inputs
    that do not exist as the kind of thing they should be."""
    inputs = [i for i in inputs if i is not None and i.path
              and (os.path.isdir(i.path) if i.kind == "folder" else os.path.isfile(i.path))]
    outputs = [o for o in outputs if o is not None and o.path]
    real_out = [_real(o.path) for o in outputs]
    for n, (out, real) in enumerate(zip(outputs, real_out)):
        owned = {os.path.join(real, name) for name in out.owns}
        for inp in inputs:
            other = _real(inp.path)
            if other in owned:
                continue
            rel = _relation(real, other) or ("is" if _same_file(real, other) else None)
            if rel:
                raise _breach(out, rel, inp.label, inp.path)
        _check_owned(out, real)
    for n, (out, real) in enumerate(zip(outputs, real_out)):
        for other_out, other in zip(outputs[n + 1:], real_out[n + 1:]):
            rel = _relation(real, other) or ("is" if _same_file(real, other) else None)
            if rel == "contains":            # said from the inner one: "X is inside Y"
                raise _breach(other_out, "inside", out.label, out.path)
            if rel:
                raise _breach(out, rel, other_out.label, other_out.path)


def special_kind(path) -> str | None:
    """What an existing path that is neither a regular file nor a folder is ("a character
    device", "a FIFO", ...), following symlinks; None for a regular file, a folder or nothing."""
    st = _stat(path)
    if st is None or stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode):
        return None
    for test, name in ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket")):
        if test(st.st_mode):
            return name
    return "not a regular file"


def _check_owned(out: Out, real: str) -> None:
    """An output may not write over what the tool keeps in a folder it owns, nor be a device,
    FIFO or socket (a file is written to a temporary name and renamed into place, which would
    replace /dev/null itself, not write into it)."""
    special = special_kind(out.path)      # through a link too: /dev/stdout -> /proc/self/fd/1 -> a pipe
    if special:
        raise ConfigError(f"{out.label} {shown(out.path)} is {special}, not a regular file; rnnlm writes "
                          f"its outputs to files (a temporary file renamed into place): choose a file path")
    if out.kind == "file":
        parent, name = os.path.split(real)
        kind = folder_kind(parent)
        if kind and name in OWN_FILES[kind]:
            raise ConfigError(f"{out.label} {shown(out.path)} is the {name} of the {KIND_NAMES[kind]} "
                              f"{shown(parent)}; choose another path")
        return
    kind = folder_kind(real)
    if out.kind == "corpus" and os.path.isdir(real):
        # a generated corpus replaces only an earlier one: its own files and nothing else
        found = sorted(n for n in os.listdir(real) if not (n.startswith(".") and n.endswith(".tmp")))
        if found and found != sorted(out.owns):
            others = [n for n in found if n not in out.owns] or found
            raise ConfigError(f"{out.label} {shown(out.path)} holds files this command did not write "
                              f"({', '.join(brief_name(n) for n in others[:3])}{', ...' if len(others) > 3 else ''}); "
                              f"it writes into a new or empty folder, or over an earlier corpus "
                              f"({', '.join(out.owns)} and nothing else): choose another folder")
    if kind and kind != out.kind:
        raise ConfigError(f"{out.label} {shown(out.path)} is a {KIND_NAMES[kind]}, "
                          f"not a {KIND_NAMES[out.kind]}; choose another path")
    if out.kind == "prepared":
        here = _real(os.getcwd())
        if _relation(here, real) in ("is", "inside"):
            raise ConfigError(f"{out.label} {shown(out.path)} is replaced whole when it is rebuilt, and it "
                              f"holds the current folder; choose another path")


def data_inputs(data, with_prepared: bool) -> list[In]:
    """The inputs of a configuration's data section (a config.DataConfig): the corpora it names,
    and its prepared-data folder `with_prepared` (not when the command builds that folder)."""
    labels = (("train", "training file"), ("valid", "validation file"), ("test", "test file"))
    found = [In(label, getattr(data, key)) for key, label in labels if getattr(data, key, None)]
    return found + ([In("prepared-data folder", data.prepared, "folder")] if with_prepared else [])


# --------------------------------------------------------------------------- folders the tool owns

def _read_small_json(path: str, limit: int = 1 << 24):
    try:
        if os.path.getsize(path) > limit:
            return None
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def is_prepared_folder(folder) -> bool:
    """Whether `folder` is a prepared-data folder written by preprocess (its meta.json)."""
    meta = _read_small_json(os.path.join(folder, "meta.json"))
    if not isinstance(meta, dict):
        return False
    if meta.get("format") == PREPARED_MARKER:
        return True
    return isinstance(meta.get("format_version"), int) and "sources" in meta and "vocab_size" in meta


def is_run_folder(folder) -> bool:
    """Whether `folder` holds (part of) a training run."""
    return any(os.path.isfile(os.path.join(folder, name)) for name in RUN_MARKERS)


def folder_kind(folder) -> str | None:
    """'prepared', 'run' or None (not a folder the tool owns, or no folder)."""
    if not os.path.isdir(folder):
        return None
    if is_prepared_folder(folder):
        return "prepared"
    if is_run_folder(folder):
        return "run"
    return None
