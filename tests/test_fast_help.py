"""``psytest --help`` and ``--version`` are answered without importing typer (start-up: benchmarks/cli_startup.py),
and say exactly what typer says: the stored help is compared with typer's rendering, and a narrow terminal
(where typer wraps differently) still goes through typer."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from contextlib import redirect_stdout

from psychometrics.cli.fast_help import ROOT_HELP, rendered_by_typer


def _cli(*args: str, columns: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": str(columns)}
    return subprocess.run([sys.executable, "-m", "psychometrics", *args], capture_output=True, text=True, env=env,
                          timeout=120)


def test_the_stored_help_is_what_typer_renders():
    # if this fails after a command changed, regenerate: python -m psychometrics.cli.fast_help
    assert rendered_by_typer() == ROOT_HELP


def test_help_and_version_do_not_import_typer_and_print_what_typer_prints():
    code = ("import sys\nfrom psychometrics.cli import main\n"
            "try:\n    main([sys.argv[1]])\nexcept SystemExit as end:\n    code = end.code\n"
            "print('typer imported' if 'typer' in sys.modules else 'typer not imported', code, file=sys.stderr)")
    for flag in ("--help", "-h", "--version"):
        done = subprocess.run([sys.executable, "-c", code, flag], capture_output=True, text=True, timeout=120,
                              env={**os.environ, "COLUMNS": "120"})
        assert done.stderr.strip() == "typer not imported 0", done.stderr
    assert _cli("--help", columns=120).stdout == ROOT_HELP
    from psychometrics.cli.application import app

    out = io.StringIO()
    with redirect_stdout(out):
        app(args=["--version"], prog_name="psytest", standalone_mode=False)
    version = _cli("--version", columns=120)
    assert version.returncode == 0 and version.stdout == out.getvalue() and version.stdout.startswith("psytest ")


def test_a_narrow_terminal_gets_typers_own_layout():
    narrow = _cli("--help", columns=60)
    assert narrow.returncode == 0 and narrow.stdout != ROOT_HELP
    assert narrow.stdout.startswith("Usage: psytest [OPTIONS] COMMAND [ARGS]...")
    assert max(len(line) for line in narrow.stdout.splitlines()) <= 58  # wrapped for 60 columns, by typer
    other = _cli("--help", "--version", columns=120)  # not exactly a help request: typer decides (help first)
    assert other.returncode == 0 and other.stdout == ROOT_HELP


def test_the_terminal_width_is_read_as_click_reads_it(monkeypatch):
    import shutil

    from psychometrics.cli.fast_help import terminal_columns

    for value in ("100", "79", "abc", "-5", "0", None):
        if value is None:
            monkeypatch.delenv("COLUMNS", raising=False)
        else:
            monkeypatch.setenv("COLUMNS", value)
        assert terminal_columns() == shutil.get_terminal_size().columns, value
