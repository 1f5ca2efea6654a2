"""Writing files whole or not at all, and reading JSON-lines logs.

atomic_write(path, write)  the one way this tool writes a file it owns: `write(fh)` fills a
                           temporary sibling (binary), which is flushed, fsync'ed and renamed
                           over `path`, and the folder is fsync'ed so the rename itself lasts;
                           on any failure (an exception, a full disk, a signal turned into an
                           exception) the temporary file is removed and `path` keeps its
                           previous content. The file gets the permissions `open()` would give
                           it (0666 less the umask). Temporary names start with `.` and end with
                           `.tmp`, so a folder's owner can recognise leftovers of a killed
                           process (`is_temporary`). A symlink is written through (the
                           file it names is replaced, never the link). A path that is a
                           device, FIFO or socket is refused, since the rename would replace
                           the device node itself (`--per-token /dev/null` run as root).
                           A failure to write raises WriteError: one message naming the file
                           and the reason ("cannot write F: No space left on device"); it is a
                           DataError (exit 1) and an OSError (errno, strerror) at once.
atomic_write_text / atomic_write_json  the same for text and for a JSON document (strict JSON:
                           a NaN or infinity is written as null, see values.jsonable).
read_jsonl(path, strict)   the entries of a JSON-lines file with their line numbers and text.
make_folders(folder)       create a folder and its missing parents, and say which were created,
                           so that a command that fails afterwards (or halfway, on a name too
                           long) removes them again (remove_folders): nothing is left behind.

Crash points (for the crash tests only). With the environment variable RNNLM_FAULT set to
`<point>` or `<point>@<n>`, the process kills itself with SIGKILL the n-th time (default: the
first) it reaches that point, as a power cut or `kill -9` would, so a test can stop a run at
a chosen moment and check what a resume makes of it. The points:

  before-rename:<name>   a file (atomic_write) or the prepared-data folder (preprocess) named
                         <name> is complete under its temporary name, not yet renamed
  after-rename:<name>    right after that rename
  mid-line:<name>        half of a line appended to the JSON-lines log <name> is written
                         and flushed (metrics.jsonl)

With RNNLM_FAULT_SIGNAL=TERM (or INT) the process sends itself that signal instead, to test
how a command cleans up after SIGTERM (or SIGINT) at that moment.

Unset, as in every normal run, `crash_point` is a dictionary lookup that does nothing.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import tempfile
from typing import Callable, IO, Iterator, NamedTuple

from rnnlm_cli.errors import DataError
from rnnlm_cli.paths import shown, special_kind
from rnnlm_cli.values import jsonable

TMP_PREFIX = "."
TMP_SUFFIX = ".tmp"
FAULT_ENV = "RNNLM_FAULT"
FAULT_SIGNAL_ENV = "RNNLM_FAULT_SIGNAL"

_faults: dict[str, int] | None = None    # point -> how many more times it is reached before the kill


def crash_point(point: str, before: Callable[[], object] | None = None) -> None:
    """SIGKILL this process here (or send it RNNLM_FAULT_SIGNAL) when RNNLM_FAULT names `point`
    and its count is reached; `before()` runs just before (e.g. to leave half a line behind).
    Tests only."""
    global _faults
    if _faults is None:
        _faults = _read_faults(os.environ.get(FAULT_ENV, ""))
    if point not in _faults:
        return
    _faults[point] -= 1
    if _faults[point] == 0:
        if before is not None:
            before()
        name = os.environ.get(FAULT_SIGNAL_ENV, "KILL").upper().removeprefix("SIG")
        os.kill(os.getpid(), getattr(signal, f"SIG{name}", signal.SIGKILL))


def _read_faults(text: str) -> dict[str, int]:
    """'after-rename:checkpoint.npz@3' -> {'after-rename:checkpoint.npz': 3}; '' -> {}."""
    if not text:
        return {}
    point, _, count = text.rpartition("@") if "@" in text else (text, "", "1")
    return {point: int(count)}


class WriteError(DataError, OSError):
    """A file that could not be written (full disk, file-size limit, read-only folder, ...)."""

    def __init__(self, path, exc: BaseException):
        errno_ = getattr(exc, "errno", None)
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        OSError.__init__(self, errno_, reason, os.fspath(path))

    def __str__(self) -> str:
        return f"cannot write {shown(self.filename)}: {self.strerror}"


def is_temporary(name: str) -> bool:
    """True for the name of a temporary file left by an interrupted atomic write."""
    return name.startswith(TMP_PREFIX) and name.endswith(TMP_SUFFIX)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fsync_folder(folder: str) -> None:
    """Make the renames inside `folder` durable (where the filesystem allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def make_folders(folder: str | os.PathLike) -> list[str]:
    """Create `folder` and its missing parents; the folders created, deepest first. On a
    failure halfway (a path too long, a read-only parent) the ones created are removed again
    before the OSError is raised."""
    missing = []
    probe = os.path.abspath(os.fspath(folder))
    while not os.path.lexists(probe):
        missing.append(probe)
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    created: list[str] = []
    try:
        for path in reversed(missing):
            os.mkdir(path)
            created.insert(0, path)
    except BaseException:
        remove_folders(created)
        raise
    return created


def remove_folders(created: list[str]) -> None:
    """Remove the folders make_folders created (deepest first), where they are empty."""
    for path in created:
        try:
            os.rmdir(path)
        except OSError:
            pass


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> None:
    """Write `path` whole or not at all: write(fh) into a temporary sibling, fsync, rename."""
    path = os.fspath(path)
    special = special_kind(path)
    if special:                     # a rename over /dev/null would replace the device itself
        raise WriteError(path, OSError(errno.EINVAL, f"{special}, not a regular file"))
    if os.path.islink(path):        # write through a symlink (as `>` does): never replace the link itself
        path = os.path.realpath(path)
    folder = os.path.dirname(os.path.abspath(path))
    name = os.path.basename(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{name}-", suffix=TMP_SUFFIX, dir=folder)
    except OSError as exc:
        raise WriteError(path, exc) from None
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        crash_point(f"before-rename:{name}")
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError) and not isinstance(exc, WriteError):
            raise WriteError(path, exc) from None
        raise
    fsync_folder(folder)
    crash_point(f"after-rename:{name}")


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """`text` as UTF-8, byte for byte (no newline translation)."""
    atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))


