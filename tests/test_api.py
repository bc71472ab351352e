"""The Python API is the command line without the printing: same parameters, same run, same tables.

A user calls ``psychometrics.administer(...)`` and gets the run and the tables ``psytest administer``
gives; ``psychometrics.score(...)`` writes the CSVs ``psytest score`` writes. Errors are ValueErrors
without exit codes; exit codes are the CLI's (checked here through :func:`psychometrics.cli.main`).
"""

from __future__ import annotations

import inspect
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import psychometrics
from psychometrics import api
from psychometrics.cli import main
from psychometrics.errors import PsytestError
from psychometrics.testing.waiting import HANG_GUARD_S

ROOT = Path(__file__).resolve().parents[1]
SIM = "sim/extraversion=1,agreeableness=-0.5,acquiescence=0.4,position_first=0.6,noise=0.3,seed=5"
OPTIONS = {"option_orders": "original,reversed", "templates": "numbered,lettered", "samples": "2",
           "temperature": "0.7", "mode": "both", "personas": "trait-shaping", "persona_ids": "baseline,extraversion-very-high"}


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "psychometrics", *args], capture_output=True, text=True,
                          timeout=HANG_GUARD_S, cwd=cwd)


def _as_cli_args(options: dict[str, str]) -> list[str]:
    return [part for key, value in options.items() for part in (f"--{key.replace('_', '-')}", value)]


def _answers(run: Path) -> list[tuple]:
    with sqlite3.connect(run / "responses.sqlite") as conn:
        return sorted(conn.execute("SELECT request_id, item_id, messages_hash, raw_reply, choice_logprobs, value, expected_value FROM responses"))


def _csvs(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.glob("*.csv"))}


@pytest.fixture(scope="module")
def cli_and_api_runs(tmp_path_factory):
    """The same study run twice: by ``psytest administer --json`` and by ``psychometrics.administer``."""
    root = tmp_path_factory.mktemp("api")
    done = _cli("administer", "--model", SIM, "-i", "mini-ipip", "-i", "sd3", *_as_cli_args(OPTIONS),
                "--out", str(root / "cli"), "--json")
    assert done.returncode == 0, done.stderr
    outcome = psychometrics.administer(SIM, inventory=["mini-ipip", "sd3"], out=root / "api",
                                       **{**OPTIONS, "samples": 2, "temperature": 0.7})
    return root, json.loads(done.stdout), outcome


def test_administer_gives_the_run_and_tables_the_command_gives(cli_and_api_runs):
    root, printed, outcome = cli_and_api_runs
    assert isinstance(outcome, api.RunOutcome) and outcome.run_dir == root / "api"
    answers = _answers(root / "api")
    assert answers == _answers(root / "cli") and len(answers) == printed["requests_planned"]
    tables = _csvs(root / "api" / "analysis")
    assert tables == _csvs(root / "cli" / "analysis") and "reliability.csv" in tables
    assert [p.name for p in sorted(outcome.written)] == sorted(tables)
    mine = outcome.as_dict()
    varying = {"run_dir", "analysis_dir", "items_per_second"}
    assert {k: v for k, v in mine.items() if k not in varying} == {k: v for k, v in printed.items() if k not in varying}
    assert mine["sent"] == mine["requests_planned"] > 0 and mine["failed"] == 0
    manifests = [json.loads((root / run / "manifest.json").read_text()) for run in ("cli", "api")]
    assert manifests[0]["design"] == manifests[1]["design"]
    assert manifests[1]["design"]["samples"] == 2 and manifests[1]["design"]["modes"] == ["text", "probs"]


def test_score_writes_the_csvs_psytest_score_writes(cli_and_api_runs, tmp_path):
    root, _, _ = cli_and_api_runs
    done = _cli("score", str(root / "cli"), "--by", "persona,option_order", "--out", str(tmp_path / "cli"))
    assert done.returncode == 0, done.stderr
    analysis = psychometrics.score(root / "cli", by=["persona", "option_order"], out=tmp_path / "api")
    assert _csvs(tmp_path / "api") == _csvs(tmp_path / "cli")
    assert set(analysis.tables) >= {"scores", "score_summary", "reliability", "efa_fit"}
    scores = analysis.tables["scores"]
    assert set(scores["persona"]) == {"baseline", "extraversion-very-high"} and "template" not in scores.columns
    provenance = [json.loads((tmp_path / d / "provenance.json").read_text())["options"] for d in ("cli", "api")]
    assert provenance[0] == provenance[1] == {"by": ["persona", "option_order"], "structure": True,
                                              "reference_loadings_sha256": None}


