"""Runs that grow, temperature as a design factor, and --reuse, checked on what a server receives.

The loopback OpenAI server (:mod:`psychometrics.testing.openai_server`) logs a key per request it gets
(messages, mode, seed): a run extended twice must send, each time, exactly the keys of its new cells (as
a multiset: temperatures share prompts and seeds), and a run with --reuse must send nothing another run
answered.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections import Counter

import pytest

from psychometrics.design.plan import Design, design_from_mapping, plan_requests
from psychometrics.inventories.library import resolve_inventory
from psychometrics.models.simulated import SimulatedRespondent
from psychometrics.run.manifest import read_manifest
from psychometrics.run.store import RunStore
from psychometrics.testing.openai_server import model_request_key, start_server

MODEL = "openai/psytest-sim"


def _main(capsys, *args):
    from psychometrics.cli import main

    with pytest.raises(SystemExit) as exited:
        main(list(args))
    out, err = capsys.readouterr()
    return exited.value.code, out, err


def _keys(design: dict, inventories: list[str], base_url: str) -> Counter:
    """What the server should receive for a design's plan, as a multiset of request keys."""
    from psychometrics.models import resolve_model

    backend = resolve_model(MODEL, api_base=base_url)
    planned = plan_requests([resolve_inventory(i) for i in inventories], design_from_mapping(design, "test"),
                            backend.name, backend.params)
    return Counter(model_request_key(p.request) for p in planned)


def _received(server, since: int) -> Counter:
    return Counter(key for _, key, _ in server.request_log[since:])


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with start_server(SimulatedRespondent("sim/e=1,seed=1")) as running:
        yield running


def test_a_run_extended_twice_sends_exactly_its_new_cells_and_records_each_extension(tmp_path, capsys, server):
    out = tmp_path / "run"
    base = ("administer", "--model", MODEL, "--api-base", server.base_url, "--out", str(out), "--json",
            "--concurrency", "8")
    steps = [
        (["-i", "mini-ipip"], {}, ["mini-ipip"]),
        (["-i", "mini-ipip", "--samples", "2", "--temperature", "0,0.7", "--option-orders", "original,reversed"],
         {"samples": 2, "temperature": [0, 0.7], "option_orders": ["original", "reversed"]}, ["mini-ipip"]),
        (["-i", "mini-ipip", "-i", "bfi-44", "--samples", "2", "--temperature", "0,0.7,1.0",
          "--option-orders", "original,reversed", "--templates", "numbered,lettered"],
         {"samples": 2, "temperature": [0, 0.7, 1.0], "option_orders": ["original", "reversed"],
          "templates": ["numbered", "lettered"]}, ["mini-ipip", "bfi-44"]),
    ]
    before: Counter = Counter()
    for number, (options, design, inventories) in enumerate(steps):
        planned = _keys(design, inventories, server.base_url)
        new = planned - before
        seen = len(server.request_log)
        code, stdout, err = _main(capsys, *base, *options, "--dry-run")  # says how the run grows, sends nothing
        plan = json.loads(stdout)
        assert code == 0 and plan["to_send"] == sum(new.values()) and len(server.request_log) == seen
        assert plan.get("extension", {}).get("requests_added") == (sum(new.values()) if number else None)
        code, stdout, err = _main(capsys, *base, *options)
        assert code == 0 and err == "", err
        summary = json.loads(stdout)
        assert summary["requests_planned"] == sum(planned.values())
        assert summary["already_answered"] == sum(before.values())
        assert summary["sent"] == sum(new.values()) and summary["failed"] == 0
        assert _received(server, seen) == new  # exactly the new cells, each once
        manifest = read_manifest(out)
        assert len(manifest.extensions) == number
        if number:
            extension = manifest.extensions[-1]
            assert extension.requests_before == sum(before.values())
            assert extension.requests_added == sum(new.values()) == summary["sent"]
            assert extension.requests_planned == sum(planned.values())
        before = planned
    assert manifest.extensions[0].changed["samples"] == {"from": 1, "to": 2}
    assert manifest.extensions[0].changed["temperature"] == {"from": 0.0, "to": [0.0, 0.7]}
    assert manifest.extensions[1].inventories_added == ["bfi-44"]
    assert set(manifest.extensions[1].changed) == {"temperature", "templates"}
    # the same command again: a resume, nothing sent, no extension recorded
    seen = len(server.request_log)
    code, stdout, _ = _main(capsys, *base, *steps[-1][0])
    assert code == 0 and json.loads(stdout)["sent"] == 0 and len(server.request_log) == seen
    assert len(read_manifest(out).extensions) == 2
    # the old answers are analysed with the new ones: temperature is a factor with its own variance share
    import pandas as pd

    scores = pd.read_csv(out / "analysis" / "scores.csv")
    assert sorted(scores["temperature"].unique()) == [0.0, 0.7, 1.0]
    assert len(scores[(scores["inventory"] == "mini-ipip") & (scores["kind"] == "scale")]) == 5 * 2 * 2 * 3 * 2
    shares = pd.read_csv(out / "analysis" / "variance_decomposition.csv")
    assert "temperature" in set(shares["source"])


