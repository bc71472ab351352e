"""Running psytest's CLI inside a test process, and the shape every input error must have.

Used by the hostile-input tests: ``cli(capsys, "score", run)`` runs the command in this process and
returns ``(exit code, stdout, stderr)``; ``one_line_error`` asserts the contract for bad input (exit 2,
one line starting ``psytest: error:``, no traceback) and that the line names what it should.
"""

from __future__ import annotations


def cli(capsys, *args: object) -> tuple[int, str, str]:
    """Run ``psytest ARGS`` in this process (arguments made strings): (exit code, stdout, stderr)."""
    import pytest

    from psychometrics.cli import main

    with pytest.raises(SystemExit) as exited:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    return exited.value.code, out, err  # type: ignore[return-value]  # psytest exits with an int


def one_line_error(code: int, err: str, *needles: str) -> str:
    """Assert ``err`` is one input-error line (exit 2) containing every needle; returns the line."""
    assert code == 2, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("psytest: error: ") and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]
