"""rnnlm longrange: the long-range memory study (copy task and agreement at distance)."""

from __future__ import annotations

import click

from rnnlm_cli.cli.common import CONTEXT_SETTINGS, emit, format_option, quiet_option
from rnnlm_cli.paths import In, Out, check_paths


@click.command("longrange", context_settings=CONTEXT_SETTINGS)
@click.option("--config", "study_path", type=click.Path(dir_okay=False), default="configs/longrange.yaml",
              show_default=True, help="The study: models, truncations, task lengths, budget (YAML).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="runs/longrange", show_default=True,
              help="Folder of the corpora and runs; a finished run is kept and not run again.")
@click.option("--jobs", "-j", type=int, default=2, show_default=True,
              help="Runs at a time, each a process with one BLAS thread.")
@click.option("--only", default=None, help="Only the runs whose key (task/length/model/truncation) contains this.")
@click.option("--record", "record_path", type=click.Path(dir_okay=False), default=None,
              help="Write the result as JSON to this file (results/longrange.json).")
@click.option("--markdown", "markdown_path", type=click.Path(dir_okay=False), default=None,
              help="Write the tables as Markdown to this file (results/longrange.md).")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None,
              help="Draw recall accuracy against task length to this PNG (needs the plot extra).")
@format_option()
@quiet_option
def longrange_cmd(study_path, out_dir, jobs, only, record_path, markdown_path, plot_path, fmt, quiet):
    """How far each model carries information: every model x truncation of the study trained on
    the copy task at each delay T and on agreement at each distance d, scored by recall accuracy
    (the model's own prediction after the true prefix), with the gradient horizon before and after
    training. Prints the per-model table; a line per finished run on stderr.

    \b
    Example:
      rnnlm longrange --config configs/longrange.yaml --out runs/longrange -j 2
      rnnlm longrange --only copy/5/ --record /tmp/lr.json
    """
    from rnnlm_cli.errors import ConfigError
    from rnnlm_cli.fileio import atomic_write_json, atomic_write_text
    from rnnlm_cli.render.longrange import markdown, plot, summary_table
    from rnnlm_cli.render.report import prepare_plot
    from rnnlm_cli.studies.longrange import load_study, run_study

    if jobs < 1:
        raise ConfigError(f"--jobs: expected an integer >= 1, got {jobs}")
    if plot_path:
        prepare_plot(plot_path)
    check_paths([In("study file", study_path)],
                [Out("--record file", record_path), Out("--markdown file", markdown_path), Out("--plot file", plot_path)])
    study = load_study(study_path)
    log = None if quiet else (lambda message: click.echo(message, err=True))
    result = run_study(study, out_dir, jobs=jobs, only=only, log=log)
    if record_path:
        atomic_write_json(record_path, result)
    if markdown_path:
        atomic_write_text(markdown_path, markdown(result))
    if plot_path:
        plot(result, plot_path)
    emit(result, fmt, summary_table)
