"""One owner for a run directory: what a run is (identity), how it is read (open_run), and what is refused.

The first tests reproduce two defects of the layout before the run owner (issue 14), so they fail on that
code and pass on this one:

* a template whose text was edited between two invocations of the same command mixed two prompt
  versions into one run (20 requests re-sent beside the 20 answered: 40 rows, and ``score`` and
  ``reproduce`` passed);
* five readers of a run directory disagreed: with ``invalid: drop``, ``score`` gave a score to 13 of 60
  cells and the validity reader to 58 of 60, and after the run's inventory file was edited ``score``
  refused while ``validity`` read on.

Measured on the code before (commit c8b9f58) with these tests' own set-ups: the edited template re-sent
20 requests into the 20-row run (40 rows); in ``dropped_run`` ``score`` scored 36 of 60 cells and the
validity reader 60 of 60 (persona means 3.136 vs 3.267). The golden request ids were produced by that
code too: the new layout plans exactly the ids it planned.
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
from contextlib import closing
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import psychometrics
from psychometrics.design import prompts
from psychometrics.design.plan import Design, plan_requests
from psychometrics.errors import PsytestError
from psychometrics.inventories.library import resolve_inventory
from psychometrics.models.simulated import SimulatedRespondent
from psychometrics.run.directory import administer
from psychometrics.run.owner import open_run

PACKAGE = Path(psychometrics.__file__).parent
GOLDEN_IDS = Path(__file__).parent / "data" / "golden_request_ids.json"


def _administer(out: Path, model: str = "sim/seed=4", design: Design | None = None, inventory: str = "mini-ipip",
                sources: dict | None = None):
    return administer(SimulatedRespondent(model), [resolve_inventory(inventory)], design or Design(), out,
                      inventory_sources=sources)


def _rows(run: Path) -> int:
    with closing(sqlite3.connect(f"file:{run / 'responses.sqlite'}?mode=ro", uri=True)) as db:
        return db.execute("SELECT count(*) FROM responses").fetchone()[0]


# --------------------------------------------------------------------------------------- identity


def test_a_template_edited_between_two_runs_is_refused_by_name(tmp_path, monkeypatch):
    run = tmp_path / "run"
    first = _administer(run)
    assert first.stats.sent == 20 and _rows(run) == 20
    assert _administer(run).stats.sent == 0  # the same command resumes: nothing to send

    edited = replace(prompts.TEMPLATES["numbered"], lead="Answer options:")  # a one-word change
    monkeypatch.setitem(prompts.TEMPLATES, "numbered", edited)
    with pytest.raises(PsytestError, match="a changed template 'numbered'") as error:
        _administer(run)
    assert "\n" not in str(error.value) and str(run) in str(error.value)
    assert _rows(run) == 20  # nothing was sent into the old run


def test_a_changed_rendering_with_the_same_templates_is_refused(tmp_path, monkeypatch):
    """An upgrade that renders the same inputs differently (here: a changed reply rule's
    surroundings, simulated by a renderer that adds a space) is caught by the plan's hash."""
    run = tmp_path / "run"
    _administer(run)
    from psychometrics.design.prompts import PromptFrame

    original = PromptFrame.render  # what the planner renders every prompt with

    def rendered_differently(*args, **kwargs):
        prompt = original(*args, **kwargs)
        last = prompt.messages[-1]
        return replace(prompt, messages=(*prompt.messages[:-1], replace(last, content=last.content + " ")))

    monkeypatch.setattr(PromptFrame, "render", rendered_differently)
    with pytest.raises(PsytestError, match="prompts rendered differently from the same inputs"):
        _administer(run)
    assert _rows(run) == 20


@pytest.mark.parametrize("change, named", [
    (dict(model="sim/seed=5"), "a different model (the run used sim/seed=4, this command sim/seed=5)"),
    (dict(design=Design(seed=1)), "a different seed (the run used 0, this command 1)"),
    (dict(design=Design(max_tokens=32)), "a different max_tokens"),
    (dict(inventory="bfi-44"), "inventory 'mini-ipip', which this command does not give"),
])
def test_resuming_with_another_model_design_or_inventory_names_the_difference(tmp_path, change, named):
    """A run grows (levels added: tests/test_growing_runs.py) but never changes or drops its cells."""
    run = tmp_path / "run"
    _administer(run)
    with pytest.raises(PsytestError) as error:
        _administer(run, **change)
    assert named in str(error.value) and "\n" not in str(error.value)
    assert _rows(run) == 20


