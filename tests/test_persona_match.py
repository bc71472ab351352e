"""Persona target levels recorded per respondent in run manifests, and the refusal to join runs whose
persona sets differ (``psytest validity``, ``psytest report RUN --behavior``, a study's validity and its
combined report)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from psychometrics.behavior.runner import BehaviorDesign, behave
from psychometrics.behavior.task import resolve_tasks
from psychometrics.design.personas import load_persona_set, resolve_persona_set
from psychometrics.design.plan import Design
from psychometrics.errors import PsytestError
from psychometrics.inventories.library import resolve_inventory
from psychometrics.models.simulated import SimulatedRespondent
from psychometrics.run.directory import administer
from psychometrics.run.manifest import read_manifest
from psychometrics.run.persona_match import PersonaSetMismatch, check_same_personas, persona_targets
from psychometrics.validity.tables import compute_validity

MODEL = "sim/seed=4,behavior_link=0.8"
SHIPPED = Path(__file__).resolve().parent.parent / "psychometrics" / "data" / "personas" / "trait-shaping.yaml"
IDS = ["baseline", "agreeableness-very-low", "agreeableness-a-bit-low", "agreeableness-a-bit-high",
       "agreeableness-very-high", "extraversion-very-low", "extraversion-very-high"]
TRAITS = ["extraversion", "agreeableness", "conscientiousness", "neuroticism", "openness", "machiavellianism",
          "narcissism", "psychopathy"]


def rotated_copy(path: Path, *, set_id: str = "rotated", change: str = "targets") -> Path:
    """trait-shaping with each persona's target moved to the next trait (``change="targets"``), or with the
    texts of two personas exchanged (``"text"``), under ``set_id``; persona ids unchanged."""
    data = yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))
    data["id"] = set_id
    if change == "targets":
        for persona in data["personas"]:
            persona["targets"] = {TRAITS[(TRAITS.index(t) + 1) % len(TRAITS)]: v for t, v in persona["targets"].items()}
    else:
        first, second = data["personas"][1], data["personas"][2]
        first["text"], second["text"] = second["text"], first["text"]
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def _questionnaire(out: Path, personas: str | None, ids=IDS) -> Path:
    design = Design(personas=personas, persona_ids=list(ids) if personas else None, modes=["probs"])
    administer(SimulatedRespondent(MODEL), [resolve_inventory("mini-ipip")], design, out)
    return out


def _behaviour(out: Path, personas: str | None, ids=IDS) -> Path:
    design = BehaviorDesign(personas=personas, persona_ids=tuple(ids) if personas else None, variants=2)
    behave(SimulatedRespondent(MODEL), resolve_tasks("dictator-game"), design, out)
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("persona-match")
    rotated = rotated_copy(root / "rotated.yaml")
    retexted = rotated_copy(root / "retexted.yaml", set_id="trait-shaping", change="text")
    return {
        "root": root,
        "q": _questionnaire(root / "q", "trait-shaping"),
        "q_fewer": _questionnaire(root / "q-fewer", "trait-shaping", IDS[:5]),
        "b": _behaviour(root / "b", "trait-shaping"),
        "b_rotated": _behaviour(root / "b-rotated", str(rotated)),
        "b_retexted": _behaviour(root / "b-retexted", str(retexted)),
        "b_none": _behaviour(root / "b-none", None),
        "rotated": rotated,
    }


def test_manifests_record_each_respondents_targets_and_text_hash(runs):
    shipped = {p.id: p for p in resolve_persona_set("trait-shaping").personas}
    for key, ids in (("q", IDS), ("b", IDS), ("q_fewer", IDS[:5])):
        ref = read_manifest(runs[key], expect=None).personas
        assert ref is not None and list(ref.targets) == ids and list(ref.texts) == ids
        assert all(ref.targets[i] == shipped[i].targets for i in ids)
        assert ref.content_hash == resolve_persona_set("trait-shaping").content_hash
    rotated = read_manifest(runs["b_rotated"], expect=None).personas
    assert rotated.targets["extraversion-very-high"] == {"agreeableness": 2}
    assert read_manifest(runs["b_none"], expect=None).personas is None


def test_validity_uses_the_recorded_targets_even_when_the_persona_file_is_gone(runs, tmp_path):
    """A user's persona file that moved: the targets come from the manifests, so the manipulation check
    still runs; a run made before targets were recorded falls back to the file and, without it, has none."""
    moved = tmp_path / "mine.yaml"
    shutil.copy(SHIPPED, moved)
    q, b = _questionnaire(tmp_path / "q", str(moved)), _behaviour(tmp_path / "b", str(moved))
    expected = compute_validity([q], [b], n_boot=100)["manipulation_check"]
    moved.unlink()
    tables = compute_validity([q], [b], n_boot=100)
    pd.testing.assert_frame_equal(tables["manipulation_check"], expected)
    assert set(tables["manipulation_check"]["trait"]) == {"agreeableness", "extraversion"}
    frame = persona_targets([read_manifest(q, expect=None)])
    assert set(map(tuple, frame.to_numpy())) == {(p.id, t, v) for p in load_persona_set(SHIPPED).personas
                                                 if p.id in IDS for t, v in p.targets.items()}
    # An older manifest without recorded targets: resolved by name (here the file is gone: no targets)
    for run in (q, b):
        manifest = json.loads((run / "manifest.json").read_text())
        for key in ("targets", "texts"):
            manifest["personas"].pop(key)
        (run / "manifest.json").write_text(json.dumps(manifest))
    assert persona_targets([read_manifest(q, expect=None)]).empty
    without = compute_validity([q], [b], n_boot=100)
    assert without.get("manipulation_check", pd.DataFrame()).empty
    assert "no persona targets" in " | ".join(without["notes"]["note"])
    shutil.copy(SHIPPED, moved)  # back in place: the fallback finds it again
    pd.testing.assert_frame_equal(compute_validity([q], [b], n_boot=100)["manipulation_check"], expected)


def test_same_set_with_different_persona_ids_joins_on_the_shared_personas(runs):
    tables = compute_validity([runs["q_fewer"]], [runs["b"]], n_boot=100)
    assert set(tables["validity_scores"]["persona"]) == set(IDS[:5])


def _refusal(selfreport: list[Path], behavior: list[Path]) -> str:
    with pytest.raises(PersonaSetMismatch) as caught:
        compute_validity(selfreport, behavior, n_boot=100)
    message = str(caught.value)
    assert "\n" not in message and "give runs made with the same persona set" in message
    return message


def test_a_rotated_target_behaviour_run_is_not_joined_with_trait_shaping_self_report(runs):
    """The issue's case: behaviour under a set whose targets were rotated, self-report under trait-shaping."""
    message = _refusal([runs["q"]], [runs["b_rotated"]])
    rotated_hash = load_persona_set(runs["rotated"]).content_hash[:12]
    shaping_hash = resolve_persona_set("trait-shaping").content_hash[:12]
    assert message.startswith(f"--behavior {runs['b_rotated']} used persona set 'rotated' from {runs['rotated']} "
                              f"(hash {rotated_hash}), --selfreport {runs['q']} used persona set 'trait-shaping' "
                              f"(hash {shaping_hash})")
    assert "persona 'agreeableness-a-bit-high' targets {conscientiousness +1} in one and {agreeableness +1}" in message


