"""Writing files whole or not at all, and reading JSON-lines logs.

atomic_write(path, write)  the one way this tool writes a file it owns: `write(fh)` fills a
                           temporary sibling (binary), which is flushed, fsync'ed and renamed
                           over `path`; on any failure (an exception, a full disk, a signal
                           turned into an exception) the temporary file is removed and `path`
                           keeps its previous content. Temporary names start with `.` and end
                           with `.tmp`, so a folder's owner can recognise leftovers of a killed
                           process (`is_temporary`).
atomic_write_text / atomic_write_json  the same for text and for a JSON document.
read_jsonl(path)           the entries of a JSON-lines file, stopping at a torn last line.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Callable, IO, Iterator

TMP_PREFIX = "."
TMP_SUFFIX = ".tmp"


def is_temporary(name: str) -> bool:
    """True for the name of a temporary file left by an interrupted atomic write."""
    return name.startswith(TMP_PREFIX) and name.endswith(TMP_SUFFIX)


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> None:
    """Write `path` whole or not at all: write(fh) into a temporary sibling, fsync, rename."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{os.path.basename(path)}-", suffix=TMP_SUFFIX, dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))


def atomic_write_json(path: str | os.PathLike, obj, indent: int | None = 2) -> None:
    """A JSON document (strict: NaN and infinities are refused, not written as bare words)."""
    text = json.dumps(obj, indent=indent, allow_nan=False) + "\n"
    atomic_write_text(path, text)


def read_jsonl(path: str | os.PathLike) -> Iterator[dict]:
    """The JSON objects of a JSON-lines file, one per line; a line that does not parse ends the
    reading (the torn last line of a killed writer). Lines that are not objects are skipped."""
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                return
            if isinstance(entry, dict):
                yield entry
