"""Command-line interface: a thin Click layer.

Each command: parse options -> load the configuration -> call one library function -> render.
Library errors (`RnnlmError`) become one `Error: ...` line on stderr and the error's exit code
(2 usage/configuration, 1 data/runtime); `--debug` shows the traceback instead.
"""

from __future__ import annotations

import functools
import json
import sys

import click

from rnnlm_cli import __version__
from rnnlm_cli.config import load_config, to_yaml
from rnnlm_cli.errors import RnnlmError

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


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
            click.echo(f"Error: {exc.format_message()}{hint}", err=True)
            sys.exit(2)
        except RnnlmError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"Error: {exc}", err=True)
            sys.exit(exc.exit_code)


def common_options(func):
    """--config FILE and repeatable --set section.key=value, shared by every command."""

    @click.option("--config", "config_path", type=click.Path(), default=None,
                  help="YAML configuration file (defaults are built in).")
    @click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
                  help="Override one configuration key (repeatable); the value is a YAML scalar.")
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        return func(*args, **kwargs)

    return wrapper


def format_option(choices=("table", "json")):
    """--format for machine-readable output on stdout."""
    return click.option("--format", "fmt", type=click.Choice(choices), default=choices[0], show_default=True,
                        help="Output format on stdout.")


def quiet_option(func):
    return click.option("--quiet", "-q", is_flag=True, help="No progress bars or log lines on stderr.")(func)


def load_cfg(config_path, overrides):
    """Load and validate the configuration (raises ConfigError, exit 2)."""
    return load_config(config_path, list(overrides))


def echo_json(obj) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=False))


@click.group(cls=RnnlmGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "--version", prog_name="rnnlm")
@click.option("--debug", is_flag=True, help="Show a traceback instead of a one-line error.")
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
    ctx.obj["debug"] = debug


# --------------------------------------------------------------------------- config

@cli.group(context_settings=CONTEXT_SETTINGS)
def config():
    """Show or validate a configuration.

    \b
    Example:
      rnnlm config show --config configs/tiny.yaml --set model.cell=lstm
      rnnlm config validate --config configs/tiny.yaml
    """


@config.command("show")
@common_options
@click.option("--comments", is_flag=True, help="Annotate every key with its meaning (this is configs/default.yaml).")
@format_option(("yaml", "json"))
def config_show(config_path, overrides, comments, fmt):
    """Print the resolved configuration (defaults, file, then --set overrides).

    \b
    Example:
      rnnlm config show --config configs/tiny.yaml --set train.lr=0.5
      rnnlm config show --comments > configs/default.yaml
    """
    cfg = load_cfg(config_path, overrides)
    if fmt == "json":
        echo_json(cfg.to_dict())
    else:
        click.echo(to_yaml(cfg, comments=comments), nl=False)


@config.command("validate")
@common_options
def config_validate(config_path, overrides):
    """Check a configuration; exit 0 if valid, 2 with one error line if not.

    \b
    Example:
      rnnlm config validate --config configs/tiny.yaml
    """
    load_cfg(config_path, overrides)
    click.echo(f"OK: {config_path or 'built-in defaults'} is a valid configuration")


# --------------------------------------------------------------------------- preprocess

