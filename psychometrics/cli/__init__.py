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
instantly. Those two do not even import typer (a third of a bare start-up): this package is only
:func:`main`, which prints the help typer renders (kept in :mod:`psychometrics.cli.fast_help`, checked
against typer's by a test) or the version, and otherwise hands over to the app
(:mod:`psychometrics.cli.application`, whose names are also reachable here: ``psychometrics.cli.app``).
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    """Run the CLI: the exception that ends a command, if any, becomes one line and an exit code
    (:func:`psychometrics.cli.application.main`); ``--help`` and ``--version`` alone are answered here."""
    from psychometrics.cli.fast_help import answer

    if answer(sys.argv[1:] if argv is None else argv):
        sys.exit(0)
    from psychometrics.cli.application import main as run

    run(argv)


_APPLICATION_NAMES = frozenset({"app", "exit_code", "EXIT_FAILED", "EXIT_INPUT", "EXIT_UNREACHABLE", "EXIT_INTERNAL",
                                "EXIT_INTERRUPTED"})


def __getattr__(name: str):
    """The app's names (``app``, ``exit_code``, the ``EXIT_*`` codes) from :mod:`psychometrics.cli.application`."""
    if name not in _APPLICATION_NAMES:
        raise AttributeError(f"module 'psychometrics.cli' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module("psychometrics.cli.application"), name)


if __name__ == "__main__":
    main()
