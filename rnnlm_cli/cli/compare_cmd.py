"""rnnlm compare."""

from __future__ import annotations

import click

from rnnlm_cli.cli.common import CONTEXT_SETTINGS, emit


@click.command("compare", context_settings=CONTEXT_SETTINGS)
@click.argument("paths", nargs=-1, required=True)
@click.option("--sort", "sort_by", default="best_valid_ppl", show_default=True,
              help="Column to sort by: a figure (best_valid_ppl, valid_ppl, test_ppl, epochs, steps, wall_time_s, "
                   "tokens_per_sec, clip_rate), run, status, or a configuration key that differs.")
@click.option("--format", "fmt", type=click.Choice(("text", "json", "csv")), default="text", show_default=True,
              help="Output format on stdout.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None,
              help="Also draw every run's validation perplexity to this PNG (needs the plot extra).")
@click.option("--x", "x_axis", type=click.Choice(("updates", "time")), default="updates", show_default=True,
              help="The plot's x axis: updates or wall time.")
def compare_cmd(paths, sort_by, fmt, plot_path, x_axis):
    """Training runs side by side: the configuration keys that differ, final and best validation
    perplexity, test perplexity, epochs, wall time, tokens/s and clip rate. A PATH is a run
    folder, a folder of runs (a sweep's, a tune study's) or a glob pattern; unfinished, running
    and crashed runs are listed and marked.

    \b
    Example:
      rnnlm compare runs/sweep1
      rnnlm compare runs/sweep1 --sort train.lr --format csv
      rnnlm compare 'runs/sweep1/cell-gru*' --plot curves.png --x time
    """
    from rnnlm_cli.paths import In, Out, check_paths
    from rnnlm_cli.render import compare as cmp
    from rnnlm_cli.render.report import prepare_plot

    if plot_path:
        prepare_plot(plot_path)
    result = cmp.compare(paths, sort_by)
    check_paths([In("run folder", r["run"], "folder") for r in result["runs"]], [Out("--plot file", plot_path)])
    if fmt == "json":
        emit(cmp.compare_json(result), "json", None)
    elif fmt == "csv":
        emit(result, "csv", None, cmp.compare_csv)
    else:
        emit(result, "text", cmp.compare_text)
    if plot_path:
        cmp.plot_compare(result, plot_path, x_axis)
