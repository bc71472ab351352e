"""No escape sequence from a file, a server, a model or a directory name reaches the terminal.

Every command of the ``psytest`` app (found by walking it, so a new command fails here until it has a
case) runs as a real process on hostile input: an inventory, persona set, task file, keys file and run
directory names full of OSC 52 (clipboard write), OSC 0 (window title), CSI colour, 8-bit CSI, DCS, BEL,
DEL, NEL, bidi overrides and isolates, zero-width and tag characters; and model replies and server
errors carrying the same. What it prints, stdout and stderr, may hold none of them raw: only newlines
and tabs among the characters a terminal acts on or does not show, and ``--json`` output still decodes
to the exact data. The source is checked too: only :mod:`psychometrics.cli.terminal` writes to the terminal.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from psychometrics.cli.terminal import hidden, json_text, printable

PACKAGE = Path(__file__).resolve().parent.parent / "psychometrics"
DATA = Path(__file__).parent / "data"

# Every kind of hostile sequence, in one string (no "/" and no NUL: it is also a directory name)
H = ("\x1b]52;c;cHduZWQ=\x07" "\x1b]0;pwned-title\x07" "\x1b[7;31;5m" "\x9b7m" "\x1bP1$r\x1b\\" "\x07\x08\x7f\x85"
     "\u202e" "\u2066" "\u200b" "\u2028" "\ufeff" "\U000e0041" "\ufe0f" "\r")
MARKERS = ("\x1b", "\x9b", "\x07", "\u202e", "pwned-title\x07")


def test_printable_escapes_every_hidden_character_and_keeps_layout():
    assert printable(H) == ("\\x1b]52;c;cHduZWQ=\\x07\\x1b]0;pwned-title\\x07\\x1b[7;31;5m\\x9b7m\\x1bP1$r\\x1b\\"
                            "\\x07\\x08\\x7f\\x85\\u202e\\u2066\\u200b\\u2028\\ufeff\\U000e0041\\ufe0f\\x0d")
    assert printable("a\tb\nc é 中 😀 ∑") == "a\tb\nc é 中 😀 ∑"  # layout and visible text stay
    assert printable("\ud83d") == "\\ud83d"  # a lone surrogate cannot even be encoded raw
    assert not any(hidden(c) for c in printable(H + "\ud83d"))
    # --json: the same characters as JSON escapes; the data is unchanged for a JSON reader
    payload = {"text": H + "\ud83d é", "n": 1}
    text = json_text(payload)
    assert json.loads(text) == payload and not any(hidden(c) for c in text.replace("\n", ""))
    assert "\\u001b]52" in text and "\\u202e" in text and "\\udb40\\udc41" in text and "é" in text


def test_hidden_is_every_control_format_and_invisible_character():
    import unicodedata

    controls = [chr(c) for c in range(0x110000) if unicodedata.category(chr(c)) in ("Cc", "Cf", "Zl", "Zp")]
    assert len(controls) > 200 and all(hidden(c) for c in controls)
    assert not any(hidden(c) for c in "az AZ 09 é ß 中 😀 ∑ \u00a0")


# -- only the terminal module writes ----------------------------------------------------------------

RAW_OUTPUT = re.compile(r"\btyper\.echo\(|\bclick\.echo\(|(?<![\w.])print\(|\bConsole\(|sys\.std(?:out|err)\.write|"
                        r"\brich\.print\(|\bpprint\(")


def test_only_the_terminal_module_writes_to_the_terminal():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "terminal.py" or "testing" in path.parts:  # testing/: the loopback server's own script
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if RAW_OUTPUT.search(line.split("#")[0]):
                offenders.append(f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}")
    assert not offenders, "print through psychometrics.cli.terminal (echo, console, print_json):\n" + "\n".join(offenders)


# -- every command, as a process, on hostile input --------------------------------------------------


def _hostile_files(root: Path) -> dict[str, Path]:
    """An inventory, persona set, task, keys file and item data whose every free text holds ``H``."""
    inventory = yaml.safe_load((DATA / "inventories" / "valid-minimal.yaml").read_text(encoding="utf-8"))
    inventory.update(name=f"Tiny {H}", description=f"about {H}", citation=f"cite {H}", licence=f"CC0 {H}",
                     instructions=f"Rate {H} yourself.", stem=f"I {H}")
    inventory["response_scale"]["labels"][3] = f"Neither {H}"
    for scale in inventory["scales"] + inventory["facets"]:
        scale["name"] += H
    for item in inventory["items"]:
        item["text"] += f" {H}"
    inventory["norms"][0]["group"] += H
    personas = {"id": "hostile", "name": f"Hostile {H} set", "description": f"set {H}",
                "personas": [{"id": "p1", "text": f"You are {H} calm.", "targets": {"extraversion": 2}},
                             {"id": "p2", "text": f"You are {H} shy.", "targets": {"extraversion": -2}}]}
    task = yaml.safe_load((PACKAGE / "behavior" / "tasks" / "social-choice.yaml").read_text(encoding="utf-8"))
    task.update(id="hostile-social", name=f"Social {H} task", measure=f"share {H}", citation=f"cite {H}")
    for variant in task["variants"]:
        variant["turns"] = [f"{H} {turn}" for turn in variant["turns"]]
        for option in variant["options"]:
            option["text"] += f" {H}"
    files = {"inventory": root / "inventory.yaml", "personas": root / "personas.yaml", "task": root / "task.yaml",
             "keys": root / "keys.yaml", "data": root / f"data{H}.csv"}
    for name, content in (("inventory", inventory), ("personas", personas), ("task", task)):
        files[name].write_text(yaml.safe_dump(content, allow_unicode=False, sort_keys=False), encoding="utf-8")
    files["keys"].write_text(yaml.safe_dump({"name": f"keys {H}", "response_range": [1, 5],
                                             "scales": {"E": ["e1", "-e2", "e3"], "A": ["a1", "-a2"]}},
                                            allow_unicode=False), encoding="utf-8")
    rows = ["e1,e2,e3,a1,a2"] + [",".join(str(1 + (r * 7 + c * 3) % 5) for c in range(5)) for r in range(30)]
    files["data"].write_text("\n".join(rows) + "\n", encoding="utf-8")
    study = {"models": ["sim/e=1,seed=2", "sim/e=-1,seed=3"], "inventories": [str(files["inventory"])],
             "personas": str(files["personas"]), "tasks": [str(files["task"])], "behavior": {"variants": 2},
             "out": f"s{H}"}
    files["study"], files["bad-study"] = root / "study.yaml", root / "bad-study.yaml"
    files["study"].write_text(yaml.safe_dump(study, allow_unicode=False), encoding="utf-8")
    files["bad-study"].write_text(yaml.safe_dump(dict(study, **{f"unknown {H}": 1}, models=[f"sim/x{H}=1"]),
                                                 allow_unicode=False), encoding="utf-8")
    bad = dict(inventory, **{f"unknown {H}": 1})
    files["bad-inventory"] = root / "bad-inventory.yaml"
    files["bad-inventory"].write_text(yaml.safe_dump(bad, allow_unicode=False), encoding="utf-8")
    return files


class HostileServerBackend:
    """A simulated respondent behind the loopback server; every third reply starts with ``H`` and every
    seventh call fails with ``H`` in the error (the server's 500 carries it to the client)."""

    def __new__(cls, sim):
        from psychometrics.models.base import ModelBackend

        class _Backend(ModelBackend):
            name = "hostile-server"

            def __init__(self):
                self.count = 0

            async def complete(self, request):
                self.count += 1
                if self.count % 7 == 0:
                    raise RuntimeError(f"overloaded {H}")
                reply = await sim.complete(request)
                if self.count % 3 == 0 and reply.text is not None:
                    reply.text = f"{H} {reply.text}"
                return reply

        return _Backend()


def _commands() -> set[str]:
    import typer.main

    from psychometrics.cli import app

    def walk(command, prefix: str):
        subcommands = getattr(command, "commands", None)
        if not subcommands:
            yield prefix
            return
        for name, sub in subcommands.items():
            yield from walk(sub, f"{prefix} {name}".strip())

    return set(walk(typer.main.get_command(app), ""))


def _cases(files: dict[str, Path], root: Path, server: str) -> dict[str, list[list[str]]]:
    """Per command, the invocations that show user, file or model text (relative to ``root``)."""
    run, run2, brun = f"q{H}", f"q2{H}", f"b{H}"
    http = ["--api-base", server, "--max-retries", "0"]
    inv, per, task = str(files["inventory"]), str(files["personas"]), str(files["task"])
    missing = f"no{H}.yaml"
    return {
        "inventories list": [["inventories", "list"], ["inventories", "list", "--json"]],
        "inventories show": [["inventories", "show", inv], ["inventories", "show", inv, "--json"],
                             ["inventories", "show", missing]],
        "inventories validate": [["inventories", "validate", inv, str(files["bad-inventory"])]],
        "templates": [["templates", "-i", inv], ["templates", "-i", inv, "--json"]],
        "personas list": [["personas", "list"], ["personas", "list", "--json"]],
        "personas show": [["personas", "show", per], ["personas", "show", per, "--json"], ["personas", "show", missing]],
        "administer": [
            ["administer", "--model", "sim", "-i", inv, "--personas", per, "--dry-run"],
            ["administer", "--model", "openai/psytest-sim", *http, "-i", inv, "--personas", per, "--out", run],
            ["administer", "--model", "openai/psytest-sim", *http, "-i", inv, "--out", run2, "--json"],
            ["administer", "--model", f"bogus{H}"],
        ],
        "score": [["score", run], ["score", run, "--json"]],
        "analyze": [["analyze", files["data"].name, "--keys", str(files["keys"])],
                    ["analyze", files["data"].name, "--keys", str(files["keys"]), "--json"]],
        "report": [["report", run, "--behavior", brun, "--out", f"r{H}"], ["report", run, "--json"]],
        "compare": [["compare", run, run2], ["compare", run, run2, "--json"]],
        "baseline": [["baseline", run, "--out", f"base{H}.json"]],
        "check": [["check", run2, "--baseline", f"base{H}.json"], ["check", run2, "--baseline", f"base{H}.json", "--json"]],
        "reproduce": [["reproduce", run], ["reproduce", run, "--json"]],
        "tasks list": [["tasks", "list"], ["tasks", "list", "--json"]],
        "tasks show": [["tasks", "show", task], ["tasks", "show", task, "--variant", "v02", "--json"]],
        "tasks validate": [["tasks", "validate", task], ["tasks", "validate", missing]],
        "behave": [
            ["behave", "--model", "sim", "--tasks", task, "--personas", per, "--variants", "2", "--dry-run"],
            ["behave", "--model", "openai/psytest-sim", *http, "--tasks", f"{task},dictator-game", "--personas", per,
             "--variants", "3", "--out", brun],
            ["behave", "--model", "openai/psytest-sim", *http, "--tasks", task, "--variants", "2", "--out", f"b2{H}",
             "--json"],
        ],
        "validity": [["validity", "-s", run, "-b", brun, "--out", f"v{H}", "--bootstrap", "100"],
                     ["validity", "-s", run, "-b", brun, "--bootstrap", "100", "--json"]],
        "export": [["export", run, "--csv", f"x{H}.csv"], ["export", run, "--csv", f"x{H}.csv", "--json"]],
        "study": [["study", str(files["study"]), "--dry-run"], ["study", str(files["study"])],
                  ["study", str(files["study"]), "--json"], ["study", str(files["bad-study"])],
                  ["study", str(files["study"]), "--out", f"s2{H}", "--dry-run", "--json"]],
    }


@pytest.fixture(scope="module")
def hostile_outputs(tmp_path_factory):
    """Every case of :func:`_cases` run as a process: {command: [(argv, returncode, stdout, stderr)]}."""
    from psychometrics.behavior.task import load_task, resolve_tasks
    from psychometrics.inventories.library import resolve_inventory
    from psychometrics.models.simulated import SimulatedRespondent
    from psychometrics.design.personas import load_persona_set
    from psychometrics.testing.openai_server import start_server

    root = tmp_path_factory.mktemp("terminal")
    files = _hostile_files(root)
    sim = SimulatedRespondent("sim/e=1,seed=2,behavior_link=0.8")
    sim.prepare([resolve_inventory(str(files["inventory"]))], load_persona_set(files["personas"]))
    sim.prepare_tasks([load_task(files["task"]), *resolve_tasks("dictator-game")])
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "COLUMNS", "TERM")}
    env.update(OPENAI_API_KEY="none", NO_COLOR="1")
    outputs: dict[str, list] = {}
    with start_server(HostileServerBackend(sim)) as server:
        for command, invocations in _cases(files, root, server.base_url).items():
            for argv in invocations:
                result = subprocess.run([sys.executable, "-m", "psychometrics", *argv], capture_output=True, cwd=root,
                                        env=env, timeout=600)
                outputs.setdefault(command, []).append((argv, result.returncode, result.stdout, result.stderr))
    return outputs


