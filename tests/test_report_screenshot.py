"""The report as a reader sees it: rendered in headless Chromium, the verdict is the first table and its rows
are verdict.csv's, no table cell is clipped and nothing is wider than the window, and a screenshot of the first
screen is not blank. Captions say only what the run's data hold (no norms, no interval for one respondent)."""

from __future__ import annotations

import re
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from psychometrics.design.plan import Design
from psychometrics.inventories.library import resolve_inventory
from psychometrics.models.simulated import SimulatedRespondent
from psychometrics.report import build_report
from psychometrics.run.directory import administer
from psychometrics.testing.waiting import HANG_GUARD_S

CHROMIUM = Path("/usr/bin/chromium")
WINDOW = (1280, 900)
needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium (Debian's chromium)")

# After the page has loaded (images too): every cell whose content is wider or taller than its box, the page's
# width against the window's, and every block reaching past the window's right edge. Only in a copy of the page
# made for the test (the report itself forbids scripts).
PROBE = """<script>
window.addEventListener('load', function () {
  var out = {page: document.documentElement.scrollWidth, window: window.innerWidth, clipped: [], wide: []};
  document.querySelectorAll('td, th, figcaption, p').forEach(function (el) {
    if (el.scrollWidth > el.clientWidth + 1 || el.scrollHeight > el.clientHeight + 1)
      out.clipped.push(el.textContent.slice(0, 80));
  });
  document.querySelectorAll('table, figure, img, dl, p, section').forEach(function (el) {
    if (el.getBoundingClientRect().right > window.innerWidth + 1) out.wide.push(el.tagName + ': ' + el.textContent.slice(0, 80));
  });
  var pre = document.createElement('pre'); pre.id = 'layout-probe'; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


def _chromium(tmp_path: Path, page: Path, *extra: str) -> str:
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    command = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={profile}", f"--window-size={WINDOW[0]},{WINDOW[1]}", *extra, page.resolve().as_uri()]
    return subprocess.run(command, capture_output=True, text=True, timeout=HANG_GUARD_S, check=True).stdout


def _run(tmp_path_factory, name: str, model: str, inventories: list[str], design: Design):
    run = tmp_path_factory.mktemp(name)
    administer(SimulatedRespondent(model), [resolve_inventory(i) for i in inventories], design, run)
    return build_report(run)


@pytest.fixture(scope="module")
def rich(tmp_path_factory):
    """An instrument with norms, trait-shaping personas with a baseline, two samples at temperature 1,
    two option orders x two templates, a respondent with a first-position bias."""
    design = Design(personas="trait-shaping", persona_ids=["baseline", "extraversion-very-high", "neuroticism-very-low"],
                    option_orders=["original", "reversed"], templates=["numbered", "worded"], samples=2,
                    temperature=1.0)
    return _run(tmp_path_factory, "rich", "sim/extraversion=1,position_first=1,noise=0.3,seed=4",
                ["bfi-44"], design)


@pytest.fixture(scope="module")
def bare(tmp_path_factory):
    """One respondent, one design cell, an instrument without norms: nothing to compare with, no interval."""
    return _run(tmp_path_factory, "bare", "sim/seed=2", ["mini-ipip"], Design())


class _Verdict(HTMLParser):
    """The first table of the page: its class, and the scale names and labels of its rows."""

    def __init__(self):
        super().__init__()
        self.first_class, self.tables, self.rows, self._in, self._cell, self._cells = None, 0, [], False, None, []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self.tables += 1
            if self.tables == 1:
                self.first_class, self._in = attrs.get("class"), True
        elif self._in and tag == "td":
            self._cell = ""
        elif self._in and tag == "br" and self._cell is not None:
            self._cell += "\n"
        elif self._in and tag == "span" and self._cell is not None and "label" in (attrs.get("class") or ""):
            self._cell += "\x00"  # the label chip

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self._cells.append(self._cell)
            self._cell = None
        elif tag == "tr" and self._in and self._cells:
            label = next(c for c in self._cells if c.startswith("\x00"))[1:]
            self.rows.append((self._cells[0].split("\n")[0].strip(), label.strip()))
            self._cells = []
        elif tag == "table":
            self._in = False


def _verdict_rows(html: str) -> _Verdict:
    parser = _Verdict()
    parser.feed(html)
    return parser


@needs_chromium
@pytest.mark.parametrize("which", ["rich", "bare"])
def test_the_verdict_is_the_first_table_in_the_rendered_page_and_matches_verdict_csv(which, request, tmp_path):
    paths = request.getfixturevalue(which)
    dom = _chromium(tmp_path, paths.html, "--dump-dom")
    parsed = _verdict_rows(dom)
    assert parsed.first_class == "verdict"
    verdict = pd.read_csv(paths.out_dir / "verdict.csv")
    names = verdict["scale_name"].tolist()
    assert [scale for scale, _ in parsed.rows] == names
    assert [label for _, label in parsed.rows] == verdict["label"].tolist()
    # the verdict comes before any figure and before the run's settings
    assert dom.index('class="verdict"') < dom.index("<img") < dom.index('id="run"')


@needs_chromium
@pytest.mark.parametrize("which", ["rich", "bare"])
def test_no_cell_is_clipped_and_nothing_is_wider_than_the_window(which, request, tmp_path):
    paths = request.getfixturevalue(which)
    html = paths.html.read_text(encoding="utf-8")
    style = re.search(r"<style>(.*?)</style>", html, re.S).group(1)
    assert not re.search(r"overflow\s*:\s*(hidden|clip)|text-overflow|overflow-x", style)
    probe = tmp_path / "probe.html"
    probe.write_text(re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", html).replace(
        "</body>", PROBE + "</body>"), encoding="utf-8")
    dom = _chromium(tmp_path, probe, "--virtual-time-budget=20000", "--dump-dom")
    found = re.search(r'<pre id="layout-probe">(.*?)</pre>', dom, re.S)
    assert found, "the probe did not run"
    import json

    layout = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<")
                        .replace("&gt;", ">"))
    assert layout["clipped"] == []
    assert layout["wide"] == []
    assert layout["page"] <= layout["window"]


@needs_chromium
def test_a_screenshot_of_the_first_screen_shows_the_verdict(rich, tmp_path):
    from PIL import Image

    shot = tmp_path / "verdict.png"
    _chromium(tmp_path, rich.html, f"--screenshot={shot}")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.shape == (WINDOW[1], WINDOW[0])
    assert pixels.std() > 10 and (pixels < 128).mean() > 0.01  # text on the page, not a blank screen
    # the label chips' colours are on the first screen: the verdict is readable without scrolling
    rgb = np.asarray(Image.open(shot).convert("RGB"), dtype=int).reshape(-1, 3)
    chips = {"fragile": (253, 231, 194), "not measurable": (248, 211, 208), "interpretable": (211, 240, 218),
             "untested": (228, 231, 234)}
    labels = set(pd.read_csv(rich.out_dir / "verdict.csv")["label"])
    for label in labels:
        assert (np.abs(rgb - np.array(chips[label])).sum(axis=1) <= 6).sum() > 200, label


def test_captions_claim_no_norms_and_no_interval_the_data_lack(bare, rich):
    html = bare.html.read_text(encoding="utf-8")
    caption = re.search(r'id="figure-trait_profile".*?<figcaption>(.*?)</figcaption>', html, re.S).group(1)
    assert "No human norms exist" in caption and "No interval: 1 respondent" in caption
    assert "One design cell" in caption and "Blue band" not in caption and "Black bars" not in caption
    assert "bootstrap" not in html.lower()
    assert 'id="figure-persona_profile"' not in html and 'id="figure-option_order_flips"' not in html
    verdict = pd.read_csv(bare.out_dir / "verdict.csv")
    assert set(verdict["label"]) == {"untested"} and verdict["ci_low"].isna().all()

    html = rich.html.read_text(encoding="utf-8")
    caption = re.search(r'id="figure-trait_profile".*?<figcaption>(.*?)</figcaption>', html, re.S).group(1)
    assert "Blue band: human norm mean" in caption and "Black bars: 95% t interval" in caption
    assert 'id="figure-persona_profile"' in html and 'id="figure-option_order_flips"' in html
    verdict = pd.read_csv(rich.out_dir / "verdict.csv")
    assert (verdict["n_respondents"] == 2).all()  # the baseline persona x 2 samples; shaped personas left out
    assert "'baseline'" in verdict["respondents"].iloc[0]
