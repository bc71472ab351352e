"""``psytest --help`` and ``psytest --version`` without importing typer.

Importing typer and the command definitions is most of psytest's start-up; the root help is the same
text every time, so it is kept here as typer renders it (:data:`ROOT_HELP`, at click's widest layout,
78 columns) and printed when the command line is exactly ``--help`` or ``-h`` and the terminal is at
least 80 columns wide (narrower ones, where typer wraps differently, go through typer). A test renders
the help through typer and compares; after changing a command's name or first docstring line, regenerate
it with ``python -m psychometrics.cli.fast_help``.
"""

from __future__ import annotations

import os
import sys

ROOT_HELP = """\
Usage: psytest [OPTIONS] COMMAND [ARGS]...

  Measure the personality an LLM presents, with the rigour of a psychometrics
  lab.

Options:
  --version   Print the version and exit.
  -h, --help  Show this message and exit.

Commands:
  templates    List the instruction templates, each with the prompt it...
  administer   Administer inventories to a model under a factorial...
  score        Score a run and compute every derived table: norms,...
  analyze      Analyse item data from a file (e.g.
  report       Write a self-contained HTML report with figures, its CSV...
  compare      Differences per scale between runs, with CIs, effect...
  baseline     Write a baseline file of the run's scale scores and their...
  check        Exit 0 when every scale is within tolerance of the...
  reproduce    Recompute every derived file from the store and verify it...
  behave       Run behavioural tasks on a model (a session separate from...
  validity     Does what a model says about itself predict what it does?...
  export       Export a run's answers (one row per answer, design cell as...
  study        Run a study across models: a run per model (each...
  inventories  List, show and validate personality inventories.
  personas     List and show persona sets.
  tasks        List, show and validate behavioural tasks.
"""

#: The terminal width from which click lays help out at its widest (``max_width`` 80, minus 2).
FULL_WIDTH_COLUMNS = 80


def terminal_columns() -> int:
    """``shutil.get_terminal_size().columns`` (what click lays help out by) without importing shutil, which
    would take as long as the rest of this start-up: ``COLUMNS`` if a positive number, else the width
    of the terminal on stdout, else 80."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
        columns = columns or 80
    return columns


def answer(argv: list[str]) -> bool:
    """Print the root help or the version when ``argv`` asks only for that (and the help's layout is the
    stored one); whether it did (else typer handles the command line)."""
    if argv in (["--help"], ["-h"]) and terminal_columns() >= FULL_WIDTH_COLUMNS:
        text = ROOT_HELP
    elif argv == ["--version"]:
        from psychometrics import __version__

        text = f"psytest {__version__}\n"
    else:
        return False
    from psychometrics.cli.terminal import echo_fast

    echo_fast(text)
    return True


def rendered_by_typer() -> str:
    """The root help as typer prints it at full width (what :data:`ROOT_HELP` must equal)."""
    import io
    from contextlib import redirect_stdout

    from typer._click import formatting

    from psychometrics.cli.application import app

    forced, formatting.FORCED_WIDTH = formatting.FORCED_WIDTH, FULL_WIDTH_COLUMNS - 2
    out = io.StringIO()
    try:
        with redirect_stdout(out):
            app(args=["--help"], prog_name="psytest", standalone_mode=False)
    finally:
        formatting.FORCED_WIDTH = forced
    return out.getvalue()


if __name__ == "__main__":  # regenerate ROOT_HELP in this file from typer's rendering
    from pathlib import Path

    source = Path(__file__).read_text(encoding="utf-8")
    start = source.index('ROOT_HELP = """\\\n') + len('ROOT_HELP = """\\\n')
    end = source.index('"""', start)
    Path(__file__).write_text(source[:start] + rendered_by_typer() + source[end:], encoding="utf-8")
    from psychometrics.cli.terminal import echo

    echo(f"updated {__file__}")
