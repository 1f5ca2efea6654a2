"""rnnlm config show / validate."""

from __future__ import annotations

import click

from rnnlm_cli.cli.common import CONTEXT_SETTINGS, common_options, echo_json, format_option
from rnnlm_cli.config import load_config, to_yaml


# --------------------------------------------------------------------------- config

@click.group(context_settings=CONTEXT_SETTINGS)
def config():
    """Show or validate a configuration.

    \b
    Example:
      rnnlm config show --config configs/tiny.yaml --set model.cell=lstm
      rnnlm config validate --config configs/tiny.yaml
    """


@config.command("show")
@common_options
@click.option("--comments", is_flag=True, help="Annotate every key with its meaning (this is configs/default.yaml).")
@format_option(("yaml", "json"))
def config_show(config_path, overrides, comments, fmt):
    """Print the resolved configuration (defaults, file, then --set overrides).

    \b
    Example:
      rnnlm config show --config configs/tiny.yaml --set train.lr=0.5
      rnnlm config show --comments > configs/default.yaml
    """
    cfg = load_config(config_path, overrides)
    if fmt == "json":
        echo_json(cfg.to_dict())
    else:
        click.echo(to_yaml(cfg, comments=comments), nl=False)


@config.command("validate")
@common_options
def config_validate(config_path, overrides):
    """Check a configuration; exit 0 if valid, 2 with one error line if not.

    \b
    Example:
      rnnlm config validate --config configs/tiny.yaml
    """
    load_config(config_path, overrides)
    click.echo(f"OK: {config_path or 'built-in defaults'} is a valid configuration")