def test_request_ids_are_pinned(tmp_path):
    """The ids of a small fixed design, committed: a change to how prompts are rendered or identified
    changes them, which would make every earlier run resume as a new one. If the change is intended,
    regenerate the file with PSYTEST_UPDATE_GOLDEN=1 and say so in the commit. The committed ids were
    planned by psytest before the run-owner redesign, so they also show the redesign changed none."""
    import os

    design = Design(option_orders=["original", "reversed"], templates=["numbered", "lettered"],
                    modes=["text", "probs"], samples=2, temperature=0.7, seed=11,
                    personas="trait-shaping", persona_ids=["extraversion-very-high", "baseline"])
    from psychometrics.design.personas import resolve_persona_set

    persona_set = resolve_persona_set("trait-shaping")
    planned = plan_requests([resolve_inventory("mini-ipip")], design, "sim/seed=1", {}, persona_set)
    ids = [p.request_id for p in planned]
    if os.environ.get("PSYTEST_UPDATE_GOLDEN") == "1":
        GOLDEN_IDS.write_text(json.dumps(ids, indent=0) + "\n", encoding="utf-8")
    golden = json.loads(GOLDEN_IDS.read_text(encoding="utf-8"))
    assert len(ids) == len(set(ids)) == 20 * 2 * 2 * 2 * 2 * 2
    assert ids == golden


# --------------------------------------------------------------------------------------- one reader


def _long_scores(frame: pd.DataFrame) -> pd.DataFrame:
    """Scale scores as (persona, sample, template..., inventory, scale) -> score, scales only."""
    scales = frame[frame["kind"] == "scale"] if "kind" in frame.columns else frame
    return scales


@pytest.fixture(scope="module")
def dropped_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("owner") / "drop"
    design = Design(samples=3, temperature=1.0, invalid="drop", personas="trait-shaping",
                    persona_ids=["extraversion-very-high", "extraversion-very-low", "baseline", "neuroticism-very-high"])
    _administer(run, "sim/seed=9,refusal=0.12", design)
    return run


def test_every_reader_scores_the_same_cells_under_the_runs_invalid_policy(dropped_run, tmp_path):
    from psychometrics.analysis.baseline import write_baseline
    from psychometrics.analysis.compare import load_run_scores
    from psychometrics.analysis.tables import analyze_run
    from psychometrics.validity.statistics import read_selfreport

    score = analyze_run(dropped_run, structure=False)["scores"]
    score = score[score["kind"] == "scale"]
    validity = read_selfreport([dropped_run])[0]
    compare = load_run_scores(dropped_run).scores
    compare = compare[compare["kind"] == "scale"]

    # The policy bites: some cells lose a scale (a refused item), and every reader drops the same ones.
    scored = score["score"].notna().sum()
    assert 0 < scored < len(score)
    assert compare["score"].notna().sum() == scored
    trait_scales = score[score["scale"].isin(validity["scale"].unique())]
    assert validity["score"].notna().sum() == trait_scales["score"].notna().sum()
    by_persona = {reader: part.groupby(["persona", "scale"])["score"].mean()
                  for reader, part in (("score", score), ("compare", compare), ("validity", validity))}
    common = by_persona["validity"].index
    assert np.allclose(by_persona["score"].loc[common], by_persona["validity"], rtol=0, atol=1e-12, equal_nan=True)
    assert np.allclose(by_persona["score"], by_persona["compare"].loc[by_persona["score"].index], atol=1e-12,
                       equal_nan=True)

    baseline = write_baseline(dropped_run, tmp_path / "baseline.json")
    means = score.groupby(["inventory", "scale"])["score"].mean()
    for entry in baseline["scales"]:
        assert entry["mean"] == pytest.approx(means.loc[(entry["inventory"], entry["scale"])], abs=1e-9)


def test_an_edited_inventory_file_is_refused_by_every_reader(tmp_path):
    source = tmp_path / "my-inventory.yaml"
    shutil.copy(PACKAGE.parent / "inventories" / "mini-ipip.yaml", source)
    inventory = resolve_inventory(str(source))
    run = tmp_path / "run"
    administer(SimulatedRespondent("sim/seed=2"), [inventory], Design(), run,
               inventory_sources={inventory.id: str(source)})
    from psychometrics import api

    api.baseline(run, out=tmp_path / "baseline.json")
    api.score(run)  # so that reproduce has tables to recompute
    text = source.read_text(encoding="utf-8")
    source.write_text(re.sub(r"(?m)^(\s*text: )(.+)$", r"\1Edited \2", text, count=1), encoding="utf-8")

    from psychometrics.analysis.compare import load_run_scores
    from psychometrics.analysis.tables import analyze_run
    from psychometrics.validity.statistics import read_selfreport

    readers = {
        "score": lambda: api.score(run, out=tmp_path / "analysis"),
        "analysis tables": lambda: analyze_run(run),
        "report": lambda: api.report(run, out=tmp_path / "report"),
        "compare": lambda: load_run_scores(run),
        "baseline": lambda: api.baseline(run, out=tmp_path / "baseline2.json"),
        "check": lambda: api.check(run, baseline=tmp_path / "baseline.json"),
        "reproduce": lambda: api.reproduce(run),
        "validity": lambda: read_selfreport([run]),
    }
    for name, read in readers.items():
        with pytest.raises(PsytestError, match="has changed since the run") as error:
            read()
        assert "\n" not in str(error.value), name


