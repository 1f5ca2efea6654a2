"""rnnlm results: the README table and learning curves from result records."""

from __future__ import annotations

import click

from rnnlm_cli.cli.common import CONTEXT_SETTINGS, read_json
from rnnlm_cli.paths import In, Out, check_paths


@click.command("results", context_settings=CONTEXT_SETTINGS)
@click.argument("records", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None,
              help="Also draw validation perplexity against wall time to this PNG (needs the plot extra).")
def results_cmd(records, plot_path):
    """The results table (Markdown, with published anchors) and the learning curves of result
    records written by `rnnlm train --record FILE.json`.

    \b
    Example:
      rnnlm results results/ptb-rnn.json results/ptb-lstm.json
      rnnlm results results/*.json --plot docs/learning_curves.png
    """
    from rnnlm_cli.render.report import prepare_plot
    from rnnlm_cli.render.results import ANCHORS, check_record, curves_table, plot_curves, results_table

    if plot_path:
        prepare_plot(plot_path)
    check_paths([In("result record", p) for p in records], [Out("--plot file", plot_path)])
    docs = [check_record(read_json(path), path) for path in records]
    click.echo(results_table(docs, ANCHORS))
    click.echo()
    click.echo(curves_table(docs))
    if plot_path:
        plot_curves(docs, plot_path)
