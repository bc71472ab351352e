"""Malformed inventory files each produce their own one-line error; the CLI exits 2 without a traceback.

Every file in ``tests/data/inventories/malformed/`` starts with ``# expect: TEXT``: the part of the
error message that identifies that particular problem.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from psychometrics.errors import InventoryError, PsytestError
from psychometrics.inventories.model import load_inventory
from psychometrics.testing.waiting import HANG_GUARD_S

DATA = Path(__file__).parent / "data" / "inventories"
MALFORMED = sorted((DATA / "malformed").glob("*.yaml"))


def expected_message(path: Path) -> str:
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# expect: "), path
    return first.removeprefix("# expect: ")


def test_corpus_is_large_and_every_case_is_distinct():
    assert len(MALFORMED) >= 20
    expectations = [expected_message(p) for p in MALFORMED]
    assert len(set(expectations)) == len(expectations)


def test_the_base_file_of_the_corpus_is_valid():
    inv = load_inventory(DATA / "valid-minimal.yaml")
    assert [s.id for s in inv.scales] == ["E", "A"]
    assert inv.facet_of_item == {"e1": "E1", "e2": "E1"}


@pytest.mark.parametrize("path", MALFORMED, ids=lambda p: p.stem)
def test_malformed_file_gives_its_specific_one_line_error(path):
    with pytest.raises(PsytestError) as caught:
        load_inventory(path)
    message = str(caught.value)
    assert expected_message(path) in message
    assert message.startswith(str(path))
    assert "\n" not in message


def test_errors_name_the_item_and_field():
    path = DATA / "malformed" / "08-item-missing-text.yaml"
    with pytest.raises(InventoryError) as caught:
        load_inventory(path)
    assert caught.value.where == "item 'a1'"
    assert caught.value.problem == "missing required field 'text'"


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "psychometrics", *args], capture_output=True, text=True, timeout=HANG_GUARD_S
    )


def test_cli_validate_reports_each_malformed_file_on_one_line():
    result = run_cli("inventories", "validate", *map(str, MALFORMED))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == len(MALFORMED)
    for line, path in zip(lines, MALFORMED):
        assert line.startswith(f"psytest: error: {path}")
        assert expected_message(path) in line


def test_cli_validate_accepts_good_files():
    result = run_cli("inventories", "validate", str(DATA / "valid-minimal.yaml"))
    assert result.returncode == 0, result.stderr
    assert "ok (tiny: 5 items, 2 reverse-keyed, 2 scales, 1 facets)" in result.stdout


def test_missing_file_is_a_one_line_error():
    result = run_cli("inventories", "validate", "no/such/file.yaml")
    assert result.returncode == 2
    assert result.stderr.strip() == "psytest: error: no/such/file.yaml: no such file; check the path"


def test_yaml_tags_are_not_executed(tmp_path):
    """Safe loading: a python-object tag is a YAML error, not code execution."""
    path = tmp_path / "evil.yaml"
    path.write_text("id: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(PsytestError, match="YAML syntax error"):
        load_inventory(path)