# --------------------------------------------------------------------------------------- refused stores


def test_a_store_without_its_manifest_is_refused_and_left_alone(tmp_path):
    run = tmp_path / "run"
    _administer(run)
    (run / "manifest.json").unlink()
    before = (run / "responses.sqlite").read_bytes()
    with pytest.raises(PsytestError, match="no manifest.json") as error:
        _administer(run, model="sim/seed=8")  # another study into the same store
    assert "\n" not in str(error.value)
    with pytest.raises(PsytestError):
        open_run(run)
    assert (run / "responses.sqlite").read_bytes() == before


@pytest.mark.parametrize("what", ["store", "manifest"])
def test_an_unknown_version_is_refused_by_readers_and_writers(tmp_path, what):
    run = tmp_path / "run"
    _administer(run)
    if what == "store":
        with closing(sqlite3.connect(run / "responses.sqlite")) as db:
            db.execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
            db.commit()
        expected = "store schema version '999'"
    else:
        manifest = json.loads((run / "manifest.json").read_text(encoding="utf-8"))
        manifest["psytest_manifest"] = 7
        (run / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
        expected = "manifest format 7"
    before = (run / "responses.sqlite").read_bytes()
    for action in (lambda: open_run(run).answers(), lambda: _administer(run)):
        with pytest.raises(PsytestError, match=expected) as error:
            action()
        assert "\n" not in str(error.value) and "upgrade psytest to read it" in str(error.value)
    assert (run / "responses.sqlite").read_bytes() == before


def _downgrade_to_version_1(store: Path) -> None:
    """Make a store as psytest wrote schema version 1: no ``note`` column."""
    with closing(sqlite3.connect(store)) as db, db:
        db.execute("ALTER TABLE responses DROP COLUMN note")
        db.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")


def test_a_version_1_store_is_read_as_it_is_and_migrated_only_by_a_writer(tmp_path):
    run = tmp_path / "run"
    _administer(run, design=Design(samples=2, temperature=1.0))
    scores_now = open_run(run).scores()
    store = run / "responses.sqlite"
    _downgrade_to_version_1(store)
    before = store.read_bytes()

    old = open_run(run)
    with old.store() as opened:
        assert opened.version == 1
    pd.testing.assert_frame_equal(old.scores(), scores_now)
    assert store.read_bytes() == before  # reading migrates nothing

    assert _administer(run, design=Design(samples=2, temperature=1.0)).stats.sent == 0
    with closing(sqlite3.connect(f"file:{store}?mode=ro", uri=True)) as db:
        assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == "3"
        columns = [row[1] for row in db.execute("PRAGMA table_info(responses)")]
        assert "note" in columns and "finish_reason" in columns and "reused_from" in columns
    pd.testing.assert_frame_equal(open_run(run).scores(), scores_now)


# --------------------------------------------------------------------------------------- one owner


def _sources_outside_the_owner():
    owner = PACKAGE / "run"
    for path in sorted(PACKAGE.rglob("*.py")):
        if owner not in path.parents and path.parent.name != "testing":
            yield path, path.read_text(encoding="utf-8")


def test_only_the_run_owner_opens_a_run_directory_or_reads_manifest_keys():
    """Counts the issue asked for: places outside ``psychometrics/run`` that open a run's manifest or
    store by name (target 0: they call :func:`open_run`) and that read manifest keys by string
    (target 0: the manifest is typed)."""
    opening = re.compile(r"""["'](manifest\.json|responses\.sqlite|behavior\.sqlite)["']|read_manifest\(""")
    by_key = re.compile(r"""manifest(\.get\(|\[)["']""")
    opens = [f"{p.relative_to(PACKAGE)}:{n}" for p, text in _sources_outside_the_owner()
             for n, line in enumerate(text.splitlines(), 1) if opening.search(line)]
    keys = [f"{p.relative_to(PACKAGE)}:{n}" for p, text in _sources_outside_the_owner()
            for n, line in enumerate(text.splitlines(), 1) if by_key.search(line)]
    assert keys == []
    assert opens == []
