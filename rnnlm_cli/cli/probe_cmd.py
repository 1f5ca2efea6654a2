"""rnnlm probe."""

from __future__ import annotations

import click

from rnnlm_cli.cli.common import CONTEXT_SETTINGS, common_options, emit, format_option, given
from rnnlm_cli.config import load_config


# --------------------------------------------------------------------------- probe

@click.command("probe", context_settings=CONTEXT_SETTINGS)
@common_options
@click.option("--checkpoint", "checkpoints", multiple=True, required=True,
              type=click.Path(exists=True, dir_okay=False),
              help="A checkpoint (.npz) from train (repeatable: one column group each, named by its run folder).")
@click.option("--data", "data_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Probe items, JSON lines (probe.data; default corpora/agreement/probe.jsonl).")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None,
              help="Also draw accuracy against distance to this PNG (needs the plot extra).")
@format_option(("table", "json", "csv"))
def probe_cmd(config_path, overrides, checkpoints, data_path, plot_path, fmt):
    """Long-range agreement accuracy by distance: does the model prefer the verb form that
    agrees with the subject d words back?

    Each model reads <eos> + prefix from the zero state (what full-BPTT training sees at a
    sentence start; stream-trained models normally carry a state there) and an item is
    correct when log p(verb) > log p(wrong); a tie counts as wrong. Per distance bin
    (probe.bins): items, accuracy with a Wilson 95% interval, and the mean margin
    log p(verb) - log p(wrong). --config/--set give the probe section only; each checkpoint
    brings its own model and vocabulary.

    \b
    JSON (--format json): {data, items, distance_range, bin_edges, confidence, interval, rule,
    models: [{label, path, cell, recurrent_init, hidden_size, embedding_size, bptt, k1, k2,
    valid_ppl, oov_prefix_tokens, bins: [{bin, lo, hi, n, correct, accuracy, ci_low, ci_high,
    mean_margin}], distances: [{distance, n, ...}], overall: {n, ...}}]}.
    CSV (--format csv): label,bin,lo,hi,n,correct,accuracy,ci_low,ci_high,mean_margin; one row
    per model and bin, then one `all` row per model.

    \b
    Example:
      rnnlm probe --checkpoint runs/probe/tanh/best.npz
      rnnlm probe --checkpoint runs/probe/gru/best.npz --checkpoint runs/probe/lstm/best.npz --format json
      rnnlm probe --checkpoint runs/demo/tanh/best.npz --set probe.bins=[2,5,10,30] --plot probe.png
    """
    from rnnlm_cli.analysis import probe

    cfg = load_config(config_path, overrides).with_values(given({"probe.data": data_path}))
    if plot_path:
        probe.check_plotting()
    result = probe.probe_checkpoints(list(checkpoints), data=cfg.probe.data, edges=cfg.probe.bins)
    if plot_path:
        probe.plot(result, plot_path)
    emit(result, fmt, probe.render_table, probe.render_csv)