@pytest.mark.parametrize("options, named", [
    (["--seed", "3"], "a different seed (the run used 0, this command 3)"),
    (["--items-per-request", "2"], "a different items_per_request"),
    (["--invalid", "reask:2"], "a different invalid-answer policy"),
    (["--samples", "1"], "samples 2 (this command gives 1)"),
    (["--samples", "3", "--temperature", "0.7"], "temperature 0, which this command does not give"),
    (["--samples", "2", "--option-orders", "reversed"], "option orders original, which this command does not give"),
    (["--samples", "2", "--model", "sim/e=2,seed=1"], "a different model"),
])
def test_changes_to_existing_cells_are_refused_naming_what_differs(tmp_path, capsys, options, named):
    out = tmp_path / "run"
    base = ["administer", "--model", "sim/e=1,seed=1", "-i", "mini-ipip", "--out", str(out), "--json"]
    code, _, _ = _main(capsys, *base, "--samples", "2")
    assert code == 0
    manifest_before = (out / "manifest.json").read_bytes()
    with RunStore(out / "responses.sqlite") as store:
        rows_before = store.count()
    for dry_run in (["--dry-run"], []):  # the dry run gives the real run's refusal
        code, stdout, err = _main(capsys, *base, *options, *dry_run)  # a repeated --model: the last one counts
        assert code == 2 and stdout == ""
        lines = err.strip().splitlines()
        assert len(lines) == 1 and named in lines[0] and "Traceback" not in err, err
    assert (out / "manifest.json").read_bytes() == manifest_before
    with RunStore(out / "responses.sqlite") as store:
        assert store.count() == rows_before


def test_a_changed_inventory_or_a_renamed_cell_is_refused(tmp_path, capsys):
    from psychometrics.inventories.library import inventory_dir

    path = tmp_path / "mine.yaml"
    shutil.copy(inventory_dir() / "mini-ipip.yaml", path)
    out = tmp_path / "run"
    base = ["administer", "--model", "sim/e=1,seed=1", "-i", str(path), "--out", str(out), "--json"]
    assert _main(capsys, *base)[0] == 0
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("Am the life of the party", "Am the soul of the party", 1), encoding="utf-8")
    code, _, err = _main(capsys, *base, "--samples", "2")
    assert code == 2 and "a changed inventory 'mini-ipip'" in err, err
    path.write_text(text, encoding="utf-8")
    # rotations, then original first: the first rotation would be named "original", renaming existing cells
    out2 = tmp_path / "run2"
    base2 = ["administer", "--model", "sim/e=1,seed=1", "-i", "mini-ipip", "--out", str(out2), "--json"]
    assert _main(capsys, *base2, "--option-orders", "rotations")[0] == 0
    code, _, err = _main(capsys, *base2, "--option-orders", "original,rotations")
    assert code == 2 and "this command would plan differently" in err, err


