"""Reports: the files written, a self-contained HTML page that shows hostile model text only as text
(checked in headless Chromium when it is installed), and every number in it traceable to a CSV."""

from __future__ import annotations

import json
import re
import sqlite3
from contextlib import closing
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from psychometrics.conditions import CONDITION_FIELDS
from psychometrics.design.plan import Design
from psychometrics.inventories.library import resolve_inventory
from psychometrics.models.simulated import SimulatedRespondent
from psychometrics.report import build_report, figures
from psychometrics.report.html import format_cell
from psychometrics.run.directory import administer
from psychometrics.testing.waiting import HANG_GUARD_S

CHROMIUM = Path("/usr/bin/chromium")
SCRIPT = "<script>document.title='pwned'</script>"
IMG = "<img src=x onerror=\"document.title='pwned'\">"
PLANTED = 4


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """A simulated run with a position bias, two instruments, four factors; four replies made hostile."""
    run = tmp_path_factory.mktemp("run")
    design = Design(personas="neutral-biographies", persona_ids=["bio01", "bio02", "bio03", "bio04", "bio05"],
                    option_orders=["original", "reversed"], templates=["numbered", "lettered"], samples=2,
                    temperature=1.0)
    administer(SimulatedRespondent("sim/seed=1,persona_spread=1,position_first=1"),
               [resolve_inventory("bfi-44"), resolve_inventory("mini-ipip")], design, run)
    with closing(sqlite3.connect(run / "responses.sqlite")) as db, db:
        rowids = [r[0] for r in db.execute(
            "SELECT rowid FROM responses WHERE inventory = 'bfi-44' ORDER BY rowid LIMIT ?", (PLANTED,))]
        for rowid, text in zip(rowids, [SCRIPT, IMG, SCRIPT, IMG]):
            db.execute("UPDATE responses SET raw_reply = ?, outcome = 'unparseable', value = NULL, position = NULL "
                       "WHERE rowid = ?", (text, rowid))
    return run, build_report(run)


def test_report_writes_tables_responses_and_summary(report):
    run, paths = report
    assert paths.out_dir == run / "report" and paths.html.exists() and paths.summary.exists()
    names = {p.name for p in paths.csvs}
    assert {"score_summary.csv", "norms.csv", "reliability.csv", "variance_decomposition.csv", "mtmm.csv",
            "responses.csv", "run_info.csv"} <= names
    responses = pd.read_csv(paths.out_dir / "responses.csv")
    fields = {f for f in CONDITION_FIELDS if f != "temperature"}  # one temperature: not a factor column
    assert {"item_id", "scale", "raw_reply", "outcome", "value", *fields} <= set(responses.columns)
    assert "temperature" not in responses.columns
    with closing(sqlite3.connect(run / "responses.sqlite")) as db, db:
        assert len(responses) == db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
    assert (responses["outcome"] == "unparseable").sum() == PLANTED
    assert set(responses.loc[responses["inventory"] == "mini-ipip", "scale"]) == {"E", "A", "C", "N", "I"}

    summary = json.loads(paths.summary.read_text())
    assert summary["model"] == "sim/seed=1,persona_spread=1,position_first=1"
    assert [i["id"] for i in summary["inventories"]] == ["bfi-44", "mini-ipip"]
    assert len(summary["scales"]) == 10
    for scale in summary["scales"]:
        assert scale["ci_low"] <= scale["mean"] <= scale["ci_high"] and scale["trait"]
    verdict = summary["verdict"]
    assert len(verdict) == 10 and {r["label"] for r in verdict} <= {"interpretable", "fragile", "untested", "not measurable"}
    assert [r["label"] for r in summary["verdict_rules"]] == ["not measurable", "fragile", "untested", "interpretable"]
    assert all(r["n_respondents"] == 10 and r["n_cells"] == 4 and r["ci_low"] <= r["score"] <= r["ci_high"]
               for r in verdict)  # 5 untargeted personas x 2 samples, each over 2 orders x 2 templates
    assert {r["norm_group"] is not None for r in verdict if r["inventory"] == "bfi-44"} == {True}
    assert summary["unit"]["respondent"] == "persona x sample"
    assert {n["scale"] for n in summary["norms"]} == {"E", "A", "C", "N", "O"}
    assert all(0 <= n["percentile"] <= 100 for n in summary["norms"])
    headline = {r["inventory"]: r for r in summary["reliability"]}
    assert headline["bfi-44"]["alpha_median"] > 0.7 and headline["bfi-44"]["alpha_min"] <= headline["bfi-44"]["alpha_median"]
    effects = [abs(e["mean_diff"]) for e in summary["largest_method_effects"]]  # points: d_z can be undefined
    assert effects and effects == sorted(effects, reverse=True)
    assert {e["factor"] for e in summary["largest_method_effects"]} <= {"option_order", "template", "sample"}
    rates = {r["inventory"]: r for r in summary["outcome_rates"]}
    assert rates["bfi-44"]["unparseable_rate"] == pytest.approx(PLANTED / rates["bfi-44"]["n"])
    assert rates["mini-ipip"]["valid_rate"] == 1
    assert {s["source"] for s in summary["variance_shares"]} >= {"persona", "option_order", "residual"}


