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
