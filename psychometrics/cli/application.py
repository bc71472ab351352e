"""The ``psytest`` typer app assembled from the command groups, and the exit codes (see :mod:`psychometrics.cli`).

Imported by :func:`psychometrics.cli.main` for every command except ``psytest --help`` and ``--version``,
which :mod:`psychometrics.cli` answers without typer (:mod:`psychometrics.cli.fast_help`).
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