def atomic_write_json(path: str | os.PathLike, obj, indent: int | None = 2) -> None:
    """A JSON document, strict: NaN and infinities are written as null (never as the bare words
    NaN/Infinity that JSON parsers refuse), numpy values as Python ones."""
    text = json.dumps(jsonable(obj), indent=indent, allow_nan=False) + "\n"
    atomic_write_text(path, text)


class JsonLine(NamedTuple):
    number: int      # 1-based line number in the file
    text: str        # the line as written (with its newline, when it has one)
    entry: dict


def read_jsonl(path: str | os.PathLike, strict: bool = False) -> Iterator[JsonLine]:
    """The JSON objects of a JSON-lines file, one per line; blank lines are skipped.

    strict=False (a log that may be in the middle of being written, or was cut by a kill): a
    line that does not parse ends the reading (the torn last line) and lines that are not
    objects are skipped. strict=True: either is a DataError naming the file and the line.
    A file that is not UTF-8 or cannot be read is a DataError too.
    """
    try:
        with open(path, encoding="utf-8") as fh:
            for number, text in enumerate(fh, 1):
                if not text.strip():
                    continue
                try:
                    entry = json.loads(text)
                except ValueError as exc:
                    if strict:
                        raise DataError(f"{path}, line {number}: not valid JSON ({exc.msg})") from None
                    return
                if isinstance(entry, dict):
                    yield JsonLine(number, text, entry)
                elif strict:
                    raise DataError(f"{path}, line {number}: expected a JSON object")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
