"""What every command shares: --config/--set, --format, --quiet, and printing results."""

from __future__ import annotations

import functools
import json

import click

from rnnlm_cli.config import load_config

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def common_options(func):
    """--config FILE and repeatable --set section.key=value, shared by every command."""

    @click.option("--config", "config_path", type=click.Path(), default=None,
                  help="YAML configuration file (defaults are built in).")
    @click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
                  help="Override one configuration key (repeatable); the value is a YAML scalar.")
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        return func(*args, **kwargs)

    return wrapper


def format_option(choices=("table", "json")):
    """--format for machine-readable output on stdout."""
    return click.option("--format", "fmt", type=click.Choice(choices), default=choices[0], show_default=True,
                        help="Output format on stdout.")


def quiet_option(func):
    return click.option("--quiet", "-q", is_flag=True, help="No progress bars or log lines on stderr.")(func)


def load_cfg(config_path, overrides):
    """Load and validate the configuration (raises ConfigError, exit 2)."""
    return load_config(config_path, list(overrides))


def echo_json(obj) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=False))


def emit(result, fmt: str, table, csv=None) -> None:
    """Print a result in the chosen --format: json, csv (csv(result)) or text (table(result))."""
    if fmt == "json":
        echo_json(result)
    elif fmt == "csv":
        click.echo(csv(result), nl=False)
    else:
        click.echo(table(result))