def test_reuse_copies_answers_to_identical_requests_and_sends_nothing_answered_elsewhere(tmp_path, capsys, server):
    first, second = tmp_path / "first", tmp_path / "second"
    base = ["administer", "--model", MODEL, "--api-base", server.base_url, "-i", "mini-ipip", "--json"]
    assert _main(capsys, *base, "--samples", "2", "--out", str(first))[0] == 0
    code, stdout, err = _main(capsys, *base, "--samples", "3", "--out", str(second), "--reuse", str(first),
                              "--dry-run")
    plan = json.loads(stdout)
    assert code == 0 and plan["to_reuse"] == 40 and plan["to_send"] == 20
    assert plan["reused"] == {str(first): 40}
    seen = len(server.request_log)
    code, stdout, err = _main(capsys, *base, "--samples", "3", "--out", str(second), "--reuse", str(first))
    summary = json.loads(stdout)
    assert code == 0 and err == "" and summary["reused"] == 40 and summary["sent"] == 20
    expected = _keys({"samples": 3}, ["mini-ipip"], server.base_url) - _keys({"samples": 2}, ["mini-ipip"],
                                                                             server.base_url)
    assert _received(server, seen) == expected  # only sample 2, never asked before
    with RunStore(first / "responses.sqlite") as a, RunStore(second / "responses.sqlite") as b:
        old = {(r.request_id, r.item_id): r for r in a.rows()}
        copied = [r for r in b.rows() if r.reused_from is not None]
        assert len(copied) == 40 and {r.reused_from for r in copied} == {str(first.resolve())}
        for row in copied:
            original = old[(row.request_id, row.item_id)]
            assert (row.raw_reply, row.value, row.outcome) == (original.raw_reply, original.value, original.outcome)
            assert row.cost == 0.0
    records = read_manifest(second).reused
    assert len(records) == 1 and records[0].requests == 40 and records[0].source == str(first.resolve())
    # again: everything answered, nothing copied or sent
    seen = len(server.request_log)
    code, stdout, _ = _main(capsys, *base, "--samples", "3", "--out", str(second), "--reuse", str(first))
    assert code == 0 and json.loads(stdout)["reused"] == 0 and json.loads(stdout)["sent"] == 0
    assert len(server.request_log) == seen and len(read_manifest(second).reused) == 1


def test_reuse_takes_only_answers_that_fit_and_refuses_bad_sources(tmp_path, capsys):
    first, second = tmp_path / "first", tmp_path / "second"
    base = ["administer", "--model", "sim/e=1,seed=1", "-i", "mini-ipip", "--json"]
    assert _main(capsys, *base, "--out", str(first))[0] == 0
    with sqlite3.connect(first / "responses.sqlite") as conn:  # a hostile or damaged source
        ids = [r[0] for r in conn.execute("SELECT request_id FROM responses ORDER BY rowid LIMIT 3")]
        conn.execute("UPDATE responses SET position = 99 WHERE request_id = ?", (ids[0],))
        conn.execute("UPDATE responses SET error = 'boom', outcome = 'error' WHERE request_id = ?", (ids[1],))
        conn.execute("UPDATE responses SET item_id = 'other' WHERE request_id = ?", (ids[2],))
    code, stdout, err = _main(capsys, *base, "--out", str(second), "--reuse", str(first))
    summary = json.loads(stdout)
    assert code == 0 and summary["reused"] == 17 and summary["sent"] == 3, err
    with RunStore(second / "responses.sqlite") as store:
        sent = {r.request_id for r in store.rows() if r.reused_from is None}
    assert sent == set(ids)
    for args, message in [
        (["--reuse", str(tmp_path / "nowhere")], "not a directory"),
        (["--reuse", str(second)], "is the run being written"),
        (["--reuse", str(first), "--reuse", str(first)], "given twice"),
        (["--reuse", str(tmp_path)], "not a psytest run directory"),
    ]:
        code, stdout, err = _main(capsys, *base, "--out", str(second), *args)
        assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, (args, err)


