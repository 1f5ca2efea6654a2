"""One training run per output folder: a lock file holding the owner's PID, plus flock.

`OUT/train.lock` is created with O_CREAT|O_EXCL and holds the PID of the `rnnlm train` that
owns the folder; that process also keeps an exclusive `flock` on it for as long as it runs.
The kernel drops a flock when its process dies, however it dies (SIGKILL included), so:

  - flock held by another process                -> the folder is in use (LockError naming the PID)
  - file present, flock free                     -> stale (its owner died): taken over
  - flock unsupported by the filesystem          -> fall back to "is the PID in the file alive?"

Taking over keeps the same file (its flock is ours first) and checks afterwards that the path
still names that file, so two processes that find the same stale lock cannot both win.
The lock is released (file removed, flock dropped) on normal exit, on errors and on signals
that training handles; a SIGKILL leaves a stale file that the next run takes over. SIGINT and
SIGTERM wait while the lock is being taken or released (their handlers run after those few
system calls), so a signal never leaves a half-taken or half-released lock behind: it is handled
once the lock is either held, and released by the caller's cleanup, or gone.
`check()` asks the same question without taking anything, so a run can refuse a busy folder
before it does any work and take the lock only when it starts writing.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import signal
import threading

from rnnlm_cli.errors import DataError, TrainingError

LOCK_NAME = "train.lock"


class LockError(TrainingError):
    """The output folder is in use by another live `rnnlm train` (exit 1)."""


def pid_alive(pid: int) -> bool:
    """Whether a process with this PID exists (a zombie counts as alive)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # it exists but belongs to another user
        return True
    return True


def _read_pid(fd: int) -> int | None:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 64).decode("ascii", "replace").strip()
        return int(text) if text.isdigit() else None
    except OSError:
        return None


_DEFERRED = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def _signals_deferred():
    """Hold SIGINT and SIGTERM back inside the block: their Python handlers (which run in the main
    thread, whichever thread the signal reached) only note them, and the handler in place before
    is called for each once the block ends (so it may raise there); a signal left at its default
    action gets that action then. Outside the main thread, where handlers cannot be set, a no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    old = {}
    try:
        for signum in _DEFERRED:
            previous = signal.getsignal(signum)
            if previous is not None:          # None: a handler not set from Python, left alone
                old[signum] = signal.signal(signum, lambda n, frame: caught.append(n))
        yield
    finally:
        for signum, handler in old.items():
            signal.signal(signum, handler)
        for signum in dict.fromkeys(caught):
            handler = old[signum]
            if callable(handler):
                handler(signum, None)
            elif handler == signal.SIG_DFL:
                os.kill(os.getpid(), signum)


class RunLock:
    """RunLock(folder).acquire() -> self; .release(). `taken_over` is the stale owner's PID, if any."""

    def __init__(self, folder: str, label: str | None = None):
        self.folder = folder
        self.label = label or folder
        self.path = os.path.join(folder, LOCK_NAME)
        self.fd: int | None = None
        self.taken_over: int | None = None

    def _in_use(self, pid: int | None) -> LockError:
        who = f"PID {pid}" if pid is not None else "PID unknown"
        return LockError(f"{self.label} is in use by another rnnlm train ({who})")

    def _flock(self, fd: int, pid_in_file: int | None) -> bool:
        """True when we now hold the flock; False when another process holds it."""
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return False
            # no flock on this filesystem: trust the PID in the file
            pid = pid_in_file
            return pid is None or pid == os.getpid() or not pid_alive(pid)

    def check(self) -> None:
        """Refuse (LockError) a folder that a live process holds; write nothing, keep nothing.

        A stale lock passes (acquire takes it over later); so does a missing one."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            return                    # no lock file (or none we can read: acquire will say)
        try:
            pid = _read_pid(fd)
            if not self._flock(fd, pid):
                raise self._in_use(pid)
        finally:
            os.close(fd)              # drops the flock we may have taken for a moment

    def acquire(self) -> "RunLock":
        """Take the lock and return self, or raise holding nothing (a signal that came while it was
        being taken raises here, through its handler, after the lock is released again)."""
        try:
            with _signals_deferred():
                return self._acquire()
        except BaseException:
            self.release()
            raise

    def _acquire(self) -> "RunLock":
        if self.fd is not None:
            return self
        for _ in range(20):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o644)
            except FileExistsError:
                fd = self._open_existing()
                if fd is None:
                    continue          # it vanished meanwhile: try to create it again
            except OSError as exc:
                raise DataError(f"cannot write to output folder {self.label}: {exc.strerror}") from None
            else:
                if not self._flock(fd, None):   # someone opened our new file and locked it first
                    pid = _read_pid(fd)
                    os.close(fd)
                    raise self._in_use(pid)
            # we hold the flock: make sure the path still names this file, then write our PID
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, f"{os.getpid()}\n".encode("ascii"))
            os.fsync(fd)
            self.fd = fd
            return self
        raise self._in_use(None)

    def _open_existing(self) -> int | None:
        """An fd on the existing lock file with our flock on it (stale lock); None if it vanished.

        Raises LockError when a live process holds it.
        """
        try:
            fd = os.open(self.path, os.O_RDWR)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise DataError(f"cannot open the lock file {self.path}: {exc.strerror}") from None
        old = _read_pid(fd)
        if not self._flock(fd, old):
            os.close(fd)
            raise self._in_use(old)
        if old != os.getpid():
            self.taken_over = old
        return fd

    def release(self) -> None:
        """Remove the lock file and drop the flock (idempotent)."""
        if self.fd is None:
            return
        with _signals_deferred():
            fd, self.fd = self.fd, None
            try:
                if os.path.samestat(os.fstat(fd), os.stat(self.path)):
                    os.unlink(self.path)
            except OSError:
                pass
            finally:
                os.close(fd)

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