def test_every_command_option_is_an_api_parameter_with_the_same_default():
    """The CLI calls the API with its options: names and defaults must stay the same on both sides."""
    from psychometrics.cli import administer, analysis, behavior, export, reports

    pairs = {administer.administer: api.administer, behavior.behave: api.behave, analysis.score: api.score,
             analysis.analyze: api.analyze, reports.report: api.report, reports.compare: api.compare,
             reports.baseline: api.baseline, reports.check: api.check, reports.reproduce: api.reproduce,
             behavior.validity: api.validity, export.export: api.export}
    for command, function in pairs.items():
        options = {n: p.default for n, p in inspect.signature(command).parameters.items() if n != "as_json"}
        parameters = {n: p.default for n, p in inspect.signature(function).parameters.items()}
        assert set(options) <= set(parameters), (function.__name__, set(options) - set(parameters))
        for name, default in options.items():
            expected = list(default) if isinstance(default, (list, tuple)) else default
            given = parameters[name]
            given = list(given) if isinstance(given, (list, tuple)) else given
            if given is inspect.Parameter.empty:
                continue  # required in Python: a CLI argument or a required option
            assert given == expected, (function.__name__, name, given, expected)


def test_dry_run_returns_the_estimate_and_sends_nothing(tmp_path):
    out = tmp_path / "never"
    estimate = psychometrics.administer(SIM, inventory="mini-ipip", out=out, dry_run=True, option_orders="original,reversed")
    done = _cli("administer", "--model", SIM, "-i", "mini-ipip", "--out", str(out), "--dry-run", "--json",
                "--option-orders", "original,reversed")
    assert estimate == json.loads(done.stdout) and estimate["to_send"] == 40
    behaviour = psychometrics.behave("sim/seed=1", tasks="dictator-game", variants=2, out=out, dry_run=True)
    done = _cli("behave", "--model", "sim/seed=1", "--tasks", "dictator-game", "--variants", "2", "--out", str(out),
                "--dry-run", "--json")
    assert behaviour == json.loads(done.stdout) and behaviour["to_send"] == 2
    assert not out.exists()


def test_design_file_mapping_and_overrides(tmp_path):
    base = {"option_orders": ["original", "reversed"], "samples": 3}
    estimate = psychometrics.administer("sim/seed=1", inventory="mini-ipip", design=base, samples=1, dry_run=True)
    assert estimate["requests_planned"] == 20 * 2 * 1
    design_file = tmp_path / "design.yaml"
    design_file.write_text("option_orders: [original, reversed]\nsamples: 3\n")
    assert psychometrics.administer("sim/seed=1", inventory="mini-ipip", design=design_file,
                                    dry_run=True)["requests_planned"] == 20 * 2 * 3


def test_input_errors_are_value_errors_with_the_command_line_message(tmp_path):
    with pytest.raises(ValueError, match="the same inventory is given twice") as caught:
        psychometrics.administer("sim/seed=1", inventory=["mini-ipip", "mini-ipip"], dry_run=True)
    assert isinstance(caught.value, PsytestError) and not hasattr(caught.value, "exit_code")
    with pytest.raises(PsytestError, match="give exactly one of --keys"):
        psychometrics.analyze(tmp_path / "data.csv")
    with pytest.raises(PsytestError, match="compare needs at least two run directories"):
        psychometrics.compare([tmp_path])
    with pytest.raises(PsytestError, match="not a psytest run directory"):
        psychometrics.score(tmp_path)
    assert not (tmp_path / "analysis").exists()


def test_listing_helpers():
    assert [inv.id for inv in psychometrics.list_inventories()][:2] == ["bfi-2", "bfi-44"]
    assert psychometrics.get_inventory("sd3").id == "sd3"
    templates = psychometrics.render_templates("mini-ipip")
    assert {t.id for t in templates} >= {"numbered", "lettered", "worded"}
    assert all("Am the life of the party." in t.prompt.messages[-1].content for t in templates)
    assert "trait-shaping" in {s.id for s in psychometrics.list_persona_sets()}
    shown = psychometrics.render_task("dictator-game", variant="v02", seed=3)
    assert shown.variant.id == "v02" and shown.turns and shown.task.trait == "agreeableness"
    with pytest.raises(PsytestError, match="give one task"):
        psychometrics.get_task("agreeableness")


