"""What every command shares: --config/--set, --format, --quiet, options as config values,
and printing results."""

from __future__ import annotations

import functools
import json

import click

from rnnlm_cli.errors import DataError

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


def given(values: dict) -> dict:
    """The options a user gave, by config key: given({"train.out": out_dir, ...}) drops the Nones
    (options left out). Pass it to Config.with_values: options enter the config as values."""
    return {key: value for key, value in values.items() if value is not None}


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


def read_json(path: str):
    """A JSON file's content; DataError (one line, exit 1) when it cannot be read or parsed."""
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
