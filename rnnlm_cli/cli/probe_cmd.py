"""rnnlm probe and rnnlm probe-horizons."""

from __future__ import annotations

import os

import click

from rnnlm_cli.cli.common import CONTEXT_SETTINGS, common_options, emit, format_option, given, read_json
from rnnlm_cli.errors import brief
from rnnlm_cli.config import load_config
from rnnlm_cli.errors import DataError
from rnnlm_cli.paths import In, Out, check_paths


# --------------------------------------------------------------------------- probe

@click.command("probe", context_settings=CONTEXT_SETTINGS)
@common_options
@click.option("--checkpoint", "checkpoints", multiple=True, required=True,
              type=click.Path(exists=True, dir_okay=False),
              help="A checkpoint (.npz) from train (repeatable: one column group each, named by its run folder).")
@click.option("--data", "data_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Probe items, JSON lines (probe.data; default: the agreement probe set shipped with rnnlm).")
@click.option("--over-seeds", is_flag=True,
              help="Checkpoints whose configs differ only in train.seed (and train.out) are one model: report "
                   "its mean over seeds, the range (lowest and highest seed) and each seed's numbers.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None,
              help="Also draw accuracy against distance to this PNG (needs the plot extra).")
@format_option(("table", "json", "csv"))
def probe_cmd(config_path, overrides, checkpoints, data_path, over_seeds, plot_path, fmt):
    """Long-range agreement accuracy by distance: does the model prefer the verb form that
    agrees with the subject d words back?

    Each model reads <eos> + prefix from the zero state (what full-BPTT training sees at a
    sentence start; stream-trained models normally carry a state there) and an item is
    correct when log p(verb) > log p(wrong); a tie counts as wrong. Per distance bin
    (probe.bins): items, accuracy with a Wilson 95% interval, and the mean margin
    log p(verb) - log p(wrong). --config/--set give the probe section only; each checkpoint
    brings its own model and vocabulary.

    --over-seeds: models are named by the folder that holds their run folders
    (runs/probe/gru/seed2/best.npz -> gru); each statistic is its mean over seeds with the
    lowest and highest seed, and the JSON keeps each seed's numbers. Every field of the JSON
    and CSV outputs: docs/reference.md.

    \b
    Example:
      rnnlm probe --checkpoint runs/probe/tanh/best.npz
      rnnlm probe --checkpoint runs/probe/gru/best.npz --checkpoint runs/probe/lstm/best.npz --format json
      rnnlm probe --checkpoint runs/demo/tanh/best.npz --set probe.bins=[2,5,10,30] --plot probe.png
      rnnlm probe --over-seeds --checkpoint runs/probe/gru/seed1/best.npz --checkpoint runs/probe/gru/seed2/best.npz
    """
    from rnnlm_cli.analysis import probe
    from rnnlm_cli.render import probe as render
    from rnnlm_cli.render.report import prepare_plot

    outside = [o for o in overrides if not o.strip().startswith("probe.")]
    if outside:   # each checkpoint brings its own model and data: such a key would be ignored
        raise click.UsageError(f"--set {brief(outside[0], quote=False)}: probe takes only probe.* keys; each checkpoint "
                               f"brings its own model, data and training settings")
    cfg = load_config(config_path, overrides).with_values(given({"probe.data": data_path}))
    if plot_path:
        prepare_plot(plot_path)
    check_paths([In("config file", config_path), In("probe data", cfg.probe.data),
                 *(In("checkpoint", p) for p in checkpoints)], [Out("--plot file", plot_path)])
    run = probe.probe_over_seeds if over_seeds else probe.probe_checkpoints
    result = run(list(checkpoints), data=cfg.probe.data, edges=cfg.probe.bins)
    if plot_path:
        render.plot(result, plot_path)
    emit(result, fmt, render.render_table, render.render_csv)


# --------------------------------------------------------------------------- probe-horizons

@click.command("probe-horizons", context_settings=CONTEXT_SETTINGS)
@click.argument("probe_json", type=click.Path(exists=True, dir_okay=False))
@click.argument("diagnose_jsons", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@format_option(("table", "json"))
def probe_horizons_cmd(probe_json, diagnose_jsons, fmt):
    """Each probed model's gradient horizon next to its agreement accuracy at long distances.

    PROBE_JSON is the output of `rnnlm probe --format json` (with or without --over-seeds);
    each DIAGNOSE_JSON is the output of `rnnlm diagnose-gradients --checkpoint RUN/best.npz
    --format json` saved in RUN/, and goes with the probed checkpoint in the same folder (or,
    for a probe result without paths, with the model named like that folder). Over seeds, the
    horizon is reported as mean [lowest, highest seed]. Reads files only (`make probe-horizons`).

    --format json prints the probe result with each run's horizon, horizon_is_lower_bound and
    half_life added (null without a diagnosis); docs/reference.md describes every field.

    \b
    Example:
      rnnlm probe-horizons runs/probe/probe.json runs/probe/tanh/diagnose.json runs/probe/gru/diagnose.json
      rnnlm probe-horizons runs/probe/probe.json runs/probe/*/seed*/diagnose.json --format json
    """
    from rnnlm_cli.analysis.probe import add_horizons
    from rnnlm_cli.render.probe import horizon_table

    result = read_json(probe_json)
    diagnoses = {os.path.dirname(os.path.abspath(p)): read_json(p) for p in diagnose_jsons}
    try:
        merged = add_horizons(result, diagnoses)
        text = horizon_table(merged) if fmt == "table" else None
    except (KeyError, TypeError, IndexError, AttributeError) as exc:
        raise DataError(f"{probe_json} and the diagnoses do not hold the fields of `rnnlm probe --format json` "
                        f"and `rnnlm diagnose-gradients --format json` ({type(exc).__name__}: {exc})") from None
    emit(merged, fmt, lambda _: text)