@cli.command("preprocess", context_settings=CONTEXT_SETTINGS)
@common_options
@click.option("--train", "train_path", type=click.Path(), default=None, help="Training text (overrides data.train).")
@click.option("--valid", "valid_path", type=click.Path(), default=None, help="Validation text (overrides data.valid).")
@click.option("--test", "test_path", type=click.Path(), default=None, help="Test text (overrides data.test).")
@click.option("--level", type=click.Choice(("word", "char")), default=None, help="Tokenisation (overrides data.level).")
@click.option("--out", "out_dir", type=click.Path(), default=None, help="Output folder (overrides data.prepared).")
@click.option("--force", is_flag=True, help="Replace an existing, non-empty output folder.")
@quiet_option
@format_option()
def preprocess_cmd(config_path, overrides, train_path, valid_path, test_path, level, out_dir, force, quiet, fmt):
    """Tokenise a corpus, build the vocabulary and write the prepared-data folder.

    \b
    Example:
      rnnlm preprocess --config configs/tiny.yaml
      rnnlm preprocess --train ptb.train.txt --valid ptb.valid.txt --test ptb.test.txt --out data/ptb
      rnnlm preprocess --train input.txt --level char --set data.split=[0.9,0.1,0.0] --out data/shakespeare
    """
    import os
    import time

    from rnnlm_cli import corpus

    cfg = load_cfg(config_path, overrides)
    # command-line paths are relative to the current directory
    changes = {key: os.path.abspath(value) for key, value in
               (("train", train_path), ("valid", valid_path), ("test", test_path), ("prepared", out_dir))
               if value is not None}
    if level is not None:
        changes["level"] = level
    if changes:
        cfg = cfg.replace(data=changes)
    start = time.perf_counter()
    meta = corpus.preprocess(cfg.data, cfg, force=force, progress=not quiet)
    seconds = time.perf_counter() - start
    if not quiet:
        mb = sum(s["bytes"] for s in meta["sources"]) / 1e6
        click.echo(f"preprocessed {mb:.1f} MB in {seconds:.2f} s ({mb / max(seconds, 1e-9):.1f} MB/s)", err=True)
    if fmt == "json":
        echo_json(meta)
    else:
        click.echo(corpus.summary_table(meta, os.path.abspath(cfg.data.prepared)))


# --------------------------------------------------------------------------- gradcheck

@cli.command("gradcheck", context_settings=CONTEXT_SETTINGS)
@common_options
@click.option("--all", "check_all", is_flag=True, help="Every cell x every BPTT mode x tying on/off.")
@click.option("--cell", "cells", multiple=True, type=click.Choice(("tanh", "relu", "gru", "lstm")),
              help="Cell to check (repeatable; default model.cell).")
@click.option("--bptt", "modes", multiple=True, type=click.Choice(("full", "window", "stream")),
              help="BPTT mode to check (repeatable; default train.bptt).")
@click.option("--tie-weights/--no-tie-weights", "tie", default=None, help="Tied output weights (default model.tie_weights).")
@click.option("--hidden", type=click.IntRange(min=1), default=None, help="Hidden/embedding size (gradcheck.hidden_size).")
@click.option("--vocab", type=click.IntRange(min=2), default=None, help="Vocabulary size (gradcheck.vocab_size).")
@click.option("--steps", type=click.IntRange(min=1), default=None, help="Sequence length (gradcheck.steps).")
@click.option("--batch", type=click.IntRange(min=1), default=None, help="Batch size (gradcheck.batch_size).")
@click.option("--samples", type=click.IntRange(min=0), default=None,
              help="Elements checked per parameter, 0 = all (gradcheck.samples).")
@click.option("--tolerance", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Largest relative error that passes (gradcheck.tolerance).")
@format_option()
def gradcheck_cmd(config_path, overrides, check_all, cells, modes, tie, hidden, vocab, steps, batch, samples,
                  tolerance, fmt):
    """Compare analytic gradients with finite differences (float64); exit 1 if any check fails.

    \b
    Example:
      rnnlm gradcheck
      rnnlm gradcheck --all
      rnnlm gradcheck --cell lstm --bptt stream --steps 8 --format json
    """
    from rnnlm_cli.gradcheck import all_combinations, render_table, run_gradcheck

    if check_all and (cells or modes or tie is not None):
        raise click.UsageError("--all checks every cell, mode and tying; do not combine it with "
                               "--cell, --bptt or --tie-weights")
    cfg = load_cfg(config_path, overrides)
    sizes = {k: v for k, v in (("hidden_size", hidden), ("vocab_size", vocab), ("steps", steps),
                               ("batch_size", batch)) if v is not None}
    if sizes:
        cfg = cfg.replace(gradcheck=sizes)
    if check_all:
        what = all_combinations()
    else:
        what = {"cells": list(cells) or None, "modes": list(modes) or None,
                "tying": None if tie is None else [tie]}
    result = run_gradcheck(cfg, samples=samples, tolerance=tolerance, **what)
    if fmt == "json":
        echo_json(result)
    else:
        click.echo(render_table(result))
    if not result["passed"]:
        sys.exit(1)


def main() -> None:
    cli(prog_name="rnnlm")
