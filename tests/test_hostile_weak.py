"""Hostile input, class "weak": cases psytest handled, but badly.

* A finished run on a read-only mount is read (SQLite's ``immutable`` mode when nothing can write
  beside the store; tested in a real read-only bind mount, and with the flag simulated).
* A stored value outside the response scale is set missing when scoring, never reverse-keyed into
  nonsense, and the tables say how many.
* ``score`` replaces its whole set of tables: a table an earlier call wrote and this one does not is gone.
* A design level given twice is refused (it would double-count "already answered").
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from psychometrics.cli import main
from psychometrics.testing.cli import cli, one_line_error
from psychometrics.run.outputs import read_provenance

ROOT = Path(__file__).resolve().parents[1]
MINIMAL = ROOT / "tests" / "data" / "inventories" / "valid-minimal.yaml"
SIM = "sim/e=1,seed=3"


def _main(*args) -> int:
    try:
        main([str(a) for a in args])
    except SystemExit as exited:
        return exited.code
    return 0


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("finished")
    people = ["--personas", "trait-shaping", "--persona-ids", "baseline,extraversion-very-high"]
    assert _main("administer", "--model", SIM, "-i", str(MINIMAL), "--samples", "2", "--mode", "both", *people,
                 "--out", base / "q", "--json") == 0
    assert _main("behave", "--model", SIM, "--tasks", "dictator-game", "--variants", "2", *people,
                 "--out", base / "b", "--json") == 0
    assert _main("report", base / "q") == 0
    assert not list(base.glob("*/*.sqlite-wal")) or all(p.stat().st_size == 0 for p in base.glob("*/*-wal"))
    return base


# -- a finished run on read-only media ---------------------------------------------------------------


def _unshare_works() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount --bind -o ro / /mnt 2>/dev/null || "
                            "mount --bind -o ro /tmp /tmp"], capture_output=True, timeout=30)
    return probe.returncode == 0


READ_ONLY_COMMANDS = {
    "score": ["score", "{q}", "--out", "{out}/score"],
    "report": ["report", "{q}", "--out", "{out}/report"],
    "reproduce": ["reproduce", "{q}"],
    "compare": ["compare", "{q}", "{q}", "--out", "{out}/compare"],
    "baseline-and-check": ["baseline", "{q}", "--out", "{out}/base.json"],
    "export": ["export", "{q}", "--csv", "{out}/all.csv"],
    "validity": ["validity", "--selfreport", "{q}", "--behavior", "{b}", "--out", "{out}/v", "--bootstrap", "100"],
    "behave-dry-run": ["behave", "--model", SIM, "--tasks", "dictator-game", "--variants", "2", "--personas",
                       "trait-shaping", "--persona-ids", "baseline,extraversion-very-high", "--out", "{b}", "--dry-run"],
    "administer-dry-run": ["administer", "--model", SIM, "-i", str(MINIMAL), "--samples", "2", "--mode", "both",
                           "--personas", "trait-shaping", "--persona-ids", "baseline,extraversion-very-high",
                           "--out", "{q}", "--dry-run"],
}


def _in_read_only_mount(directory: Path, argv: list[str]) -> subprocess.CompletedProcess:
    """Run psytest with ``directory`` bind-mounted read-only over itself, in a user and mount namespace
    (``unshare -rm``): a real read-only file system, which even root cannot write."""
    command = " ".join(["mount --bind -o ro", str(directory), str(directory), "&&", "exec", sys.executable,
                        "-m", "psychometrics", *(f"'{a}'" for a in argv)])
    return subprocess.run(["unshare", "-rm", "sh", "-c", command], capture_output=True, text=True, timeout=600,
                          env=os.environ.copy())


@pytest.mark.skipif(not _unshare_works(), reason="needs unshare -rm and bind mounts (a user namespace)")
@pytest.mark.parametrize("command", sorted(READ_ONLY_COMMANDS))
def test_a_finished_run_on_a_read_only_mount_can_be_read(command, runs, tmp_path):
    mounted = tmp_path / "archive"
    shutil.copytree(runs, mounted)
    before = sorted(str(p.relative_to(mounted)) for p in mounted.rglob("*"))
    out = tmp_path / "out"
    out.mkdir()
    argv = [a.replace("{q}", str(mounted / "q")).replace("{b}", str(mounted / "b")).replace("{out}", str(out))
            for a in READ_ONLY_COMMANDS[command]]
    done = _in_read_only_mount(mounted, argv)
    assert done.returncode == 0, done.stderr
    assert sorted(str(p.relative_to(mounted)) for p in mounted.rglob("*")) == before  # no -shm, nothing written
    if command == "reproduce":
        assert "REPRODUCED" in done.stdout
    if command == "baseline-and-check":
        # --unit raw: the run answers in probs mode too, whose identical repeated samples have no spread.
        check = _in_read_only_mount(mounted, ["check", str(mounted / "q"), "--baseline", str(out / "base.json"),
                                              "--unit", "raw"])
        assert check.returncode == 0, check.stderr


@pytest.mark.skipif(not _unshare_works(), reason="needs unshare -rm and bind mounts (a user namespace)")
def test_answers_still_in_the_write_ahead_log_on_a_read_only_mount_are_one_line(runs, tmp_path):
    """A store copied while it was being written has answers only in its -wal; read-only, SQLite cannot
    read them without an index file beside it, and immutable mode would silently skip them."""
    live = tmp_path / "live"
    shutil.copytree(runs / "q", live)
    writer = sqlite3.connect(live / "responses.sqlite")
    writer.execute("PRAGMA wal_autocheckpoint=0")
    writer.execute("INSERT INTO meta(key, value) VALUES ('note', 'written last')")
    writer.commit()
    archive = tmp_path / "archive" / "q"
    archive.mkdir(parents=True)
    for name in ("manifest.json", "responses.sqlite", "responses.sqlite-wal"):
        shutil.copy(live / name, archive / name)
    writer.close()
    assert (archive / "responses.sqlite-wal").stat().st_size > 0
    done = _in_read_only_mount(archive.parent, ["score", str(archive), "--out", str(tmp_path / "s")])
    one_line_error(done.returncode, done.stderr, "responses.sqlite", "write-ahead log", "copy the run directory")


@pytest.mark.skipif(not _unshare_works(), reason="needs unshare -rm and bind mounts (a user namespace)")
@pytest.mark.parametrize("command,needle", [
    (["report", "{q}"], "report"),
    (["administer", "--model", SIM, "-i", str(MINIMAL), "--samples", "2", "--mode", "both", "--personas",
      "trait-shaping", "--persona-ids", "baseline,extraversion-very-high", "--out", "{q}"], "q"),
    (["score", "{q}"], "analysis"),
])
def test_writing_into_a_read_only_mount_is_one_line_that_says_so(command, needle, runs, tmp_path):
    mounted = tmp_path / "archive"
    shutil.copytree(runs, mounted)
    done = _in_read_only_mount(mounted, [a.replace("{q}", str(mounted / "q")) for a in command])
    line = one_line_error(done.returncode, done.stderr, "Read-only file system")
    assert str(mounted / "q") in line and needle in line


def test_the_read_only_media_path_simulated_with_sqlites_flags(runs, tmp_path, capsys, monkeypatch):
    """Where user namespaces are not available: the same path, with the media declared read-only."""
    from psychometrics.run import store

    copy = tmp_path / "q"
    shutil.copytree(runs / "q", copy)
    for leftover in copy.glob("responses.sqlite-*"):  # what readers in a writable directory left
        assert leftover.name == "responses.sqlite-shm" or leftover.stat().st_size == 0
        leftover.unlink()
    monkeypatch.setattr(store, "_on_read_only_media", lambda path: True)
    code, _, err = cli(capsys, "score", copy, "--out", tmp_path / "s", "--no-structure")
    assert code == 0, err
    assert not (copy / "responses.sqlite-shm").exists()  # immutable: no index file, no lock taken


# -- values outside the response scale ---------------------------------------------------------------


def test_a_stored_value_outside_the_scale_is_missing_and_counted(runs, tmp_path, capsys):
    copy = tmp_path / "q"
    shutil.copytree(runs / "q", copy)
    conn = sqlite3.connect(copy / "responses.sqlite")
    # e2 is reverse-keyed: 99 would have been scored 1 + 5 - 99 = -93
    conn.execute("UPDATE responses SET value = 99 WHERE rowid = (SELECT min(rowid) FROM responses "
                 "WHERE item_id = 'e2' AND mode = 'text' AND outcome = 'valid')")
    conn.execute("UPDATE responses SET value = -4, expected_value = -4 WHERE rowid = (SELECT min(rowid) FROM "
                 "responses WHERE item_id = 'a1' AND mode = 'probs' AND outcome = 'valid')")
    conn.commit()
    conn.close()
    code, _, err = cli(capsys, "score", copy)
    assert code == 0, err
    scores = pd.read_csv(copy / "analysis" / "scores.csv")
    per_item = scores[scores["scale"] == "E"]["score"].dropna()
    assert per_item.between(1, 5).all() and scores[scores["scale"] == "A"]["score"].dropna().between(2, 10).all()
    checks = pd.read_csv(copy / "analysis" / "value_checks.csv")
    assert sorted(zip(checks["item_id"], checks["mode"], checks["n"], checks["example"])) == [
        ("a1", "probs", 1, -4.0), ("e2", "text", 1, 99.0)]
    summary = pd.read_csv(copy / "analysis" / "score_summary.csv")
    noted = summary[summary["note"].fillna("").str.contains("1 stored value")]
    assert set(zip(noted["mode"], noted["inventory"])) == {("text", "tiny"), ("probs", "tiny")}
    assert summary["mean"].dropna().between(1, 10).all()
    from psychometrics.analysis.baseline import make_baseline

    assert all(1 <= s["mean"] <= 10 for s in make_baseline(copy)["scales"])  # compare/check read the same way


# -- a directory of tables is replaced as a whole ----------------------------------------------------


def test_score_removes_the_tables_it_no_longer_writes(runs, tmp_path, capsys):
    copy = tmp_path / "q"
    shutil.copytree(runs / "q", copy)
    (copy / "analysis" / "my-notes.txt").write_text("mine")
    assert cli(capsys, "score", copy)[0] == 0
    assert (copy / "analysis" / "cfa_fit.csv").exists()
    assert cli(capsys, "score", copy, "--no-structure")[0] == 0
    names = sorted(p.name for p in (copy / "analysis").iterdir())
    assert not {"cfa_fit.csv", "efa_fit.csv", "efa_loadings.csv"} & set(names)
    record = read_provenance(copy / "analysis")
    assert sorted(record["files"]) == sorted(n for n in names if n.endswith(".csv"))
    assert "my-notes.txt" in names  # a file psytest did not write stays
    assert cli(capsys, "reproduce", copy)[0] == 0


def test_a_report_without_behaviour_runs_drops_the_validity_tables(runs, tmp_path, capsys):
    copy = tmp_path / "q"
    shutil.copytree(runs / "q", copy)
    assert cli(capsys, "report", copy, "--behavior", runs / "b")[0] == 0
    assert (copy / "report" / "validity_notes.csv").exists()
    assert cli(capsys, "report", copy)[0] == 0
    assert not (copy / "report" / "validity_notes.csv").exists()
    assert set(read_provenance(copy / "report")["files"]) == {p.name for p in (copy / "report").iterdir()
                                                             if p.name != "provenance.json"}


# -- design levels given twice -----------------------------------------------------------------------

DESIGN_DUPLICATES = {
    "option-orders-twice": ({}, ["administer", "--model", "sim", "--option-orders", "original,original", "--dry-run"],
                            ["option_orders", "'original' is given twice"]),
    "templates-twice": ({}, ["administer", "--model", "sim", "--templates", "numbered,lettered,numbered", "--dry-run"],
                        ["templates", "'numbered' is given twice"]),
    "modes-twice-in-design-file": ({"design.yaml": "modes: [text, probs, text]\n"},
                                   ["administer", "--model", "sim", "--design", "{tmp}/design.yaml", "--dry-run"],
                                   ["design.yaml", "modes", "'text' is given twice"]),
    "persona-ids-twice": ({}, ["administer", "--model", "sim", "--personas", "trait-shaping", "--persona-ids",
                               "baseline,extraversion-very-low,baseline", "--dry-run"],
                          ["persona_ids", "'baseline' is given twice"]),
    "behave-persona-ids-twice": ({}, ["behave", "--model", "sim", "--tasks", "dictator-game", "--personas",
                                      "trait-shaping", "--persona-ids", "baseline,baseline", "--dry-run"],
                                 ["--persona-ids", "'baseline' is given twice"]),
    "behave-task-twice": ({}, ["behave", "--model", "sim", "--tasks", "dictator-game,dictator-game", "--dry-run"],
                          ["--tasks", "'dictator-game' is given twice"]),
}


@pytest.mark.parametrize("case", sorted(DESIGN_DUPLICATES))
def test_a_design_level_given_twice_is_refused(case, tmp_path, capsys):
    files, argv, needles = DESIGN_DUPLICATES[case]
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    code, _, err = cli(capsys, *[arg.replace("{tmp}", str(tmp_path)) for arg in argv])
    one_line_error(code, err, *needles)


def test_a_grouping_factor_given_twice_is_refused(runs, capsys):
    code, _, err = cli(capsys, "score", runs / "q", "--by", "persona,mode,persona")
    one_line_error(code, err, "--by", "'persona' is given twice")


def test_orders_that_coincide_are_planned_once(capsys):
    """``original`` and ``rotations`` share one order (rotation 0): it is planned once, not twice."""
    code, out, _ = cli(capsys, "administer", "--model", "sim", "-i", "mini-ipip", "--option-orders",
                       "original,rotations", "--dry-run", "--json")
    assert code == 0 and '"requests_planned": 100' in out  # 20 items x 5 distinct orders
