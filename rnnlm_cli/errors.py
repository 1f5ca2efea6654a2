"""Exception hierarchy. The library raises these; the CLI turns them into one `Error: ...` line.

Exit codes: 2 for usage/configuration mistakes, 1 for data and runtime failures.
"""


class RnnlmError(Exception):
    """Base of every error the tool reports to a user (exit code 1)."""

    exit_code = 1


class ConfigError(RnnlmError):
    """A configuration or usage mistake: unknown key, wrong type, out-of-range value (exit 2)."""

    exit_code = 2


class DataError(RnnlmError):
    """Unreadable, empty or malformed corpus or prepared-data folder (exit 1)."""


class CheckpointError(RnnlmError):
    """A checkpoint that is missing, corrupted or incompatible with the configuration (exit 1)."""


class TrainingError(RnnlmError):
    """A failure during training, e.g. a non-finite loss under the `error` policy (exit 1)."""


BRIEF_LIMIT = 60


def brief(value, limit: int = BRIEF_LIMIT, quote: bool = True) -> str:
    """A user-supplied value as short text for an error message, never longer than about
    `limit` characters however large the value: repr(value) (with quote=False a str is shown
    as itself), cut with '...' and the full length when too long. Containers are shown through
    reprlib, so even a huge or deeply shared structure costs little to describe."""
    import reprlib

    if isinstance(value, str):
        text = repr(value) if quote else value
        full = len(value)
    elif isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 4 * limit:
        return f"an integer of about {int(value.bit_length() * 0.30103):,} digits"
    else:
        shown = reprlib.Repr()
        shown.maxstring = shown.maxother = shown.maxlong = limit
        shown.maxlevel = 3
        text = shown.repr(value)
        full = None
    if len(text) <= limit:
        return text
    size = f" ({full:,} characters)" if full is not None else ""
    return f"{text[:limit]}...{size}"


PATH_LIMIT = 300


def brief_path(path) -> str:
    """A path for an error message: as given, cut like `brief` when absurdly long (a real path is
    at most a few hundred characters; a pasted text given as a path is not)."""
    return brief(str(path), limit=PATH_LIMIT, quote=False)