def test_same_set_id_with_a_changed_text_is_refused_and_the_persona_named(runs):
    message = _refusal([runs["q"]], [runs["b_retexted"]])
    assert "persona set 'trait-shaping' from" in message
    # the copy swapped the texts of extraversion-very-low and -a-bit-low; only the first is a respondent here
    assert "(persona 'extraversion-very-low' has a different text in each)" in message


def test_a_run_without_personas_is_not_joined_with_one_with_personas(runs):
    message = _refusal([runs["q"]], [runs["b_none"]])
    assert f"--behavior {runs['b_none']} used no persona set" in message


def test_several_runs_on_either_side_are_all_checked(runs):
    message = _refusal([runs["q"], runs["q_fewer"]], [runs["b"], runs["b_rotated"]])
    assert message.startswith(f"--behavior {runs['b_rotated']} used persona set 'rotated'")
    # a second self-report run of another set is named as the self-report it is
    rotated_q = _questionnaire(runs["root"] / "q-rotated", str(runs["rotated"]))
    message = _refusal([runs["q"], rotated_q], [runs["b"]])
    assert message.startswith(f"--selfreport {rotated_q} used persona set 'rotated'")


def test_check_same_personas_accepts_runs_of_one_set_and_runs_without_any(runs):
    manifests = [read_manifest(runs[k], expect=None) for k in ("q", "q_fewer", "b")]
    check_same_personas([(str(i), m) for i, m in enumerate(manifests)])
    none = read_manifest(runs["b_none"], expect=None)
    check_same_personas([("a", none), ("b", none)])
    check_same_personas([])


def psytest(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "psychometrics", *map(str, args)], capture_output=True, text=True,
                          timeout=900, env=os.environ.copy())


