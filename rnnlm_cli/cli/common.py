"""What every command shares: --config/--set, --format, --quiet and --debug, options as config
values (validated by their key's own validator), and printing results (strict JSON)."""

from __future__ import annotations

import functools
import json
import math

import click

from rnnlm_cli.config import option_kind, option_value
from rnnlm_cli.errors import ConfigError, DataError
from rnnlm_cli.values import SCHEMA_VERSION, jsonable

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


QUIET_HELP = "No progress bars or log lines on stderr (errors are always shown)."
DEBUG_HELP = "Show a traceback instead of a one-line error."


def quiet_option(func):
    """--quiet/-q as a parameter `quiet` of the command (commands without it get it from
    add_shared_options, and ask `quiet_requested()`)."""
    return click.option("--quiet", "-q", is_flag=True, help=QUIET_HELP)(func)


def _remember(name):
    def callback(ctx, param, value):
        if value:
            ctx.ensure_object(dict)[name] = True
    return callback


def add_shared_options(command: click.Command) -> None:
    """Give `command` and every subcommand --debug (also accepted after the subcommand, as
    before it) and --quiet/-q (where the command does not declare its own)."""
    commands = [command]
    while commands:
        cmd = commands.pop()
        if isinstance(cmd, click.Group):
            commands.extend(cmd.commands.values())
            continue
        names = {p.name for p in cmd.params}
        if "debug" not in names:
            cmd.params.append(click.Option(["--debug"], is_flag=True, expose_value=False, is_eager=True,
                                           callback=_remember("debug"), help=DEBUG_HELP))
        if "quiet" not in names:
            cmd.params.append(click.Option(["--quiet", "-q"], is_flag=True, expose_value=False,
                                           callback=_remember("quiet"), help=QUIET_HELP))


def quiet_requested() -> bool:
    """Whether --quiet was given to a command that does not take it as a parameter."""
    ctx = click.get_current_context(silent=True)
    return bool(ctx is not None and isinstance(ctx.obj, dict) and ctx.obj.get("quiet"))


class KeyValue(click.ParamType):
    """The type of an option that sets a configuration key: the text is read and validated by
    the key's own validator (config.option_value), so `--temperature nan` is refused exactly
    as `--set generate.temperature=.nan` is, naming the key."""

    def __init__(self, key: str):
        self.key = key
        self.name = option_kind(key)

    def convert(self, value, param, ctx):
        if not isinstance(value, str):
            return value
        try:
            return option_value(self.key, value)
        except ConfigError as exc:
            self.fail(str(exc), param, ctx)


def key_option(*decls, key: str, help: str, **kwargs):
    """An option that sets config key `key` (left out: None, the config's value stands);
    its help names the key."""
    return click.option(*decls, type=KeyValue(key), default=None, help=f"{help} ({key}).", **kwargs)


class FiniteFloat(click.ParamType):
    """A finite float above `low` (for options that set no config key, e.g. a gate's bound)."""

    name = "FLOAT"

    def __init__(self, low: float = 0.0):
        self.low = low

    def convert(self, value, param, ctx):
        if not isinstance(value, str):
            return value
        try:
            number = float(value)
        except ValueError:
            self.fail(f"expected a number, got {value!r}"[:200], param, ctx)
        if not math.isfinite(number) or number <= self.low:
            self.fail(f"expected a finite number > {self.low}, got {number}", param, ctx)
        return number


def given(values: dict) -> dict:
    """The options a user gave, by config key: given({"train.out": out_dir, ...}) drops the Nones
    (options left out). Pass it to Config.with_values: options enter the config as values."""
    return {key: value for key, value in values.items() if value is not None}


def echo_json(obj) -> None:
    """A result as strict JSON on stdout: NaN and infinities are written as null."""
    click.echo(json.dumps(jsonable(obj), indent=2, sort_keys=False, allow_nan=False))


def versioned(doc: dict) -> dict:
    """A JSON document with `schema_version` as its first key (docs/reference.md, Versions)."""
    return {"schema_version": SCHEMA_VERSION, **{k: v for k, v in doc.items() if k != "schema_version"}}


def emit(result, fmt: str, table, csv=None) -> None:
    """Print a result in the chosen --format: json (with schema_version), csv (csv(result)) or
    text (table(result))."""
    if fmt == "json":
        echo_json(versioned(result))
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