def test_every_command_has_a_hostile_case():
    assert _commands() == set(_cases({k: Path(k) for k in ("inventory", "personas", "task", "keys", "data",
                                                            "bad-inventory", "study", "bad-study")}, Path("."),
                                     "http://x"))


def _raw(text: str) -> list[str]:
    return sorted({repr(c) for c in text if hidden(c) and c not in "\n\t"})


@pytest.mark.parametrize("command", sorted(_commands()))
def test_no_raw_control_character_reaches_the_terminal(hostile_outputs, command):
    assert command in hostile_outputs
    for argv, code, stdout, stderr in hostile_outputs[command]:
        out, err = stdout.decode("utf-8"), stderr.decode("utf-8")  # strict: nothing undecodable either
        assert "Traceback" not in err, (argv, err)
        assert code in (0, 1, 2), (argv, code, err)
        assert not _raw(out) and not _raw(err), (argv, _raw(out), _raw(err))
        assert not any(m in out or m in err for m in MARKERS)
        if "--json" in argv and code in (0, 1):
            json.loads(out)  # still JSON, escapes and all


def test_hostile_text_is_shown_escaped_not_dropped(hostile_outputs):
    """The escaped form is what a reader sees: the sanitiser neither drops nor mangles the rest."""
    shown = printable(H)
    _, code, stdout, _ = hostile_outputs["personas show"][0]
    assert code == 0 and f"Hostile {shown} set (hostile): 2 personas" in stdout.decode()
    _, code, stdout, _ = hostile_outputs["tasks show"][0]
    assert code == 0 and f"Social {shown} task (hostile-social)" in stdout.decode()
    _, code, _, stderr = hostile_outputs["administer"][1]
    one_line = printable(" ".join(f"overloaded {H}".split()))  # NEL, LS and CR are whitespace: a space each
    assert code == 1 and one_line in stderr.decode()  # the server's error, escaped, on one line
    _, code, stdout, _ = hostile_outputs["personas show"][1]
    assert json.loads(stdout)["name"] == f"Hostile {H} set"  # --json: the exact text


def test_colour_output_carries_only_rich_own_sequences(tmp_path):
    """With colours forced, rich styles the output, yet a hostile text still arrives escaped."""
    files = _hostile_files(tmp_path)
    env = {**os.environ, "FORCE_COLOR": "1", "COLUMNS": "120"}
    env.pop("NO_COLOR", None)
    for argv in (["inventories", "show", str(files["inventory"])], ["personas", "show", str(files["personas"])],
                 ["tasks", "show", str(files["task"])]):
        result = subprocess.run([sys.executable, "-m", "psychometrics", *argv], capture_output=True, env=env,
                                timeout=300)
        out = result.stdout.decode("utf-8")
        assert result.returncode == 0 and not any(m in out for m in ("\x9b", "\x07", "\u202e", "\x1b]", "\x1b[7;31;5m"))
        assert not _raw(re.sub(r"\x1b\[[0-9;]*m", "", out)), argv  # nothing but SGR styling
