"""Hostile input, class "data loss or mixing": psytest must never overwrite what it did not write, never
certify a damaged or mixed set of files, and never treat a damaged store as a new one.

* ``--out`` at a folder of the user's files is refused by every command that writes (one line; the
  files are untouched); a psytest directory of another kind is refused too.
* Derived files are written as sets with a provenance record (:mod:`psychometrics.run.outputs`): a real
  SIGKILL between two writes, a file changed later, a file left from another write and a store that
  changed since are all reported by ``reproduce``.
* A store failing SQLite's quick check is refused by every command that opens it; ``reproduce`` runs the
  full integrity check. A store that lacks its tables, or has another schema version, is refused and
  never re-created (so nothing is sent again).
* ``export --duckdb`` quotes its table name and replaces the table in one transaction.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from psychometrics.cli import main
from psychometrics.testing.cli import cli, one_line_error
from psychometrics.run.outputs import KILL_AFTER_FILES, read_provenance

ROOT = Path(__file__).resolve().parents[1]
MINIMAL = ROOT / "tests" / "data" / "inventories" / "valid-minimal.yaml"
SIM = "sim/e=1,seed=3"


def psytest(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "psychometrics", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=600)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A finished questionnaire run (two samples, so every table has data) and a behaviour run."""
    base = tmp_path_factory.mktemp("runs")
    code = main_code("administer", "--model", SIM, "-i", str(MINIMAL), "--samples", "2", "--personas",
                     "trait-shaping", "--persona-ids", "baseline,extraversion-very-high", "--out", base / "q", "--json")
    assert code == 0
    code = main_code("behave", "--model", SIM, "--tasks", "dictator-game", "--variants", "2", "--personas",
                     "trait-shaping", "--persona-ids", "baseline,extraversion-very-high", "--out", base / "b", "--json")
    assert code == 0
    return base


def main_code(*args) -> int:
    try:
        main([str(a) for a in args])
    except SystemExit as exited:
        return exited.code
    return 0


def copy_run(run: Path, tmp_path: Path, name: str = "q") -> Path:
    target = tmp_path / name
    shutil.copytree(run / name, target)
    return target


def test_the_same_run_twice_in_validity_is_refused(run, capsys):
    """(Silent wrong data: its respondents would enter twice.)"""
    code, _, err = cli(capsys, "validity", "--selfreport", run / "q", "--behavior", run / "b", "--behavior", run / "b")
    one_line_error(code, err, f"--behavior {run / 'b'}", "given twice")


# -- --out at a folder of the user's files -----------------------------------------------------------

OUT_CASES = {
    # id: argv ({q}: questionnaire run, {b}: behaviour run, {out}: the user's folder or file)
    "administer": ["administer", "--model", SIM, "-i", str(MINIMAL), "--out", "{out}"],
    "behave": ["behave", "--model", SIM, "--tasks", "dictator-game", "--variants", "1", "--out", "{out}"],
    "score": ["score", "{q}", "--out", "{out}", "--no-structure"],
    "analyze": ["analyze", "{data}", "--inventory", str(MINIMAL), "--out", "{out}"],
    "report": ["report", "{q}", "--out", "{out}"],
    "compare": ["compare", "{q}", "{q}", "--out", "{out}"],
    "validity": ["validity", "--selfreport", "{q}", "--behavior", "{b}", "--out", "{out}", "--bootstrap", "100"],
    "baseline-file": ["baseline", "{q}", "--out", "{out}/notes.txt"],
    "export-csv-file": ["export", "{q}", "--csv", "{out}/notes.txt"],
}


@pytest.mark.parametrize("case", sorted(OUT_CASES))
def test_out_at_a_folder_of_the_users_files_is_refused(case, run, tmp_path, capsys):
    folder = tmp_path / "my-files"
    folder.mkdir()
    (folder / "notes.txt").write_text("my own notes\n")
    (folder / "scores.csv").write_text("my,own,table\n")
    data = tmp_path / "data.csv"
    data.write_text("e1,e2,e3,a1,a2\n1,2,3,4,5\n2,3,4,5,1\n3,3,3,3,3\n")
    argv = [a.replace("{q}", str(run / "q")).replace("{b}", str(run / "b")).replace("{out}", str(folder))
            .replace("{data}", str(data)) for a in OUT_CASES[case]]
    code, _, err = cli(capsys, *argv)
    one_line_error(code, err, str(folder), "psytest did not write", "new")
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt", "scores.csv"]
    assert (folder / "notes.txt").read_text() == "my own notes\n" and (folder / "scores.csv").read_text() == "my,own,table\n"