def test_the_package_root_exports_the_api_lazily():
    probe = ("import sys, psychometrics\n"
             "before = 'psychometrics.api' in sys.modules\n"
             "lazy = psychometrics.api\n"
             "from psychometrics import administer, score\n"
             "import psychometrics.api as api, psychometrics.report as report\n"
             "print(before, lazy is api and administer is api.administer, score is api.score, psychometrics.report is report,\n"
             "      callable(api.report), 'administer' in dir(psychometrics), psychometrics.__version__)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "True", "True", "True", "True", "True", psychometrics.__version__]
    with pytest.raises(AttributeError):
        psychometrics.no_such_function  # noqa: B018


def test_default_model_is_the_same_everywhere():
    from psychometrics.cli.common import DEFAULT_MODEL as cli_default
    from psychometrics.models import DEFAULT_MODEL as models_default

    assert api.DEFAULT_MODEL == cli_default == models_default


# -- exit codes are the CLI's ------------------------------------------------------------------------


def _exit(argv: list[str], capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as caught:
        main(argv)
    return caught.value.code, capsys.readouterr().err


def test_exit_codes_follow_the_exception_type(monkeypatch, capsys):
    def raising(exc):
        def call(*args, **kwargs):
            raise exc
        return call

    cases = [(PsytestError("inventory 'x': broken; fix it"), 2, "psytest: error: inventory 'x': broken; fix it"),
             (KeyboardInterrupt(), 130, ""),  # typer turns it into exit 130 itself, quietly
             (PermissionError(13, "Permission denied", "/ro/out"), 2, "psytest: error: /ro/out: Permission denied"),
             (sqlite3.DatabaseError("file is not a database"), 2, "could not be read or written"),
             (ValueError("a bug deep down"), 70, "psytest: error: internal error (ValueError: a bug deep down)"),
             (KeyError("x"), 70, "internal error (KeyError")]
    for exc, code, line in cases:
        monkeypatch.setattr(api, "list_inventories", raising(exc))
        got, err = _exit(["inventories", "list"], capsys)
        assert got == code and line in err and len(err.strip().splitlines()) == (1 if line else 0), (exc, got, err)
        assert "Traceback" not in err
    monkeypatch.setenv("PSYTEST_DEBUG", "1")
    with pytest.raises(ValueError, match="a bug deep down"):  # the traceback, for a bug only
        monkeypatch.setattr(api, "list_inventories", raising(ValueError("a bug deep down")))
        main(["inventories", "list"])
    monkeypatch.setattr(api, "list_inventories", raising(PsytestError("still one line")))
    assert _exit(["inventories", "list"], capsys) == (2, "psytest: error: still one line\n")


def test_failed_results_exit_1(cli_and_api_runs, tmp_path, capsys):
    root, _, _ = cli_and_api_runs
    base = tmp_path / "base.json"
    assert _exit(["baseline", str(root / "api"), "--out", str(base)], capsys)[0] == 0
    other = psychometrics.administer("sim/extraversion=-2,seed=5", inventory=["mini-ipip", "sd3"], out=tmp_path / "b",
                                     **{**OPTIONS, "samples": 2, "temperature": 0.7})
    result = psychometrics.check(other.run_dir, baseline=base)
    assert not result.passed  # a result, not an exception
    code, err = _exit(["check", str(other.run_dir), "--baseline", str(base)], capsys)
    assert code == 1 and err == ""
    assert psychometrics.check(root / "cli", baseline=base).passed
    assert _exit(["check", str(root / "cli"), "--baseline", str(base)], capsys)[0] == 0


@pytest.mark.slow
def test_the_python_api_example_runs(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "python_api.py")], capture_output=True, text=True,
                          cwd=tmp_path, env=env, timeout=HANG_GUARD_S)
    assert done.returncode == 0, done.stderr
    run = tmp_path / "runs" / "python-api-example"
    assert (run / "a" / "analysis" / "score_summary.csv").is_file() and (run / "a" / "report" / "report.html").is_file()
    assert "sent 1056 requests" in done.stdout and "drift check:" in done.stdout
