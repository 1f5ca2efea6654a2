"""rnnlm sweep."""

from __future__ import annotations

import signal

import click

from rnnlm_cli.cli.common import CONTEXT_SETTINGS, common_options, quiet_option
from rnnlm_cli.errors import TrainingError


@click.command("sweep", context_settings=CONTEXT_SETTINGS)
@common_options
@click.option("--grid", "grids", multiple=True, metavar="KEY=V1,V2,...",
              help="Values of one configuration key (repeatable; every combination is a run).")
@click.option("--random", "n_random", type=int, default=None, metavar="N",
              help="Also draw N random points from the --range distributions (crossed with the grid).")
@click.option("--range", "ranges", multiple=True, metavar="KEY=DIST(a,b)",
              help="A distribution for --random: uniform(a,b), loguniform(a,b), int(a,b) or choice(x,y,...).")
@click.option("--ablate", "ablations", multiple=True, metavar="'KEY=VALUE ...'",
              help="Instead of a grid: the base configuration, and one run per --ablate with these keys "
                   "changed (repeatable; e.g. --ablate model.weight_drop=0 --ablate 'model.ar=0 model.tar=0').")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random draws.")
@click.option("--out", "out_dir", type=click.Path(), required=True,
              help="The sweep's folder: one run folder per point, logs/, sweep.json.")
@click.option("-j", "--jobs", type=int, default=1, show_default=True,
              help="Runs trained at once (each process with one BLAS thread).")
@click.option("--print-commands", is_flag=True,
              help="Prepare the data, then print one shell command per run that is not finished; run nothing.")
@quiet_option
def sweep_cmd(config_path, overrides, grids, n_random, ranges, ablations, seed, out_dir, jobs, print_commands, quiet):
    """Train one run per point of a grid (and of random draws), or an ablation, N processes at a time.

    Each point is an ordinary `rnnlm train` run in OUT/NAME (NAME: the swept values and a hash
    of the configuration). Rerunning the same sweep skips finished runs and resumes interrupted
    ones; Ctrl-C or SIGTERM stops every run after it saved a checkpoint. With --ablate the runs
    are the base configuration (base-HASH) and, per --ablate, the base with those keys changed:
    `rnnlm compare OUT` then shows what each change costs or buys. `--print-commands`
    prepares the data, then prints the `rnnlm train` commands instead of running them (for GNU
    parallel, make or a Slurm array), to be run from this folder.

    \b
    Example:
      rnnlm sweep --config configs/tiny.yaml --grid model.cell=tanh,gru --grid train.lr=0.003,0.01 --out runs/sweep1 -j 2
      rnnlm sweep --config configs/tiny.yaml --random 8 --range 'train.lr=loguniform(1e-3,3e-2)' --out runs/sweep2
      rnnlm sweep --config configs/tiny.yaml --set model.weight_drop=0.2 --set model.dropout_output=0.2 --ablate model.weight_drop=0 --ablate model.dropout_output=0 --out runs/abl
      rnnlm compare runs/sweep1
    """
    from rnnlm_cli.cli.progress_bars import progress_bars
    from rnnlm_cli.paths import In, Out, check_paths, data_inputs
    from rnnlm_cli.studies import sweep

    if jobs < 1:
        raise click.BadParameter(f"must be at least 1, got {jobs}", param_hint="'-j'")
    if n_random is not None and n_random < 1:
        raise click.BadParameter(f"must be at least 1, got {n_random}", param_hint="'--random'")
    points = sweep.plan_sweep(config_path, overrides, grids, ranges, n_random, seed, out_dir, ablations)
    base = points[0].cfg
    builds = bool(base.data.train)
    check_paths([In("config file", config_path), *data_inputs(base.data, with_prepared=not builds)],
                [Out("--out folder", out_dir, "file"),
                 *[Out("prepared-data folder", p, "prepared") for p in sorted({q.cfg.data.prepared for q in points})
                   if builds]])
    sweep.check_sweep_folder(out_dir)
    log = (lambda msg: None) if quiet else (lambda msg: click.echo(msg, err=True))
    sweep.prepare_data(points, log=log, progress=progress_bars(quiet, lines=log))    # once, before runs start
    if print_commands:
        for p in points:
            state = sweep.point_state(p)
            if state not in (sweep.FINISHED, sweep.BUSY):
                click.echo(sweep.shell_command(sweep.train_command(config_path, overrides, p, state)))
        return
    sweep.write_manifest(out_dir, config_path, overrides, grids, ranges, n_random, seed, points, ablations)
    program = sweep.python_program()
    # Ctrl-C stops the sweep even where SIGINT came in ignored (a background job of a script): the
    # children, which handle it themselves, would stop while the sweep started the next ones
    old_handler = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        outcome = sweep.run_sweep(points, out_dir, jobs,
                                  lambda p, state: sweep.train_command(config_path, overrides, p, state, program), log)
    finally:
        signal.signal(signal.SIGINT, old_handler)
    width = max(len(p.name) for p in points)
    for p in points:
        click.echo(f"{p.name:<{width}}  {outcome[p.name]}")
    failed = [name for name, o in outcome.items() if o.startswith(("failed", "interrupted"))]
    if failed:
        raise TrainingError(f"{len(failed)} of {len(points)} runs did not finish: {', '.join(failed[:3])}"
                            f"{', ...' if len(failed) > 3 else ''}; see {out_dir}/logs/NAME.log")
