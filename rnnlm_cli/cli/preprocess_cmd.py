"""rnnlm preprocess."""

from __future__ import annotations

import click

from rnnlm_cli.cli.common import (CONTEXT_SETTINGS, common_options, echo_json, format_option, given, key_option,
                                  quiet_option)
from rnnlm_cli.config import load_config
from rnnlm_cli.cli.progress_bars import progress_bars
from rnnlm_cli.paths import In, Out, check_paths, data_inputs


# --------------------------------------------------------------------------- preprocess

@click.command("preprocess", context_settings=CONTEXT_SETTINGS)
@common_options
@click.option("--train", "train_path", type=click.Path(), default=None, help="Training text (overrides data.train).")
@click.option("--valid", "valid_path", type=click.Path(), default=None, help="Validation text (overrides data.valid).")
@click.option("--test", "test_path", type=click.Path(), default=None, help="Test text (overrides data.test).")
@key_option("--level", key="data.level", help="Tokenisation: word or char, overrides")
@click.option("--out", "out_dir", type=click.Path(), default=None, help="Output folder (overrides data.prepared).")
@click.option("--force", is_flag=True, help="Replace an existing, non-empty output folder.")
@quiet_option
@format_option()
def preprocess_cmd(config_path, overrides, train_path, valid_path, test_path, level, out_dir, force, quiet, fmt):
    """Tokenise a corpus, build the vocabulary and write the prepared-data folder.

    \b
    Example:
      rnnlm preprocess --config configs/tiny.yaml
      rnnlm preprocess --train ptb.train.txt --valid ptb.valid.txt --test ptb.test.txt --out data/ptb
      rnnlm preprocess --train input.txt --level char --set data.split=[0.9,0.1,0.0] --out data/shakespeare
    """
    import os
    import time

    from rnnlm_cli.data import corpus
    from rnnlm_cli.render.corpus import summary_table

    # command-line paths are relative to the current directory (as with --set)
    cfg = load_config(config_path, overrides).with_values(given({
        "data.train": train_path, "data.valid": valid_path, "data.test": test_path, "data.level": level,
        "data.prepared": out_dir}))
    check_paths([In("config file", config_path), *data_inputs(cfg.data, with_prepared=False)],
                [Out("output folder", cfg.data.prepared, "prepared")])
    log = (lambda msg: None) if quiet else (lambda msg: click.echo(msg, err=True))
    start = time.perf_counter()
    meta = corpus.preprocess(cfg.data, cfg, force=force, progress=progress_bars(quiet), log=log)
    seconds = time.perf_counter() - start
    if not quiet:
        mb = sum(s["bytes"] for s in meta["sources"]) / 1e6
        click.echo(f"preprocessed {mb:.1f} MB in {seconds:.2f} s ({mb / max(seconds, 1e-9):.1f} MB/s)", err=True)
    if fmt == "json":
        echo_json(meta)
    else:
        click.echo(summary_table(meta, os.path.abspath(cfg.data.prepared)))
