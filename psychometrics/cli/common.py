"""What the command modules share: option types used by several commands, and the end of a sending run.

A command whose work finished but whose result is a failure (requests that failed after their
retries, drift beyond tolerance, a run that does not reproduce) raises :class:`CommandFailed`;
:func:`psychometrics.cli.main` turns it into exit code 1.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from psychometrics.cli.terminal import echo

# psychometrics.models.DEFAULT_MODEL, written out: importing the models package would slow down --help
DEFAULT_MODEL = "local/qwen2.5-0.5b"
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
Threads = Annotated[Optional[int], typer.Option(min=1, max=256, help="Local models: generation threads.", show_default="1")]
ThreadsBatch = Annotated[Optional[int], typer.Option(min=1, max=256, help="Local models: prompt-evaluation threads.",
                                                      show_default="2")]
MaxRetries = Annotated[int, typer.Option(min=0, max=100, help="Retries of rate limits, 5xx and timeouts.")]
Personas = Annotated[
    Optional[str], typer.Option(help="Persona set: trait-shaping, neutral-biographies, or a YAML path.", show_default="none")
]
PersonaIds = Annotated[Optional[str], typer.Option(help="Comma list of persona ids to use from the set.",
                                                   show_default="all in the set")]
# What --timeout None means: the HTTP backend's limit (openai_http.DEFAULT_TIMEOUT_S), litellm's own otherwise
TIMEOUT_DEFAULT = "600 s for OpenAI-compatible servers, litellm's own for providers; none for local models"
TIMEOUT_HELP = ("Seconds a request may wait for its answer, counted from when the server could start on it: "
                "time queued behind this run's other requests does not count while answers keep arriving.")
ConnectTimeout = Annotated[Optional[float], typer.Option(
    min=0.001, help="Seconds to open a connection to an OpenAI-compatible server (--api-base); a server that "
    "accepts none counts towards stopping the run.", show_default="10")]


#: Exit code of a run that finished with most replies cut off at max_tokens (unread: outcome truncated)
EXIT_CUT_OFF = 3


class CommandFailed(Exception):
    """The command ran, and its result is a failure: exit ``code`` (1 unless said), after ``message`` (if
    any) on stderr."""

    def __init__(self, message: str | None = None, code: int = 1):
        super().__init__(message or "")
        self.message = message
        self.code = code


def mostly_cut_off(stats) -> bool:
    """Whether more than half of the units this run got a reply for were cut off at ``max_tokens``."""
    replied = stats.sent - stats.failed
    return replied > 0 and stats.cut_off * 2 > replied


def finish_run(stats, noun: str, remedy: str = "a larger --max-tokens, or with --on-truncated reask:N") -> None:
    """After a run's summary: a note when timed-out requests were sent again (possibly billed twice); a
    warning when most replies were cut off at ``max_tokens``; :class:`CommandFailed` with one line when
    requests failed (exit 1), else when most replies were cut off (exit :data:`EXIT_CUT_OFF`)."""
    if stats.timeouts_retried:
        echo(f"psytest: note: {stats.timeouts_retried} timed-out {noun} were sent again; the server may "
             "have received, and billed, both", err=True)
    cut = mostly_cut_off(stats)
    if cut:
        echo(f"psytest: warning: {stats.cut_off} of {stats.sent - stats.failed} {noun} answered were cut off at "
             "max_tokens (outcome truncated: missing in the analysis; or scored cut short); run again in a new "
             f"directory with {remedy}", err=True)
    if stats.failed:
        reason = " ".join((stats.first_error or "unknown error").split())
        reason = reason if len(reason) <= 300 else reason[:297] + "..."
        raise CommandFailed(f"psytest: {stats.failed} of {stats.sent} {noun} failed ({reason}); re-run the same "
                            "command to retry them")
    if cut:
        raise CommandFailed(code=EXIT_CUT_OFF)
