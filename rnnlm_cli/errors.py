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