def test_a_psytest_directory_of_another_kind_and_a_foreign_manifest_are_refused(run, tmp_path, capsys):
    q = copy_run(run, tmp_path)
    code, _, err = cli(capsys, "report", q, "--out", q / "analysis")
    one_line_error(code, err, "holds psytest's analysis files, not report files")
    code, _, err = cli(capsys, "score", q, "--out", q / "report")  # report/ does not exist yet: made, fine
    assert code == 0, err
    code, _, err = cli(capsys, "compare", q, q, "--out", q / "report")
    one_line_error(code, err, "holds psytest's analysis files, not comparison files")
    web = tmp_path / "web"
    web.mkdir()
    (web / "manifest.json").write_text(json.dumps({"name": "my web app", "icons": []}))
    code, _, err = cli(capsys, "administer", "--model", SIM, "-i", str(MINIMAL), "--out", web)
    one_line_error(code, err, "manifest.json is not a psytest run manifest")
    assert sorted(p.name for p in web.iterdir()) == ["manifest.json"]


def test_psytest_rewrites_its_own_outputs_and_empty_or_new_folders(run, tmp_path, capsys):
    q = copy_run(run, tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    for argv in (["score", q, "--out", empty, "--no-structure"], ["score", q, "--out", empty, "--no-structure"],
                 ["report", q], ["report", q], ["compare", q, q, "--out", tmp_path / "new" / "cmp"],
                 ["baseline", q, "--out", tmp_path / "base.json"], ["baseline", q, "--out", tmp_path / "base.json"],
                 ["export", q, "--csv", tmp_path / "all.csv"], ["export", q, "--csv", tmp_path / "all.csv"]):
        code, _, err = cli(capsys, *argv)
        assert code == 0, (argv, err)
    assert read_provenance(empty)["kind"] == "analysis" and read_provenance(q / "report")["state"] == "complete"


# -- derived sets: a SIGKILL between writes, changed and stale files --------------------------------


def _report_files(q: Path) -> list[str]:
    return list(read_provenance(q / "report")["files"])


@pytest.mark.parametrize("where", ["after-the-first-csv", "after-every-csv", "after-the-page"])
def test_a_report_killed_between_writes_is_not_certified(where, run, tmp_path):
    q = copy_run(run, tmp_path)
    assert psytest("report", q).returncode == 0
    files = _report_files(q)
    csvs = sum(name.endswith(".csv") for name in files)
    stop = {"after-the-first-csv": 1, "after-every-csv": csvs, "after-the-page": csvs + 1}[where]
    before = {name: (q / "report" / name).read_bytes() for name in ("summary.json", "report.html")}
    killed = psytest("report", q, env={KILL_AFTER_FILES: str(stop)})
    assert killed.returncode == -signal.SIGKILL  # a real SIGKILL, between two writes of the real code path
    if where != "after-the-page":  # the earlier page and summary are still there: an older set, mixed
        assert (q / "report" / "summary.json").read_bytes() == before["summary.json"]
    assert read_provenance(q / "report")["state"] == "writing"
    verdict = psytest("reproduce", q)
    assert verdict.returncode == 1 and "NOT REPRODUCED: a write was cut short: report/provenance.json" in verdict.stdout
    assert psytest("report", q).returncode == 0  # written again: one complete set
    again = psytest("reproduce", q)
    assert again.returncode == 0 and "REPRODUCED" in again.stdout, again.stdout


def test_a_score_killed_between_writes_is_not_certified(run, tmp_path):
    q = copy_run(run, tmp_path)
    killed = psytest("score", q, "--no-structure", env={KILL_AFTER_FILES: "3"})
    assert killed.returncode == -signal.SIGKILL
    verdict = psytest("reproduce", q)
    assert verdict.returncode == 1 and "a write was cut short: analysis/provenance.json" in verdict.stdout


@pytest.mark.parametrize("change", ["summary-edited", "page-from-another-run", "table-left-behind", "table-deleted"])
def test_a_set_changed_after_it_was_written_is_not_certified(change, run, tmp_path, capsys):
    q = copy_run(run, tmp_path)
    assert cli(capsys, "report", q)[0] == 0
    report = q / "report"
    if change == "summary-edited":
        (report / "summary.json").write_text("{}\n")
        needle = "changed after its set was written: report/summary.json"
    elif change == "page-from-another-run":
        (report / "report.html").write_text("<html>an older report</html>")
        needle = "changed after its set was written: report/report.html"
    elif change == "table-left-behind":
        shutil.copy(q / "analysis" / "scores.csv", report / "scores-old.csv")
        needle = "left from another write: report/scores-old.csv"
    else:
        (report / "norms.csv").unlink()
        needle = "missing from its set: report/norms.csv"
    code, out, _ = cli(capsys, "reproduce", q)
    assert code == 1 and needle in out, out


def test_tables_copied_from_another_run_are_stale(run, tmp_path, capsys):
    q = copy_run(run, tmp_path)
    other = tmp_path / "other"
    assert cli(capsys, "administer", "--model", "sim/e=-1,seed=9", "-i", str(MINIMAL), "--out", other, "--json")[0] == 0
    shutil.rmtree(other / "analysis")
    shutil.copytree(q / "analysis", other / "analysis")
    code, out, _ = cli(capsys, "reproduce", other)
    assert code == 1 and "made from an earlier state of the store or manifest: analysis/provenance.json" in out


def test_a_baseline_records_what_it_was_made_from(run, tmp_path, capsys):
    assert cli(capsys, "baseline", run / "q", "--out", tmp_path / "b.json")[0] == 0
    made_from = json.loads((tmp_path / "b.json").read_text())["derived_from"]
    assert made_from["store"]["rows"] == 20 and len(made_from["manifest_sha256"]) == 64


def test_a_report_made_before_the_store_changed_is_stale(tmp_path, capsys):
    """The first run's requests fail (the server sends no text); the report is made; the re-run answers
    them and rewrites analysis/, not report/: the report is from an earlier state of the store."""
    from psychometrics.models.simulated import SimulatedRespondent
    from psychometrics.testing.openai_server import start_server

    broken = {"on": True, "sent": 0}

    def rewrite(body):  # while broken, every other reply has no text: those requests are failures
        broken["sent"] += 1
        if broken["on"] and broken["sent"] % 2:
            body["choices"][0]["message"]["content"] = None
        return body

    q = tmp_path / "q"
    with start_server(SimulatedRespondent("sim/seed=1"), rewrite=rewrite) as server:
        argv = ["administer", "--model", "openai/sim", "--api-base", server.base_url, "-i", str(MINIMAL),
                "--samples", "4", "--out", q, "--max-retries", "0", "--json"]
        assert cli(capsys, *argv)[0] == 1  # some requests failed
        assert cli(capsys, "report", q)[0] == 0
        broken["on"] = False
        assert cli(capsys, *argv)[0] == 0
    code, out, _ = cli(capsys, "reproduce", q)
    assert code == 1 and "made from an earlier state of the store or manifest: report/provenance.json" in out, out
    assert "analysis/" not in out.split("NOT REPRODUCED")[1]  # analysis/ was rewritten by the re-run: current


# -- damaged stores -----------------------------------------------------------------------------------


def _rollback_journal(db: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=DELETE")  # every page in the file, nothing in a -wal
    return conn


def corrupt_index_page(db: Path) -> None:
    """Zero the header of the index's root page: table scans still work, quick_check does not."""
    conn = _rollback_journal(db)
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'responses_item'").fetchone()[0]
    size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    with open(db, "r+b") as handle:
        handle.seek((root - 1) * size)
        handle.write(b"\0" * 16)


def desync_index(db: Path) -> None:
    """Change a row behind its index's back: every page is sound (quick_check passes), the index no
    longer matches its table (integrity_check fails)."""
    conn = _rollback_journal(db)
    entry = conn.execute("SELECT type, name, tbl_name, rootpage, sql FROM sqlite_master "
                         "WHERE name = 'responses_item'").fetchone()
    conn.execute("PRAGMA writable_schema=ON")
    conn.execute("DELETE FROM sqlite_master WHERE name = 'responses_item'")
    conn.commit()
    conn.close()
    conn = sqlite3.connect(db)
    conn.execute("UPDATE responses SET item_id = item_id || 'x' WHERE rowid = 1")
    conn.commit()
    conn.execute("PRAGMA writable_schema=ON")
    conn.execute("INSERT INTO sqlite_master (type, name, tbl_name, rootpage, sql) VALUES (?, ?, ?, ?, ?)", entry)
    conn.commit()
    conn.close()


CORRUPT_COMMANDS = {
    "administer-resume": ["administer", "--model", SIM, "-i", str(MINIMAL), "--samples", "2", "--personas",
                          "trait-shaping", "--persona-ids", "baseline,extraversion-very-high", "--out", "{q}"],
    "administer-dry-run": ["administer", "--model", SIM, "-i", str(MINIMAL), "--samples", "2", "--personas",
                           "trait-shaping", "--persona-ids", "baseline,extraversion-very-high", "--out", "{q}", "--dry-run"],
    "score": ["score", "{q}", "--no-structure"],
    "report": ["report", "{q}"],
    "compare": ["compare", "{q}", "{q}"],
    "baseline": ["baseline", "{q}", "--out", "{tmp}/b.json"],
    "check": ["check", "{q}", "--baseline", "{tmp}/good.json"],
    "reproduce": ["reproduce", "{q}"],
    "export": ["export", "{q}", "--csv", "{tmp}/x.csv"],
    "validity": ["validity", "--selfreport", "{q}", "--behavior", "{b}", "--out", "{tmp}/v", "--bootstrap", "100"],
}


@pytest.mark.parametrize("command", sorted(CORRUPT_COMMANDS))
def test_a_store_failing_the_quick_check_is_refused_by_every_command(command, run, tmp_path, capsys):
    q = copy_run(run, tmp_path)
    assert cli(capsys, "baseline", q, "--out", tmp_path / "good.json")[0] == 0
    corrupt_index_page(q / "responses.sqlite")
    before = (q / "responses.sqlite").read_bytes()
    argv = [a.replace("{q}", str(q)).replace("{b}", str(run / "b")).replace("{tmp}", str(tmp_path))
            for a in CORRUPT_COMMANDS[command]]
    code, _, err = cli(capsys, *argv)
    one_line_error(code, err, "responses.sqlite", "fails SQLite's quick_check", "restore it from a backup")
    assert (q / "responses.sqlite").read_bytes() == before  # nothing written to it


def test_reproduce_runs_the_full_integrity_check(run, tmp_path, capsys):
    q = copy_run(run, tmp_path)
    desync_index(q / "responses.sqlite")
    assert cli(capsys, "score", q, "--no-structure")[0] == 0  # the quick check passes: pages are sound
    code, _, err = cli(capsys, "reproduce", q)
    one_line_error(code, err, "responses.sqlite", "fails SQLite's integrity_check", "missing from index")


SCHEMA_DAMAGE = {
    "responses-dropped": ("DROP TABLE responses", "lacks its 'responses' table"),
    "prompts-dropped": ("DROP TABLE prompts", "lacks its 'prompts' table"),
    "meta-dropped": ("DROP TABLE meta", "not a psytest store (no 'meta' table)"),
    "schema-version-from-the-future": ("UPDATE meta SET value = '99' WHERE key = 'schema_version'",
                                       "schema version '99', but this psytest reads versions 1 to 3; upgrade psytest"),
    "schema-version-missing": ("DELETE FROM meta", "schema version none"),
    "another-programs-database": ("DROP TABLE meta; DROP TABLE responses; DROP TABLE prompts; CREATE TABLE t(x)",
                                  "not a psytest store"),
}


@pytest.mark.parametrize("damage", sorted(SCHEMA_DAMAGE))
def test_a_store_without_its_tables_is_refused_never_recreated(damage, run, tmp_path, capsys):
    sql, needle = SCHEMA_DAMAGE[damage]
    q = copy_run(run, tmp_path)
    conn = sqlite3.connect(q / "responses.sqlite")
    conn.executescript(sql)
    conn.close()
    tables = _tables(q / "responses.sqlite")
    argv = ["administer", "--model", SIM, "-i", str(MINIMAL), "--samples", "2", "--personas", "trait-shaping",
            "--persona-ids", "baseline,extraversion-very-high", "--out", q, "--json"]
    code, out, err = cli(capsys, *argv)
    one_line_error(code, err, "responses.sqlite", needle)
    assert out == "" and _tables(q / "responses.sqlite") == tables  # nothing sent, nothing re-created
    code, _, err = cli(capsys, "score", q)
    one_line_error(code, err, needle)


def test_a_behaviour_store_without_its_table_is_refused(run, tmp_path, capsys):
    b = copy_run(run, tmp_path, "b")
    conn = sqlite3.connect(b / "behavior.sqlite")
    conn.execute("DROP TABLE conversations")
    conn.close()
    code, out, err = cli(capsys, "behave", "--model", SIM, "--tasks", "dictator-game", "--variants", "2",
                         "--personas", "trait-shaping", "--persona-ids", "baseline,extraversion-very-high", "--out", b)
    one_line_error(code, err, "behavior.sqlite", "lacks its 'conversations' table")
    assert "conversations" not in _tables(b / "behavior.sqlite")


def _tables(db: Path) -> list[str]:
    conn = sqlite3.connect(db)
    try:
        return sorted(r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"))
    finally:
        conn.close()


# -- export to DuckDB ---------------------------------------------------------------------------------

duckdb = pytest.importorskip("duckdb")


@pytest.mark.parametrize("table", ["select", "order", "from_", "Responses2"])
def test_export_table_names_that_are_keywords_are_quoted(table, run, tmp_path, capsys):
    database = tmp_path / "study.duckdb"
    code, _, err = cli(capsys, "export", run / "q", "--duckdb", database, "--table", table)
    assert code == 0, err
    conn = duckdb.connect(str(database))
    assert [r[0] for r in conn.execute("SHOW TABLES").fetchall()] == [table]
    assert conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0] == 20
    conn.close()


@pytest.mark.parametrize("table", ["drop table x", "a;b", 'a"b', "t\u00e9", "1abc", "", "x" * 64])
def test_export_table_names_that_are_not_plain_are_refused_first(table, run, tmp_path, capsys):
    code, _, err = cli(capsys, "export", run / "q", "--csv", tmp_path / "a.csv", "--duckdb", tmp_path / "d.duckdb",
                       "--table", table)
    one_line_error(code, err, "--table", "not a plain SQL name")
    assert not (tmp_path / "a.csv").exists() and not (tmp_path / "d.duckdb").exists()


@pytest.mark.parametrize("kind", ["text-file", "the-run-store"])
def test_export_into_a_file_that_is_not_a_duckdb_database_changes_nothing(kind, run, tmp_path, capsys):
    target = tmp_path / "notes.txt" if kind == "text-file" else copy_run(run, tmp_path) / "responses.sqlite"
    if kind == "text-file":
        target.write_text("my notes\n")
    before = target.read_bytes()
    code, _, err = cli(capsys, "export", run / "q", "--duckdb", target)
    one_line_error(code, err, f"--duckdb {target}", "cannot open it as a DuckDB database")
    assert target.read_bytes() == before  # and no extension was downloaded to read a SQLite file


def test_an_export_that_fails_half_way_changes_nothing(run, tmp_path, monkeypatch):
    from psychometrics.run import export

    database = tmp_path / "study.duckdb"
    assert export.to_duckdb(run / "q", database, table="select", chunksize=7) == 20
    real = export.iter_responses

    def failing(*args, **kwargs):
        chunks = real(*args, **kwargs)
        yield next(chunks)
        raise OSError("disk full")

    monkeypatch.setattr(export, "iter_responses", failing)
    with pytest.raises(OSError, match="disk full"):
        export.to_duckdb(run / "q", database, table="select", chunksize=7)
    conn = duckdb.connect(str(database))
    assert [r[0] for r in conn.execute("SHOW TABLES").fetchall()] == ["select"]  # no staging table left
    assert conn.execute('SELECT count(*) FROM "select"').fetchone()[0] == 20  # the old table, whole
    conn.close()
    with pytest.raises(OSError, match="disk full"):
        export.to_duckdb(run / "q", tmp_path / "new.duckdb", table="t", chunksize=7)
    assert not (tmp_path / "new.duckdb").exists()  # a database this call created is not left behind
