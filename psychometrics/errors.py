"""Errors a user can fix.

Every error raised for bad input (a file, a field, an option, a run directory, or the environment a
command needs) is a :class:`PsytestError`. Its message is one line that names the file, field or option
at fault and says what to do. It is a :class:`ValueError`, so Python code that calls psytest catches it
as the bad value it is; which exit code it means is the command line's business
(:mod:`psychometrics.cli`), not the error's.
"""

from __future__ import annotations

# Control and format characters (ANSI escapes, bidi overrides) from a file, an option or a server's
# reply must not reach the terminal raw: they are shown escaped, as \x1b or \u202e (one rule for every
# output, in psychometrics.textsafe).
from psychometrics.textsafe import printable  # noqa: F401 - re-exported: errors and messages use it


class PsytestError(ValueError):
    """A problem with the user's input or environment, reported as one line."""

    def __init__(self, message: str):
        super().__init__(printable(" ".join(str(message).split())))

    @property
    def message(self) -> str:
        return str(self)


class InventoryError(PsytestError):
    """An inventory file that cannot be loaded or is inconsistent."""

    def __init__(self, source: str, where: str | None, problem: str):
        self.source = source
        self.where = where
        self.problem = problem
        location = f"{source}: {where}" if where else source
        super().__init__(f"{location}: {problem}")


class EndpointStopped(PsytestError):
    """A run stopped because the endpoint refuses every request (key, model name, URL, an unsupported
    parameter): the message says what to change. What was answered is kept; the same command resumes."""


class EndpointDown(PsytestError):
    """A run stopped because nothing answers at the endpoint (exit code 75: try again later). What was
    answered is kept; the same command resumes once the server is up."""


class ModelSpecError(PsytestError):
    """A ``--model`` string that names no backend or has bad parameters."""
