"""rnnlm corpus: seeded generators of synthetic corpora (the same seed gives the same bytes)."""

from __future__ import annotations

import click

from rnnlm_cli.cli.common import CONTEXT_SETTINGS
from rnnlm_cli.paths import Out, check_paths, shown


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


@corpus.command("copy")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True,
              help="Output folder: new or empty; an earlier copy corpus only with --force.")
@click.option("--symbols", "-m", type=int, default=10, show_default=True, help="m: symbols to remember per line.")
@click.option("--alphabet", "-a", type=int, default=8, show_default=True, help="a: distinct symbols (>= 2).")
@click.option("--delay", "-T", type=int, default=20, show_default=True,
              help="T: blanks between the symbols and the delimiter.")
@click.option("--seed", type=int, default=1, show_default=True, help="Random seed.")
@click.option("--train", "n_train", type=int, default=2000, show_default=True, help="Training lines.")
@click.option("--valid", "n_valid", type=int, default=200, show_default=True, help="Validation lines.")
@click.option("--test", "n_test", type=int, default=200, show_default=True, help="Test lines.")
@click.option("--force", is_flag=True, help="Replace an earlier copy corpus in --out.")
def copy_cmd(out_dir, symbols, alphabet, delay, seed, n_train, n_valid, n_test, force):
    """The copy (memory) task: each line holds m symbols, T blanks (_), a delimiter (:) and the m
    symbols again. Writes train.txt, valid.txt, test.txt and task.json (the parameters and the
    memoryless baseline), printed as written. A word-level corpus: preprocess and train read it
    as they read any other.

    \b
    Example:
      rnnlm corpus copy --out /tmp/copy20 --delay 20
      rnnlm preprocess --train /tmp/copy20/train.txt --valid /tmp/copy20/valid.txt \\
        --test /tmp/copy20/test.txt --out /tmp/copy20-prep
    """
    import os

    from rnnlm_cli.data.copytask import COPY_FILES, CopyTask, check_parameters, write_copy_corpus
    from rnnlm_cli.errors import ConfigError

    task = CopyTask(symbols=symbols, alphabet=alphabet, delay=delay)
    check_parameters(task, seed, {"train": n_train, "valid": n_valid, "test": n_test})
    check_paths([], [Out("--out folder", out_dir, "corpus", owns=tuple(COPY_FILES.values()))])
    if os.path.isdir(out_dir) and os.listdir(out_dir) and not force:
        raise ConfigError(f"--out folder {shown(out_dir)} already holds a copy corpus; use --force to replace it")
    paths = write_copy_corpus(out_dir, task, seed=seed, n_train=n_train, n_valid=n_valid, n_test=n_test)
    click.echo(" ".join(str(p) for p in paths.values()))
