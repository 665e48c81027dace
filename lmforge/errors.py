"""The errors that many layers raise, each phrased as one line for the user.

    from lmforge.errors import ConfigError, StageError

The CLI turns a ConfigError into exit code 2 and a StageError into exit code 1, printing only
the message. Errors that belong to one module (ToolError, TokenizerError, ...) stay there.
"""


class ConfigError(ValueError):
    """A config problem, phrased as one line for the user."""


class StageError(RuntimeError):
    """A stage cannot run (missing inputs, bad data); the message is one line for the user."""
