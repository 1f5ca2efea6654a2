"""Command-line interface: a thin Click layer.

Each command: parse options -> load the configuration -> call one library function -> render.
Library errors (`RnnlmError`) become one `Error: ...` line on stderr and the error's exit code
(2 usage/configuration, 1 data/runtime); `--debug` shows the traceback instead. SIGINT and
SIGTERM end a command with `Error: interrupted` and 130/143 after its cleanup has run; a
standard output that cannot be written (`> /dev/full`, or closed: `>&-`) is one error line and
exit 1, and a closed pipe (`| head -1`) ends quietly with 141 (128 + SIGPIPE), as `cat` or `seq`
do. Python warnings (numpy's floating-point RuntimeWarnings) are never printed: the library
checks non-finite values itself and reports them by name.

One module per command family; this one builds the group and adds them.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import signal
import sys
import threading
import warnings

import click

from rnnlm_cli import __version__
from rnnlm_cli.cli.common import CONTEXT_SETTINGS, DEBUG_HELP, add_shared_options
from rnnlm_cli.cli.compare_cmd import compare_cmd
from rnnlm_cli.cli.config_cmd import config
from rnnlm_cli.cli.corpus_cmd import corpus
from rnnlm_cli.cli.diagnose_cmd import diagnose_gradients_cmd
from rnnlm_cli.cli.longrange_cmd import longrange_cmd
from rnnlm_cli.cli.gradcheck_cmd import gradcheck_cmd
from rnnlm_cli.cli.preprocess_cmd import preprocess_cmd
from rnnlm_cli.cli.probe_cmd import probe_cmd, probe_horizons_cmd
from rnnlm_cli.cli.read_cmds import evaluate_cmd, generate_cmd
from rnnlm_cli.cli.results_cmd import results_cmd
from rnnlm_cli.cli.sweep_cmd import sweep_cmd
from rnnlm_cli.cli.train_cmd import train_cmd
from rnnlm_cli.cli.tune_cmd import tune_cmd
from rnnlm_cli.errors import RnnlmError


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, like SIGINT's KeyboardInterrupt, so every `finally`
    and cleanup runs (a temporary folder or file is removed) before the exit with 143."""


def _on_sigterm(signum, frame):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)     # a second SIGTERM must not cut the cleanup short
    raise Terminated()


