"""rnnlm tune."""

from __future__ import annotations

import os
import sys

import click

from rnnlm_cli.cli.common import CONTEXT_SETTINGS, common_options, emit, format_option, quiet_option


@click.command("tune", context_settings=CONTEXT_SETTINGS)
@common_options
@click.option("--space", "space_path", type=click.Path(), default=None,
              help="Search space (YAML): config keys to uniform(a,b), loguniform(a,b), int(a,b), choice(x,y) or a list.")
@click.option("--trials", type=int, default=None, help="Trials the study should have in all (over every worker).")
@click.option("--storage", required=True,
              help="sqlite:///FILE.db (one machine), a database URL (postgresql://..., mysql://...) or journal:FILE.")
@click.option("--study", "study_name", required=True, help="The study's name in the storage.")
@click.option("--out", "out_dir", type=click.Path(), default=None,
              help="Trial runs (trial-NNNNN/) and best.yaml [default: runs/tune/STUDY].")
@click.option("--pruner", type=click.Choice(("median", "halving", "none")), default="median", show_default=True,
              help="Stop trials whose validation loss at an evaluation is worse than the others' (median) or than "
                   "a rung's best third (successive halving).")
@click.option("--report", "show_report", is_flag=True, help="Print the study's trials and parameter importances; "
                                                              "train nothing.")
@quiet_option
@format_option(("table", "json"))
def tune_cmd(config_path, overrides, space_path, trials, storage, study_name, out_dir, pruner, show_report, quiet, fmt):
    """Search hyperparameters with Optuna (TPE sampling, pruning on validation loss): each worker
    runs trials until the study has --trials of them; start several workers, on one machine or
    many, with the same command and storage. Needs the extra: pip install 'rnnlm[tune]'.

    The best trial's configuration is written to OUT/best.yaml, ready for `rnnlm train --config`.

    \b
    Example:
      rnnlm tune --config configs/tiny.yaml --space configs/tune/space.yaml --trials 20 \\
        --storage sqlite:///runs/tune.db --study tiny
      rnnlm tune --report --storage sqlite:///runs/tune.db --study tiny
    """
    from rnnlm_cli.studies import tune

    tune.require_optuna()
    if show_report:
        if space_path or trials is not None:
            raise click.UsageError("--report only reads the study: leave out --space and --trials")
        tune.check_storage_url(storage)
        from rnnlm_cli.render.tune import tune_report_text
        emit(tune.report(storage, study_name), fmt, tune_report_text)
        return
    if trials is None or space_path is None:
        raise click.UsageError("a worker needs --space and --trials (or give --report)")
    if trials < 1:
        raise click.BadParameter(f"must be at least 1, got {trials}", param_hint="'--trials'")
    if fmt != "table":
        raise click.UsageError("--format json is for --report")
    from rnnlm_cli.cli.progress_bars import progress_bars
    from rnnlm_cli.config import load_config
    from rnnlm_cli.paths import In, Out, check_paths, data_inputs
    from rnnlm_cli.studies.sweep import check_sweep_folder
    from rnnlm_cli.train.trainer import Interrupted

    base = load_config(config_path, overrides)
    space = tune.read_space(space_path)
    for r in space:     # every corner of the space must make a valid configuration
        for value in r.args:
            base.with_values({r.key: value})
    tune.check_storage_url(storage)
    out = out_dir or os.path.join("runs", "tune", study_name)
    builds = bool(base.data.train)
    check_paths([In("config file", config_path), In("search space", space_path),
                 *data_inputs(base.data, with_prepared=not builds)],
                [Out("--out folder", out, "file"), Out("prepared-data folder", base.data.prepared, "prepared")
                 if builds else None])
    own = {tune.BEST_CONFIG, "best"}
    lock = tune.storage_lock_path(storage)
    if lock:
        own |= {os.path.basename(lock[:-len(tune.LOCK_SUFFIX)]), os.path.basename(lock),
                os.path.basename(lock[:-len(tune.LOCK_SUFFIX)]) + ".lock"}
    check_sweep_folder(out, own, "rnnlm tune")
    log = (lambda msg: None) if quiet else (lambda msg: click.echo(msg, err=True))
    from rnnlm_cli.data.corpus import ensure_prepared
    study = tune.open_study(storage, study_name, pruner)          # the first write: the storage
    with tune.storage_lock(storage):          # one worker prepares the data, the others wait for it
        ensure_prepared(base, log=log)
    try:
        result = tune.run_worker(study, base, space, storage, trials, out, log=log, progress=progress_bars(True))
    except Interrupted as exc:
        click.echo(f"Interrupted: checkpoint saved to {exc.path}; the trial's parameters are queued again", err=True)
        sys.exit(exc.code)
    best = result["best"]
    click.echo(f"this worker ran {result['trials']} trial(s)")
    if best:
        params = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in best["params"].items())
        click.echo(f"best trial {best['number']}: valid loss {best['value']:.4f} ({params}); "
                   f"config: {os.path.join(out, tune.BEST_CONFIG)}")

