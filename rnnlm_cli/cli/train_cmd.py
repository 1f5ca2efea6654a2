"""rnnlm train."""

from __future__ import annotations

import shlex
import sys

import click

from rnnlm_cli.cli.common import (CONTEXT_SETTINGS, common_options, echo_json, format_option, given, key_option,
                                  quiet_option)
from rnnlm_cli.config import load_config
from rnnlm_cli.cli.progress_bars import progress_bars
from rnnlm_cli.paths import RUN_FILES, In, Out, check_paths, data_inputs


# --------------------------------------------------------------------------- train / evaluate / generate

@click.command("train", context_settings=CONTEXT_SETTINGS)
@common_options
@click.option("--out", "out_dir", type=click.Path(), default=None, help="Output folder (overrides train.out).")
@click.option("--resume", is_flag=True, help="Continue from OUT/checkpoint.npz (bit-identical to an uninterrupted run).")
@click.option("--force", is_flag=True, help="Start over in an output folder that holds a previous run.")
@key_option("--max-steps", key="train.max_steps", help="Stop after N updates in all, 0 = no limit")
@click.option("--record", "record_path", type=click.Path(dir_okay=False), default=None,
              help="Also write a result record (config hash, commit, machine, summary, learning curve) as JSON.")
@quiet_option
@format_option()
def train_cmd(config_path, overrides, out_dir, resume, force, max_steps, record_path, quiet, fmt):
    """Train a language model; writes checkpoints, metrics.jsonl and summary.json to OUT.

    Progress goes to stderr (a bar on a terminal); the summary goes to stdout. SIGINT/SIGTERM
    save a checkpoint and exit 130/143; `--resume` continues from it.

    \b
    Example:
      rnnlm train --config configs/tiny.yaml
      rnnlm train --config configs/ptb-rnn.yaml --set train.lr=0.5 --out runs/ptb-lr05
      rnnlm train --config configs/ptb-rnn.yaml --resume
    """
    from rnnlm_cli.train.trainer import Interrupted, train

    if resume and force:
        raise click.UsageError("--resume and --force contradict each other")
    cfg = load_config(config_path, overrides).with_values(given({"train.out": out_dir,
                                                                  "train.max_steps": max_steps}))
    builds = bool(cfg.data.train)       # train builds data.prepared from data.train (when out of date)
    check_paths([In("config file", config_path), *data_inputs(cfg.data, with_prepared=not builds)],
                [Out("output folder", cfg.train.out, "run", owns=RUN_FILES),
                 Out("prepared-data folder", cfg.data.prepared, "prepared") if builds else None,
                 Out("--record file", record_path),
                 Out("train.tensorboard folder", cfg.train.tensorboard, "file") if cfg.train.tensorboard else None])
    log = (lambda msg: None) if quiet else (lambda msg: click.echo(msg, err=True))
    try:
        summary = train(cfg, resume=resume, force=force, progress=progress_bars(quiet, lines=log), log=log)
    except Interrupted as exc:
        again = resume_command(config_path, overrides, out_dir, max_steps, record_path)
        click.echo(f"Interrupted: checkpoint saved to {exc.path}; resume with: {again}", err=True)
        sys.exit(exc.code)
    if record_path:
        import os

        from rnnlm_cli.render.results import make_record, write_record
        name = os.path.splitext(os.path.basename(config_path or "default"))[0]
        command = shlex.join(train_argv(config_path, overrides, out_dir, max_steps, record_path))
        write_record(record_path, make_record(name, cfg, summary, cfg.train.out, command))
    if fmt == "json":
        echo_json(summary)
    else:
        for key, value in summary.items():
            if key == "schema_version":
                continue
            for name, v in (value.items() if isinstance(value, dict) else [(None, value)]):
                label = key if name is None else f"{key}.{name}"
                label = f"{label:<20}" if len(label) < 20 else label + " "
                click.echo(f"{label}{v:.4f}" if isinstance(v, float) else f"{label}{'-' if v is None else v}")


def train_argv(config_path, overrides, out_dir, max_steps, record_path) -> list[str]:
    """The command that trains this run, with the options as given (without --resume and --force)."""
    argv = ["rnnlm", "train"]
    argv += ["--config", config_path] if config_path else []
    argv += [arg for text in overrides for arg in ("--set", text)]
    argv += ["--out", out_dir] if out_dir else []
    argv += ["--max-steps", str(max_steps)] if max_steps else []
    argv += ["--record", record_path] if record_path else []
    return argv


def resume_command(config_path, overrides, out_dir, max_steps, record_path) -> str:
    """The shell command that resumes this run: the options as given, quoted for a POSIX shell."""
    return shlex.join(train_argv(config_path, overrides, out_dir, max_steps, record_path) + ["--resume"])