def test_cli_validity_and_report_refuse_in_one_line_with_exit_2(runs, tmp_path):
    result = psytest("validity", "--selfreport", runs["q"], "--behavior", runs["b_rotated"], "--out", tmp_path / "v")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    said = result.stderr.strip()
    assert len(said.splitlines()) == 1 and "used persona set 'rotated'" in said and "'trait-shaping'" in said
    assert not (tmp_path / "v").exists() or not any((tmp_path / "v").iterdir())
    result = psytest("report", runs["q"], "--behavior", runs["b_rotated"], "--out", tmp_path / "r")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    said = result.stderr.strip()
    assert len(said.splitlines()) == 1 and f"--behavior {runs['b_rotated']} used persona set 'rotated'" in said
    assert f"run {runs['q']} used persona set 'trait-shaping'" in said


STUDY = """\
models: [sim/seed=5]
inventories: [mini-ipip]
design:
  modes: [probs]
personas: trait-shaping
persona_ids: [baseline, agreeableness-very-low, agreeableness-very-high]
tasks: [dictator-game]
behavior: {variants: 2}
"""


def test_study_validity_and_study_report_refuse_runs_of_different_sets(tmp_path):
    """A study runs one persona set, and its runs' identity check refuses a changed one; a study directory
    whose behaviour run was nevertheless made with another set (here: replaced) is refused by the study's
    validity step and by ``psytest report STUDY``, not turned into a footnote."""
    from psychometrics.study.runner import StudyResult, StudyRun, _validity
    from psychometrics.study.spec import load_study

    path = tmp_path / "study.yaml"
    path.write_text(STUDY, encoding="utf-8")
    result = psytest("study", path)
    assert result.returncode == 0, result.stderr[-2000:]
    root = path.with_suffix("")
    behaviour = next(p for p in (root / "runs").iterdir() if p.name.endswith("-behavior"))
    questionnaire = next(p for p in (root / "runs").iterdir() if not p.name.endswith("-behavior"))
    rotated = rotated_copy(tmp_path / "rotated.yaml")
    shutil.rmtree(behaviour)
    design = BehaviorDesign(personas=str(rotated), persona_ids=("baseline", "agreeableness-very-low",
                                                                "agreeableness-very-high"), variants=2)
    behave(SimulatedRespondent("sim/seed=5"), resolve_tasks("dictator-game"), design, behaviour)
    study = load_study(path)
    runs = [StudyRun("sim/seed=5", "x", "questionnaire", questionnaire, done=True),
            StudyRun("sim/seed=5", "x", "behavior", behaviour, done=True)]
    with pytest.raises(PsytestError) as caught:
        _validity(StudyResult(study, runs), runs)
    assert str(caught.value).startswith(f"{path}: --behavior {behaviour} used persona set 'rotated'")
    report = psytest("report", root)
    assert report.returncode == 2 and "Traceback" not in report.stderr
    assert f"behaviour run {behaviour} used persona set 'rotated'" in report.stderr
    assert len(report.stderr.strip().splitlines()) == 1


def test_compare_notes_a_persona_file_whose_content_changed_under_the_same_name(tmp_path):
    """compare does not join on the persona (it compares scale means over cells), so it notes rather than
    refuses; a persona file edited between two runs under the same path was silent before."""
    from psychometrics.analysis.compare import compare_runs

    mine = tmp_path / "mine.yaml"
    shutil.copy(SHIPPED, mine)
    first = _questionnaire(tmp_path / "first", str(mine), IDS[:3])
    same = _questionnaire(tmp_path / "same", str(mine), IDS[:3])
    rotated_copy(mine, set_id="trait-shaping")
    edited = _questionnaire(tmp_path / "edited", str(mine), IDS[:3])
    notes = compare_runs([first, same, edited]).notes
    persona_notes = [n for n in notes if "personas" in n]
    assert len(persona_notes) == 1 and "[edited]" in persona_notes[0]
    assert "personas (the same name, other content)" in persona_notes[0]


@pytest.mark.parametrize("targets, said", [
    ({"baseline": {"extraversion": "high"}}, "'personas.targets.baseline.extraversion' must be a whole number from -4"),
    ({"baseline": {"extraversion": 9}}, "'personas.targets.baseline.extraversion' must be a whole number from -4 to 4"),
    ({"baseline": {"extraversion": True}}, "'personas.targets.baseline.extraversion' must be a whole number"),
    ({"baseline": [1, 2]}, "'personas.targets.baseline' must be an object"),
    ("all", "'personas.targets' must be an object"),
])
def test_a_damaged_targets_record_is_one_line_naming_the_field(runs, tmp_path, targets, said):
    damaged = tmp_path / "q"
    shutil.copytree(runs["q"], damaged)
    manifest = json.loads((damaged / "manifest.json").read_text())
    manifest["personas"]["targets"] = targets
    (damaged / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(PsytestError) as caught:
        compute_validity([damaged], [runs["b"]], n_boot=100)
    message = str(caught.value)
    assert "\n" not in message and said in message and "manifest.json" in message, message
