"""Command-line interface: a thin Click layer.

Each command: parse options -> load the configuration -> call one library function -> render.
Library errors (`RnnlmError`) become one `Error: ...` line on stderr and the error's exit code
(2 usage/configuration, 1 data/runtime); `--debug` shows the traceback instead.

One module per command family; this one builds the group and adds them.
"""

from __future__ import annotations

import sys

import click

from rnnlm_cli import __version__
from rnnlm_cli.cli.common import CONTEXT_SETTINGS, DEBUG_HELP, add_shared_options
from rnnlm_cli.cli.config_cmd import config
from rnnlm_cli.cli.corpus_cmd import corpus
from rnnlm_cli.cli.diagnose_cmd import diagnose_gradients_cmd
from rnnlm_cli.cli.gradcheck_cmd import gradcheck_cmd
from rnnlm_cli.cli.preprocess_cmd import preprocess_cmd
from rnnlm_cli.cli.probe_cmd import probe_cmd, probe_horizons_cmd
from rnnlm_cli.cli.read_cmds import evaluate_cmd, generate_cmd
from rnnlm_cli.cli.results_cmd import results_cmd
from rnnlm_cli.cli.train_cmd import train_cmd
from rnnlm_cli.errors import RnnlmError


class RnnlmGroup(click.Group):
    """A Click group that turns every library error into one line and an exit code."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            # one line, like every other mistake; the hint names the help command
            if exc.ctx is not None and exc.ctx.command is not self:
                hint = f" (see '{exc.ctx.command_path} -h')"
            else:
                hint = " (see 'rnnlm -h')"
            click.echo(f"Error: {_one_line(exc.format_message())}{hint}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("Error: interrupted", err=True)
            sys.exit(130)
        except RnnlmError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"Error: {_one_line(str(exc))}", err=True)
            sys.exit(exc.exit_code)
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
                diagnose_gradients_cmd, probe_cmd, probe_horizons_cmd, results_cmd, corpus):
    cli.add_command(command)
add_shared_options(cli)   # --debug after the subcommand too, and -q/--quiet on every command


def main() -> None:
    cli(prog_name="rnnlm")