def test_temperatures_cross_the_design_and_one_temperature_plans_as_before():
    inventory = [resolve_inventory("mini-ipip")]
    one = plan_requests(inventory, Design(temperature=0.7), "sim/x", {})
    listed = plan_requests(inventory, design_from_mapping({"temperature": [0.7]}, "d"), "sim/x", {})
    assert [p.request_id for p in one] == [p.request_id for p in listed]
    assert design_from_mapping({"temperature": [0.7]}, "d").model_dump() == Design(temperature=0.7).model_dump()
    three = plan_requests(inventory, design_from_mapping({"temperature": [0, 0.7, 1.0]}, "d"), "sim/x", {})
    assert len(three) == 3 * len(one) and len({p.request_id for p in three}) == len(three)
    by_temperature = {t: [p for p in three if p.condition.temperature == t] for t in (0.0, 0.7, 1.0)}
    assert [p.request_id for p in by_temperature[0.7]] == [p.request_id for p in one]
    # common random numbers: the seed of a cell does not depend on its temperature
    assert [p.request.seed for p in by_temperature[0.0]] == [p.request.seed for p in by_temperature[1.0]]
    assert {p.request.temperature for p in by_temperature[1.0]} == {1.0}


@pytest.mark.parametrize("value, message", [
    ("0,abc", "--temperature: 'abc' is not a number"),
    ("0,-1", "temperature: each temperature must be from 0 to 5, not -1"),
    ("0.5,0.5", "temperature: temperature 0.5 is given twice"),
    ("0,nan", "temperature: each temperature must be a number"),
])
def test_bad_temperatures_are_one_line_errors(tmp_path, capsys, value, message):
    code, stdout, err = _main(capsys, "administer", "--model", "sim/e=1", "--temperature", value, "--dry-run",
                              "--out", str(tmp_path / "run"))
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err
    assert not (tmp_path / "run").exists()


def test_a_design_file_lists_temperatures_and_the_dry_run_counts_them(tmp_path, capsys):
    design = tmp_path / "design.yaml"
    design.write_text("temperature: [0, 0.7]\nsamples: 2\n", encoding="utf-8")
    code, stdout, _ = _main(capsys, "administer", "--model", "sim/e=1", "--design", str(design), "--dry-run", "--json")
    plan = json.loads(stdout)
    assert code == 0 and plan["requests_planned"] == 20 * 2 * 2
    factor = next(f for f in plan["factors"] if f["factor"] == "temperature")
    assert factor["levels"] == 2 and factor["names"] == ["0", "0.7"]
    design.write_text("temperature: [0, true]\n", encoding="utf-8")
    code, _, err = _main(capsys, "administer", "--model", "sim/e=1", "--design", str(design), "--dry-run")
    assert code == 2 and f"{design}: temperature:" in err and len(err.strip().splitlines()) == 1, err


def test_a_run_stored_before_temperature_was_recorded_grows_in_temperature(tmp_path, capsys):
    out = tmp_path / "run"
    base = ["administer", "--model", "sim/e=1,seed=1", "-i", "mini-ipip", "--out", str(out), "--json"]
    assert _main(capsys, *base, "--temperature", "0.3")[0] == 0
    with sqlite3.connect(out / "responses.sqlite") as conn:  # as an older psytest stored conditions
        conn.execute("UPDATE responses SET condition = json_remove(condition, '$.temperature')")
    from psychometrics.run.owner import open_run

    assert "temperature" not in open_run(out).answers().responses.columns  # one temperature: no factor column
    code, stdout, err = _main(capsys, *base, "--temperature", "0.3,0.9")
    assert code == 0 and json.loads(stdout)["sent"] == 20, err
    responses = open_run(out).answers().responses
    assert responses.groupby("temperature").size().to_dict() == {0.3: 20, 0.9: 20}
    from psychometrics.run.export import iter_responses

    exported = next(iter_responses(out))
    assert sorted(exported["temperature"].unique()) == [0.3, 0.9]


def test_a_damaged_extension_record_is_a_one_line_error(tmp_path, capsys):
    out = tmp_path / "run"
    base = ["administer", "--model", "sim/e=1,seed=1", "-i", "mini-ipip", "--out", str(out), "--json"]
    assert _main(capsys, *base)[0] == 0
    assert _main(capsys, *base, "--samples", "2")[0] == 0
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    manifest["extensions"][0]["previous_design"]["temperature"] = "hot"
    (out / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    for args in (["score", str(out)], [*base, "--samples", "2"]):
        code, _, err = _main(capsys, *args)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and "extensions[0].previous_design.temperature" in lines[0], err
