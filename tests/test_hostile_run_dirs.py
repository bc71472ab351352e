"""Malformed run directories: every command that reads one gives one line, never a traceback.

Each file in ``tests/data/hostile/run_dirs/`` describes one damaged run directory: a change to a good
questionnaire or behaviour run's manifest (keys deleted or set to other types, other JSON, 100,000
levels of nesting, 20 MB, not UTF-8, missing, a directory) or SQL run on its store (text where numbers
belong, NULLs in required columns, JSON that is not JSON or not of its shape, missing columns and
tables). Its first line, ``# expect: TEXT``, is the part of the error that identifies the problem, or
``ok`` when the commands should simply work. Every command that reads such a directory runs on it:
``score``, ``report``, ``compare``, ``baseline``, ``check``, ``reproduce``, ``export``, ``validity`` and a
resumed ``administer`` for questionnaire runs; ``validity``, ``report --behavior`` and a resumed
``behave`` for behaviour runs. An error must be exit code 2, one line, the expected text, and the file at
fault (``names``: the manifest, the store or the run directory).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from psychometrics.cli import main
from psychometrics.testing.cli import cli
from psychometrics.limits import JSON_BYTES

CORPUS = sorted((Path(__file__).parent / "data" / "hostile" / "run_dirs").glob("*.yaml"))
# Two samples at temperature 1: the baseline has run-to-run spread, so check --unit sd can run on it.
ADMINISTER = ["administer", "--model", "sim/e=1,seed=2", "-i", "mini-ipip", "--samples", "2", "--temperature", "1"]
BEHAVE = ["behave", "--model", "sim/a=1,seed=2", "--tasks", "dictator-game,social-choice", "--variants", "3"]


def case(path: Path) -> tuple[str, dict]:
    first, rest = path.read_text(encoding="utf-8").split("\n", 1)
    assert first.startswith("# expect: "), path
    return first.removeprefix("# expect: "), yaml.safe_load(rest)


@pytest.fixture(scope="module")
def good_runs(tmp_path_factory):
    """A questionnaire run, a behaviour run and a baseline, all made through the command line."""
    root = tmp_path_factory.mktemp("good-runs")
    for args in ([*ADMINISTER, "--out", root / "q", "--json"], [*BEHAVE, "--out", root / "b", "--json"],
                 ["baseline", root / "q", "--out", root / "baseline.json"]):
        with pytest.raises(SystemExit) as exited:
            main([str(a) for a in args])
        assert exited.value.code == 0
    return root


def _commands(kind: str, run: Path, good: Path, scratch: Path) -> dict[str, list]:
    if kind == "questionnaire":
        return {
            "score": ["score", run, "--no-structure", "--out", scratch / "s"],
            "report": ["report", run, "--out", scratch / "r"],
            "compare": ["compare", run, good / "q"],
            "baseline": ["baseline", run, "--out", scratch / "b.json"],
            "check": ["check", run, "--baseline", good / "baseline.json"],
            "reproduce": ["reproduce", run],
            "export": ["export", run, "--csv", scratch / "x.csv"],
            "validity": ["validity", "-s", run, "-b", good / "b", "--out", scratch / "v", "--bootstrap", "100"],
            "administer": [*ADMINISTER, "--out", run, "--json"],
        }
    return {
        "validity": ["validity", "-s", good / "q", "-b", run, "--out", scratch / "v", "--bootstrap", "100"],
        "report": ["report", good / "q", "--behavior", run, "--out", scratch / "r"],
        "behave": [*BEHAVE, "--out", run, "--json"],
    }


def _set(target, dotted: str, value=None, delete: bool = False) -> None:
    *parents, last = dotted.split(".")
    for part in parents:
        target = target[int(part)] if isinstance(target, list) else target.setdefault(part, {})
    key = int(last) if isinstance(target, list) else last
    if delete:
        del target[key]
    else:
        target[key] = value


def _damage(run: Path, spec: dict) -> None:
    import sqlite3
    from contextlib import closing

    manifest_path = run / "manifest.json"
    change = spec.get("manifest") or {}
    text = manifest_path.read_text(encoding="utf-8")
    if "delete" in change or "set" in change:
        manifest = json.loads(text)
        for dotted in change.get("delete", []):
            _set(manifest, dotted, delete=True)
        for dotted, value in (change.get("set") or {}).items():
            _set(manifest, dotted, value)
        manifest_path.write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    if "text" in change:
        manifest_path.write_text(change["text"], encoding="utf-8")
    if "text_replace" in change:
        old, new = change["text_replace"]
        assert old in text
        manifest_path.write_text(text.replace(old, new), encoding="utf-8")
    generate = change.get("generate")
    if generate == "deep":
        manifest_path.write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    elif generate == "truncated":
        manifest_path.write_text(text[: len(text) // 2], encoding="utf-8")
    elif generate == "latin1":
        manifest_path.write_bytes(text.encode("utf-8")[:-2] + b', "caf\xe9": 1}')
    elif generate == "huge":
        manifest_path.write_text('{"model": "' + "x" * JSON_BYTES + '"}', encoding="utf-8")
    elif generate in ("missing", "directory"):
        manifest_path.unlink()
        if generate == "directory":
            manifest_path.mkdir()
    store = run / ("responses.sqlite" if spec["run"] == "questionnaire" else "behavior.sqlite")
    if spec.get("sql"):
        with closing(sqlite3.connect(store)) as db, db:
            for statement in spec["sql"]:
                db.execute(statement)
        db.close()
    if (spec.get("store") or {}).get("generate") == "directory":
        for suffix in ("", "-wal", "-shm"):
            Path(f"{store}{suffix}").unlink(missing_ok=True)
        store.mkdir()


def test_the_corpus_is_large_and_every_case_is_distinct():
    cases = [case(p) for p in CORPUS]
    assert len(cases) >= 75 and sum(expect == "ok" for expect, _ in cases) >= 8
    assert len({json.dumps(spec, sort_keys=True) for _, spec in cases}) == len(cases)


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.stem)
def test_a_malformed_run_directory_is_one_line_in_every_command(path, good_runs, tmp_path, capsys):
    expect, spec = case(path)
    source = good_runs / ("q" if spec["run"] == "questionnaire" else "b")
    run = tmp_path / "run"
    shutil.copytree(source, run)
    _damage(run, spec)
    store = run / ("responses.sqlite" if spec["run"] == "questionnaire" else "behavior.sqlite")
    named = {"manifest": run / "manifest.json", "store": store, "run": run, "nothing": None}[spec.get("names", "manifest")]
    (tmp_path / "out").mkdir()
    commands = {name: args for name, args in _commands(spec["run"], run, good_runs, tmp_path / "out").items()
                if name not in spec.get("skip", [])}
    only = spec.get("only") or ([n for n in commands if n != "export"] if "manifest" in spec else None)
    for name, args in commands.items():
        code, _, err = cli(capsys, *args)
        assert "Traceback" not in err and code in (0, 1, 2), (name, code, err)
        if code == 2:
            assert len(err.splitlines()) == 1 and err.startswith("psytest: error: "), (name, err)
        if expect == "ok" or (only is not None and name not in only):  # export reads no manifest
            assert code in (0, 1) or expect != "ok", (name, err)
            continue
        assert code == 2 and expect in err, (name, expect, err)
        assert named is None or str(named) in err, (name, named, err)


def _baseline_case(change):
    def make(good: dict):
        data = json.loads(json.dumps(good))
        change(data)
        return json.dumps(data)
    return make


BASELINES = {
    "a-list": (lambda good: "[]", "not a psytest baseline"),
    "deep": (lambda good: "[" * 100_000 + "]" * 100_000, "JSON nested too deeply to read"),
    "truncated": (lambda good: json.dumps(good)[:100], "not valid JSON"),
    "not-utf8": (lambda good: json.dumps(good).encode().replace(b'"model"', b'"mod\xe9l"'), "not UTF-8 text"),
    "huge": (lambda good: '{"x": "' + "y" * JSON_BYTES + '"}', "larger than the 20,000,000 bytes"),
    "no-scales": (_baseline_case(lambda d: d.pop("scales")), "'scales' is missing or not a list"),
    "scales-mapping": (_baseline_case(lambda d: d.update(scales={"E": 3})), "'scales' is missing or not a list"),
    "scale-a-string": (_baseline_case(lambda d: d["scales"].__setitem__(0, "E")), "scales[0] lacks"),
    "sd-text": (_baseline_case(lambda d: d["scales"][0].update(sd="wide")), "scales[0].sd must be a number"),
    "n-boolean": (_baseline_case(lambda d: d["scales"][0].update(n=True)), "scales[0].n must be a number"),
    "mean-infinite": (lambda good: json.dumps(good).replace('"mean": ', '"mean": Infinity, "was": ', 1),
                      "scales[0].mean must be a number"),
    "scale-name-number": (_baseline_case(lambda d: d["scales"][0].update(scale=5)), "scales[0].scale must be text"),
    "inventory-hash-list": (_baseline_case(lambda d: d["inventories"].update({"mini-ipip": []})),
                            "inventories.mini-ipip must be a content hash"),
    "design-list": (_baseline_case(lambda d: d.update(design=[])), "'design' and 'backend_params' must be objects"),
    "model-missing": (_baseline_case(lambda d: d.pop("model")), "'model' is missing or not a str"),
    "format-3": (_baseline_case(lambda d: d.update(psytest_baseline=3)), "baseline format 3 is not supported"),
}


@pytest.mark.parametrize("name", BASELINES)
def test_a_malformed_baseline_is_one_line(name, good_runs, tmp_path, capsys):
    make, expect = BASELINES[name]
    content = make(json.loads((good_runs / "baseline.json").read_text(encoding="utf-8")))
    path = tmp_path / "baseline.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    code, _, err = cli(capsys, "check", good_runs / "q", "--baseline", path)
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert str(path) in err and expect in err, (expect, err)


def test_a_behaviour_run_given_where_a_questionnaire_run_belongs_is_named(good_runs, tmp_path, capsys):
    """The red-team case: score and report on a behaviour run directory were a KeyError traceback."""
    run = good_runs / "b"
    for args in (["score", run], ["report", run, "--out", tmp_path / "r"], ["compare", run, good_runs / "q"],
                 ["baseline", run, "--out", tmp_path / "b.json"], ["check", run, "--baseline", good_runs / "baseline.json"],
                 ["reproduce", run], ["validity", "-s", run, "-b", run]):
        code, _, err = cli(capsys, *args)
        assert code == 2 and len(err.splitlines()) == 1, (args, err)
        assert f"{run}: a behaviour run" in err or f"--selfreport {run}: a behaviour run" in err, (args, err)
    code, _, err = cli(capsys, "export", run, "--csv", tmp_path / "x.csv")
    assert code == 2 and f"{run}: a behaviour run" in err, err
    other = tmp_path / "q2"  # a second questionnaire run (the same one twice is refused as given twice)
    shutil.copytree(good_runs / "q", other)
    code, _, err = cli(capsys, "validity", "-s", good_runs / "q", "-b", other)
    assert code == 2 and f"{other}: a questionnaire run, not a behaviour run" in err, err