@contextlib.contextmanager
def _signals():
    """While a command runs: SIGTERM becomes an exception (see Terminated), and SIGXFSZ is
    ignored so that a write past the file-size limit (ulimit -f) fails with EFBIG, which the
    command reports, instead of killing the process. Restored afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {signal.SIGTERM: signal.signal(signal.SIGTERM, _on_sigterm)}
    if hasattr(signal, "SIGXFSZ"):
        old[signal.SIGXFSZ] = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    try:
        yield
    finally:
        for signum, handler in old.items():
            signal.signal(signum, handler)


def _flush_stdout() -> None:
    sys.stdout.flush()


def _from_stdout(exc: OSError) -> bool:
    """Whether an OSError was raised writing to standard output (a full device, a closed pipe):
    by click.echo without err=True, or by the last flush."""
    tb = exc.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_code is _flush_stdout.__code__:
            return True
        if frame.f_code is click.utils.echo.__code__ and not frame.f_locals.get("err"):
            return True
        tb = tb.tb_next
    return False


def _silence_stdout() -> None:
    """Point file descriptor 1 at /dev/null so that the interpreter's last flush of the unwritten
    output does not fail again at exit."""
    try:
        fd = sys.stdout.fileno()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        pass


EXIT_SIGPIPE = 128 + 13


class _ClosedStdout(io.TextIOBase):
    """Standard output when file descriptor 1 was closed (`rnnlm ... >&-`): Python sets
    sys.stdout to None and output would vanish silently; writing here fails like a write to a
    closed descriptor, and is reported as one error line."""

    encoding = "utf-8"

    def writable(self) -> bool:
        return True

    def write(self, text) -> int:
        raise OSError(errno.EBADF, os.strerror(errno.EBADF))


def _guard_closed_stdout() -> None:
    """With descriptor 1 closed, point it at /dev/null (so that no file this command opens gets
    descriptor 1 and receives printed output) and make writes to sys.stdout fail (_ClosedStdout)."""
    if sys.stdout is not None:
        return
    try:
        fd = os.open(os.devnull, os.O_WRONLY)
        if fd != 1:
            os.dup2(fd, 1)
            os.close(fd)
    except OSError:
        pass
    sys.stdout = _ClosedStdout()


class RnnlmGroup(click.Group):
    """A Click group that turns every library error into one line and an exit code."""

    def invoke(self, ctx):
        try:
            with _signals(), warnings.catch_warnings():
                warnings.simplefilter("ignore")     # NaN/inf are checked and named by the library itself
                result = super().invoke(ctx)
                _flush_stdout()
            return result
        except click.UsageError as exc:
            # one line, like every other mistake; the hint names the help command
            if exc.ctx is not None and exc.ctx.command is not self:
                hint = f" (see '{exc.ctx.command_path} -h')"
            else:
                hint = " (see 'rnnlm -h')"
            click.echo(f"Error: {_one_line(exc.format_message())}{hint}", err=True)
            sys.exit(2)
        except Terminated:
            click.echo("Error: interrupted (SIGTERM)", err=True)
            sys.exit(143)
        except KeyboardInterrupt:
            click.echo("Error: interrupted", err=True)
            sys.exit(130)
        except RnnlmError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"Error: {_one_line(str(exc))}", err=True)
            sys.exit(exc.exit_code)
        except OSError as exc:       # printing the result failed: stdout is a full device or a closed pipe
            if not _from_stdout(exc) or (ctx.obj and ctx.obj.get("debug")):
                raise
            _silence_stdout()
            if exc.errno == errno.EPIPE:     # the reader has gone (`| head -1`): end quietly, as cat does
                sys.exit(EXIT_SIGPIPE)
            click.echo(f"Error: cannot write to standard output: {exc.strerror or exc}", err=True)
            sys.exit(1)
        except MemoryError as exc:   # e.g. a hidden_size typo with three zeros too many
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"Error: out of memory: {_one_line(str(exc)) or 'allocation failed'} "
                       f"(reduce the model or batch sizes)", err=True)
            sys.exit(1)


MAX_MESSAGE = 1000   # a message longer than this echoes something unbounded: cut it, the start says what


def _one_line(message: str) -> str:
    """An error message as one line: a newline or CR inside it (a key, a path) is shown escaped,
    and a message that would flood the terminal is cut (values in messages are bounded where they
    are written, with errors.brief; this is the backstop)."""
    message = message.replace("\r", "\\r").replace("\n", "\\n")
    if len(message) > MAX_MESSAGE:
        message = f"{message[:MAX_MESSAGE]}... ({len(message):,} characters)"
    return message


@click.group(cls=RnnlmGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "--version", prog_name="rnnlm")
@click.option("--debug", is_flag=True, help=DEBUG_HELP)
@click.pass_context
def cli(ctx, debug):
    """Train recurrent neural network language models in numpy, and measure what
    backpropagation through time does to their gradients.

    \b
    Example:
      rnnlm preprocess --config configs/tiny.yaml
      rnnlm train --config configs/tiny.yaml
      rnnlm diagnose-gradients --config configs/tiny.yaml
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug or ctx.obj.get("debug", False)


for command in (config, preprocess_cmd, train_cmd, evaluate_cmd, generate_cmd, gradcheck_cmd,
                diagnose_gradients_cmd, probe_cmd, probe_horizons_cmd, results_cmd, sweep_cmd, tune_cmd, compare_cmd,
                corpus, longrange_cmd):
    cli.add_command(command)
add_shared_options(cli)   # --debug after the subcommand too, and -q/--quiet on every command


def main() -> None:
    _guard_closed_stdout()
    cli(prog_name="rnnlm")
