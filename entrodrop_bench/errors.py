"""User-facing errors: one clear paragraph, no traceback unless --debug."""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input (config, data, files) that they can fix.

    The CLI prints only the message; `--debug` shows the traceback.
    """


class ConfigError(UserError):
    """An invalid experiment config. The message names the key path, the value and what is allowed."""


class DataError(UserError):
    """A missing, empty or malformed corpus, benchmark or cache file."""


class TrainingDiverged(UserError):
    """The loss became non-finite; the message names the step and the method."""


SHOWN_CHARS = 160
"""The most characters of a value that an error message shows."""


def shown(value: object, limit: int = SHOWN_CHARS) -> str:
    """`repr(value)` cut to a readable length (every error that echoes a value uses this): a 50 MB value or a
    YAML alias bomb never turns into an error message of the same size."""
    try:
        text = repr(value)
    except (RecursionError, ValueError, MemoryError):
        text = f"<{type(value).__name__}>"
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} characters)"
