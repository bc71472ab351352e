"""The ``psytest`` command line: the typer app, one module per command group, and the exit codes.

Commands are thin: each parses its options, calls the function of :mod:`psychometrics.api` with the same
names, and prints what it returns through :mod:`psychometrics.cli.terminal` (which escapes control
characters). The groups:

==========================  =============================================================
``cli.inventories``         ``inventories list|show|validate``, ``templates``, ``personas list|show``
``cli.administer``          ``administer``
``cli.analysis``            ``score``, ``analyze``
``cli.reports``             ``report``, ``compare``, ``baseline``, ``check``, ``reproduce``
``cli.behavior``            ``tasks list|show|validate``, ``behave``, ``validity``
``cli.export``              ``export``
``cli.study``               ``study``
``cli.common``              option types several commands share; :class:`CommandFailed`
==========================  =============================================================

Exit codes are decided here, in :func:`main`, from the exception that ends a command (nothing below the
CLI knows them), each with one line on stderr and no traceback:

* 2: an input error: :class:`~psychometrics.errors.PsytestError` (a file, field, option or run directory
  the user can fix), a usage error (unknown option, bad value), an ``OSError`` (an unwritable ``--out``,
  a full disk) or an SQLite error on a store the library did not name.
* 1: the command ran and its result is a failure (:class:`~psychometrics.cli.common.CommandFailed`):
  requests that failed after their retries, drift beyond tolerance, a run that does not reproduce.
* 3: a run (``administer``, ``behave``) finished with most of the replies it got cut off at ``max_tokens``
  (:data:`~psychometrics.cli.common.EXIT_CUT_OFF`): stored, outcome ``truncated``, but unread; a warning
  line says what to change. Failed requests take precedence (exit 1).
* 75: a sending run stopped because nothing answers at its endpoint
  (:class:`~psychometrics.errors.EndpointDown`): what was answered is kept; the same command resumes
  once the server is up. (A run stopped because the endpoint refuses every request, a rejected key or
  an unknown model, is an input error: 2.)
* 130: interrupted (Ctrl-C).
* 70: anything else is a bug, ``psytest: internal error (...)``; ``PSYTEST_DEBUG=1`` shows the traceback.
  A plain ``ValueError`` from deep code is one of these: only a ``PsytestError`` carries a message
  written for the user.

Heavy libraries are imported inside the commands, so ``psytest --help`` and ``psytest --version`` start
instantly.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated, Optional

import typer

from psychometrics import __version__
from psychometrics.cli import administer, analysis, behavior, export, inventories, reports, study
from psychometrics.cli.common import CommandFailed
from psychometrics.cli.terminal import echo, echo_error
from psychometrics.errors import EndpointDown, PsytestError

EXIT_FAILED = 1
EXIT_INPUT = 2
EXIT_UNREACHABLE = 75  # sysexits' EX_TEMPFAIL: nothing answers at the endpoint; the same command resumes later
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130

app = typer.Typer(
    name="psytest",
    help="Measure the personality an LLM presents, with the rigour of a psychometrics lab.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version_callback(value: bool) -> None:
    if value:
        echo(f"psytest {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        Optional[bool],
        typer.Option("--version", callback=_version_callback, is_eager=True, help="Print the version and exit."),
    ] = None,
) -> None:
    """Measure the personality an LLM presents, with the rigour of a psychometrics lab."""


for _group in (inventories, administer, analysis, reports, behavior, export, study):
    _group.register(app)


def _click_exceptions():
    """click's exception classes as typer uses them (typer >= 0.29 vendors click as ``typer._click``)."""
    try:
        from typer._click import exceptions
    except ImportError:  # older typer depends on click itself
        from click import exceptions
    return exceptions


def _is_sqlite_error(exc: BaseException) -> bool:
    sqlite3 = sys.modules.get("sqlite3")  # not imported: then no store was opened, and this is not one
    return sqlite3 is not None and isinstance(exc, sqlite3.Error)


def exit_code(exc: BaseException) -> int | None:
    """The exit code ``exc`` means, after printing its one line on stderr; None for a bug (see the module
    docstring), which :func:`main` reports as an internal error."""
    if isinstance(exc, EndpointDown):
        echo_error(exc)
        return EXIT_UNREACHABLE
    if isinstance(exc, PsytestError):
        echo_error(exc)
        return EXIT_INPUT
    if isinstance(exc, _click_exceptions().UsageError):
        command = exc.ctx.command_path if exc.ctx is not None else "psytest"
        echo_error(f"{exc.format_message()} (see '{command} --help')")
        return EXIT_INPUT
    if isinstance(exc, CommandFailed):
        if exc.message:
            echo(exc.message, err=True)
        return exc.code
    if isinstance(exc, (typer.Abort, KeyboardInterrupt)):  # typer >= 0.29 has no Abort in its vendored click
        echo("psytest: interrupted", err=True)
        return EXIT_INTERRUPTED
    if isinstance(exc, OSError):  # an unwritable --out, a full disk, a file where a directory should be
        where = f"{exc.filename}: " if exc.filename else ""
        echo_error(f"{where}{exc.strerror or exc}; check the path and its permissions")
        return EXIT_INPUT
    if _is_sqlite_error(exc):  # a store the library did not name: still one line
        echo_error(f"a run's SQLite store could not be read or written ({type(exc).__name__}: {exc}); check that "
                   "it is a store psytest wrote and that it is writable")
        return EXIT_INPUT
    return None


def main(argv: list[str] | None = None) -> None:
    """Run the CLI: the exception that ends a command, if any, becomes one line and an exit code."""
    import warnings

    from psychometrics.cli.terminal import show_warning

    warnings.showwarning = show_warning  # a warning's text goes through the sanitiser like everything else
    try:
        result = app(args=argv, prog_name="psytest", standalone_mode=False)
    except (Exception, KeyboardInterrupt) as exc:
        code = exit_code(exc)
        if code is None:  # a bug, or input nothing foresaw: still one line, no traceback
            if os.environ.get("PSYTEST_DEBUG"):
                raise
            echo_error(f"internal error ({type(exc).__name__}: {exc}); this is a bug in psytest: please report it "
                       "with the command that caused it (PSYTEST_DEBUG=1 shows where it happened)")
            code = EXIT_INTERNAL
        sys.exit(code)
    sys.exit(result if isinstance(result, int) else 0)


if __name__ == "__main__":
    main()
