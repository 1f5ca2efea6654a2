"""rnnlm gradcheck."""

from __future__ import annotations

import sys

import click

from rnnlm_cli.cli.common import CONTEXT_SETTINGS, common_options, emit, format_option, given, key_option
from rnnlm_cli.config import check_gradcheck_memory, load_config
from rnnlm_cli.nn.cells import CELLS
from rnnlm_cli.train.step import MODES


# --------------------------------------------------------------------------- gradcheck

@click.command("gradcheck", context_settings=CONTEXT_SETTINGS)
@common_options
@click.option("--all", "check_all", is_flag=True,
              help="One and two layers x every cell x every BPTT mode x tying on/off x both softmaxes.")
@click.option("--layers", "layers", multiple=True, type=click.IntRange(min=1),
              help="Stacked layers of the checked model (repeatable; default model.num_layers).")
@click.option("--cell", "cells", multiple=True, type=click.Choice(tuple(CELLS)),
              help="Cell to check (repeatable; default model.cell).")
@click.option("--bptt", "modes", multiple=True, type=click.Choice(tuple(MODES)),
              help="BPTT mode to check (repeatable; default train.bptt).")
@click.option("--tie-weights/--no-tie-weights", "tie", default=None, help="Tied output weights (default model.tie_weights).")
@key_option("--hidden", key="gradcheck.hidden_size", help="Hidden/embedding size")
@key_option("--vocab", key="gradcheck.vocab_size", help="Vocabulary size")
@key_option("--steps", key="gradcheck.steps", help="Sequence length")
@key_option("--batch", key="gradcheck.batch_size", help="Batch size")
@key_option("--samples", key="gradcheck.samples", help="Elements checked per parameter, 0 = all")
@key_option("--tolerance", key="gradcheck.tolerance", help="Largest relative error that passes")
@format_option()
def gradcheck_cmd(config_path, overrides, check_all, layers, cells, modes, tie, hidden, vocab, steps, batch, samples,
                  tolerance, fmt):
    """Compare analytic gradients with finite differences (float64); exit 1 if any check fails.

    \b
    Example:
      rnnlm gradcheck
      rnnlm gradcheck --all
      rnnlm gradcheck --cell lstm --bptt stream --steps 8 --format json
      rnnlm gradcheck --layers 2 --cell gru --bptt window
    """
    from rnnlm_cli.analysis.gradcheck import all_combinations, run_gradcheck
    from rnnlm_cli.render.gradcheck import render_table

    if check_all and (cells or modes or tie is not None or layers):
        raise click.UsageError("--all checks every layer count, cell, mode and tying; do not combine it with "
                               "--layers, --cell, --bptt or --tie-weights")
    cfg = load_config(config_path, overrides).with_values(given({
        "gradcheck.hidden_size": hidden, "gradcheck.vocab_size": vocab, "gradcheck.steps": steps,
        "gradcheck.batch_size": batch, "gradcheck.samples": samples, "gradcheck.tolerance": tolerance}))
    check_gradcheck_memory(cfg)
    if check_all:
        what = all_combinations()
    else:
        what = {"cells": list(cells) or None, "modes": list(modes) or None,
                "tying": None if tie is None else [tie], "layers": list(layers) or None}
    result = run_gradcheck(cfg, **what)
    emit(result, fmt, render_table)
    if not result["passed"]:
        sys.exit(1)