def test_html_is_self_contained_and_shows_model_text_only_escaped(report):
    _, paths = report
    html = paths.html.read_text(encoding="utf-8")
    assert paths.html.stat().st_size < 3_000_000
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.I)
    assert not re.search(r"url\(|@import|<link|<script|<iframe|<object|<embed", html, re.I)
    assert "Content-Security-Policy" in html
    assert html.count('<img src="data:image/png;base64,') == len(figures.FIGURES) == 9
    images = re.findall(r"<img\b[^>]*>", html, re.I)
    assert len(images) == 9 and all(i.startswith('<img src="data:image/png;base64,') for i in images)
    assert not re.search(r"<[^>]*\son\w+\s*=", html, re.I)  # no event-handler attribute in any tag
    assert html.count("&lt;script&gt;document.title=&#39;pwned&#39;&lt;/script&gt;") == 2
    assert html.count("&lt;img src=x onerror=&#34;document.title=&#39;pwned&#39;&#34;&gt;") == 2


class _Tables(HTMLParser):
    """Every <table> of the page: header, text cells, and the CSV named in the source line after it."""

    def __init__(self):
        super().__init__()
        self.tables, self._cell, self._in_source = [], None, False

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append({"columns": [], "rows": [], "source": None, "class": dict(attrs).get("class")})
        elif tag == "tr" and self.tables and self.tables[-1]["source"] is None:
            self.tables[-1]["rows"].append([])
        elif tag in ("th", "td"):
            self._cell = ""
        elif tag == "p" and ("class", "source") in attrs and self.tables and self.tables[-1]["source"] is None:
            self._in_source = True

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data
        elif self._in_source:
            self.tables[-1]["source"] = data.split(";")[0].strip()
            self._in_source = False

    def handle_endtag(self, tag):
        if tag in ("th", "td") and self._cell is not None:
            table = self.tables[-1]
            (table["columns"] if tag == "th" else table["rows"][-1]).append(self._cell)
            self._cell = None


def test_every_number_in_the_html_tables_is_in_the_named_csv(report):
    _, paths = report
    parser = _Tables()
    parser.feed(paths.html.read_text(encoding="utf-8"))
    assert len(parser.tables) >= 14
    checked = 0
    assert parser.tables[0]["class"] == "verdict" and parser.tables[0]["source"] == "verdict.csv"
    for table in parser.tables[1:]:  # the verdict combines columns (tests/test_report_screenshot.py checks it)
        csv = pd.read_csv(paths.out_dir / table["source"], keep_default_na=False, na_values=[""])
        for index, column in enumerate(table["columns"]):
            assert column in csv.columns, (table["source"], column)
            known = {format_cell(value) for value in csv[column]}
            for row in table["rows"]:
                if row and column != "raw_reply":
                    assert row[index] in known, (table["source"], column, row[index])
                    checked += 1
    assert checked > 1000
    replies = next(t for t in parser.tables if t["source"] == "responses.csv")
    shown = {row[replies["columns"].index("raw_reply")] for row in replies["rows"] if row}
    assert {SCRIPT, IMG} <= shown  # the parser unescapes: the page shows the replies as their exact text


def test_figures_are_none_without_data():
    for _, _, _, function in figures.FIGURES:
        assert function({}) is None
        assert function({name: pd.DataFrame() for name in ("score_summary", "norms", "responses", "mtmm", "verdict",
                                                           "persona_profile")}) is None


def test_importing_the_report_and_the_cli_loads_no_plotting_library():
    code = ("import sys, psychometrics.report, psychometrics.cli; "
            "print(sorted(m for m in ('plotnine', 'matplotlib', 'jinja2') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def _chromium(tmp_path: Path, page: Path, *extra: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    command = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={profile}", *extra, page.resolve().as_uri()]
    return subprocess.run(command, capture_output=True, text=True, timeout=HANG_GUARD_S, check=True)


def test_chromium_renders_the_report_and_runs_nothing_from_it(report, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip("needs /usr/bin/chromium (Debian's chromium package)")
    _, paths = report
    # Control: the same harness does see a script that runs.
    control = tmp_path / "control.html"
    control.write_text(f"<!DOCTYPE html><html><head><title>original</title></head><body>{SCRIPT}</body></html>")
    assert "<title>pwned</title>" in _chromium(tmp_path, control, "--dump-dom").stdout

    dom = _chromium(tmp_path, paths.html, "--dump-dom").stdout
    title = re.search(r"<title>(.*?)</title>", dom, re.S).group(1)
    assert title == "psytest report: sim/seed=1,persona_spread=1,position_first=1"
    assert "pwned" not in title
    assert dom.count('<img src="data:image/png;base64,') == len(figures.FIGURES)
    assert "&lt;script&gt;document.title='pwned'&lt;/script&gt;" in dom
    assert 'id="replies"' in dom and "<script" not in dom

    shot = tmp_path / "shot.png"
    _chromium(tmp_path, paths.html, f"--screenshot={shot}", "--window-size=1280,2000")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000
