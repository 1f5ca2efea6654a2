"""rnnlm corpus: seeded generators of synthetic corpora (the same seed gives the same bytes)."""

from __future__ import annotations

import click

from rnnlm_cli.cli.common import CONTEXT_SETTINGS
from rnnlm_cli.paths import Out, check_paths


@click.group("corpus", context_settings=CONTEXT_SETTINGS)
def corpus():
    """Generate a synthetic corpus: seeded, so the same seed writes byte-identical files.

    \b
    Example:
      rnnlm corpus agreement --out corpora/agreement
    """


@corpus.command("agreement")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True,
              help="Output folder: new, empty, or an earlier agreement corpus (replaced).")
@click.option("--seed", type=int, default=1, show_default=True,
              help="Random seed; 1 gives the committed corpora/agreement.")
def agreement_cmd(out_dir, seed):
    """Long-range subject-verb agreement: train.txt, valid.txt and test.txt (one sentence a
    line) and probe.jsonl (the items of `rnnlm probe`), printed as written. corpora/README.md
    describes the grammar and the files.

    \b
    Example:
      rnnlm corpus agreement --out corpora/agreement
      rnnlm corpus agreement --out /tmp/agreement --seed 7
    """
    from rnnlm_cli.data.agreement import CORPUS_FILES, write_corpus

    check_paths([], [Out("--out folder", out_dir, "corpus", owns=tuple(CORPUS_FILES.values()))])
    paths = write_corpus(out_dir, seed=seed)
    click.echo(" ".join(str(p) for p in paths.values()))
