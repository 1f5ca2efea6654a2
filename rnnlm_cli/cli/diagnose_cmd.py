"""rnnlm diagnose-gradients."""

from __future__ import annotations

import dataclasses
import os
import sys

import click

from rnnlm_cli.cli.common import CONTEXT_SETTINGS, FiniteFloat, emit, format_option, given, key_option, quiet_option
from rnnlm_cli import grid
from rnnlm_cli.config import check_diagnose_memory, load_config
from rnnlm_cli.cli.progress_bars import progress_bars
from rnnlm_cli.paths import In, Out, check_paths, data_inputs
from rnnlm_cli.train.metrics import METRICS_NAME


# --------------------------------------------------------------------------- diagnose-gradients

@click.command("diagnose-gradients", context_settings=CONTEXT_SETTINGS)
@click.option("--config", "config_paths", type=click.Path(), multiple=True,
              help="YAML configuration file; repeat it to compare several models side by side.")
@click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
              help="Override one configuration key (repeatable); the value is a YAML scalar.")
@click.option("--sweep", "sweeps", multiple=True, metavar="SECTION.KEY=V1,V2,...",
              help="One model per value, as --set on top of each config (repeatable: the grid).")
@click.option("--checkpoint", "checkpoints", type=click.Path(), multiple=True,
              help="Diagnose a trained checkpoint (repeatable) instead of a fresh model.")
@click.option("--run", "run_dir", type=click.Path(), default=None,
              help="Report the gradient norms logged in RUN/metrics.jsonl by a training run.")
@key_option("--steps", key="diagnose.steps", help="T: sequence length")
@key_option("--batches", key="diagnose.batches", help="Batches of sequences")
@key_option("--batch-size", key="diagnose.batch_size", help="Sequences per batch")
@key_option("--threshold", key="diagnose.threshold", help="Horizon threshold on the normalised norm")
@click.option("--random-tokens", is_flag=True, help="Random tokens even when prepared data exists.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None,
              help="Also draw the lag profiles and the (t, k) heat map into a PNG (stacked models: a layer x lag "
                   "heat map beside the per-layer profiles; needs matplotlib).")
@click.option("--fail-if-vanishing", "min_horizon", type=click.IntRange(min=0), default=None, metavar="HORIZON",
              help="Exit 1 when any model's horizon is below HORIZON.")
@click.option("--fail-if-exploding", "max_ratio", type=FiniteFloat(0.0), default=None,
              metavar="NORM", help="Exit 1 when any model's max norm ratio g(t,t-d)/g(t,t) exceeds NORM.")
@quiet_option
@format_option(("table", "json", "csv"))
def diagnose_gradients_cmd(config_paths, overrides, sweeps, checkpoints, run_dir, steps, batches, batch_size,
                           threshold, random_tokens, plot_path, min_horizon, max_ratio, quiet, fmt):
    """Measure vanishing/exploding gradients per time step, by lag, for configs or checkpoints.

    For each model (fresh from the config, seeded, or --checkpoint) on B contiguous length-T
    windows of the validation split (training split if none; random tokens when there is no
    prepared data, said on stderr), in float64 without dropout, with the training BPTT code:
    g(t, k) = ||dE_t/ds_k|| (E_t: the loss of output t), its profile by lag d = t - k (raw,
    and normalised per t by g(t, t)), decay rate, half-life and horizon; step-Jacobian spectral
    norms and their products (on the first diagnose.jacobian_sequences sequences, by Lanczos);
    sigma_max(W_h) against the Pascanu et al. bound; saturated units;
    each lag's share of dE/dW_h; and the bias of window truncation k against full BPTT.
    Stacked models (model.num_layers >= 2): all of it per layer, the attenuation across layers,
    the depth x time matrix (a text heat map) and the Jacobians of the whole stacked state.
    --run RUN reports the logged gradient norms of a training run instead (add --checkpoint for both).

    --format json writes every number (NaN/inf as null); --format csv the same in long
    format, model,quantity,i,j,value,layer. Every field of both: docs/reference.md.

    \b
    Example:
      rnnlm diagnose-gradients
      rnnlm diagnose-gradients --config configs/tiny.yaml --sweep model.cell=tanh,relu,gru,lstm
      rnnlm diagnose-gradients --checkpoint runs/demo/tanh/best.npz --format json
      rnnlm diagnose-gradients --run runs/demo/tanh
      rnnlm diagnose-gradients --config configs/tiny.yaml --fail-if-vanishing 10
    """
    from rnnlm_cli.analysis import diagnostics
    from rnnlm_cli.analysis import history
    from rnnlm_cli.render import report

    # refuse impossible combinations and a missing matplotlib before any work starts
    if checkpoints and (sweeps or len(config_paths) > 1):
        raise click.UsageError("--checkpoint diagnoses a trained model: it takes at most one --config "
                               "(for the data and diagnose settings) and no --sweep")
    if run_dir and not checkpoints and (config_paths or sweeps or random_tokens):
        raise click.UsageError("--run reports a training log; add --checkpoint to diagnose a model as well")
    models_wanted = bool(checkpoints) or not run_dir
    if (min_horizon is not None or max_ratio is not None) and not models_wanted:
        raise click.UsageError("--fail-if-vanishing and --fail-if-exploding gate a model's gradients: "
                               "add --checkpoint (with --run alone nothing is measured)")
    if plot_path and not models_wanted:
        raise click.UsageError("--plot draws lag profiles: it needs a model (--checkpoint or a config)")
    if plot_path:
        report.prepare_plot(plot_path)
    for text in sweeps:
        grid.parse_sweep(text)
    result = {}
    if run_dir:
        result["history"] = history.history_report(run_dir)
    if models_wanted:
        if checkpoints:
            specs = [diagnostics.checkpoint_spec(p, config_paths[0] if config_paths else None, overrides, load_config)
                     for p in checkpoints]
        else:
            specs = diagnostics.config_specs(config_paths, overrides, sweeps, load_config)
        check_paths([*(In("config file", p) for p in config_paths), *(In("checkpoint", p) for p in checkpoints),
                     In("training log", run_dir and os.path.join(run_dir, METRICS_NAME)),
                     *(i for spec in specs for i in data_inputs(spec.cfg.data, with_prepared=True))],
                    [Out("--plot file", plot_path)])
        options = given({"diagnose.steps": steps, "diagnose.batches": batches, "diagnose.batch_size": batch_size,
                         "diagnose.threshold": threshold})
        specs = [dataclasses.replace(spec, cfg=spec.cfg.with_values(options)) for spec in specs]
        for spec in specs:
            check_diagnose_memory(spec.cfg, spec.model.V if spec.model is not None else None)
        diagnosis = diagnostics.diagnose(specs, random_tokens=random_tokens, progress=progress_bars(quiet))
        result = {**diagnosis, **result}
        for m in diagnosis["models"]:
            if m["data"] == diagnostics.RANDOM and not quiet:
                click.echo(f"note: {m['label']}: measured on random tokens (vocabulary {m['model']['vocab_size']}), "
                           f"not real text ({m['data_note']})", err=True)
        if plot_path:
            report.plot_diagnostics(diagnosis, plot_path)
    emit(result, fmt, report.diagnostics_text, report.diagnostics_csv)
    failures = diagnostics.gate_failures(result, min_horizon, max_ratio)
    for line in failures:
        click.echo(f"FAILED: {line}", err=True)
    if failures:
        sys.exit(1)
