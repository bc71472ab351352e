"""``psytest study``: several models through one design with one command, into one study directory.

Three simulated respondents with different traits and biases take two inventories under two personas
(and one behaviour task); every run is read back through ``open_run``, a second run sends nothing, the
comparison and validity outputs name every model, and bad study files are one line and exit 2."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from psychometrics.run.owner import open_run
from psychometrics.study.spec import check_slugs, model_slug

PSYTEST = [sys.executable, "-m", "psychometrics"]
MODELS = ["sim/e=1,seed=1", "sim/e=-1,seed=2", "sim/a=1,acquiescence=1,seed=3"]
STUDY = """\
models:
  - sim/e=1,seed=1
  - sim/e=-1,seed=2
  - sim/a=1,acquiescence=1,seed=3
inventories: [mini-ipip, sd3]
design:
  modes: [text]
personas: trait-shaping
persona_ids: [baseline, agreeableness-very-high]
tasks: [dictator-game]
behavior: {variants: 2}
"""


def psytest(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*PSYTEST, *map(str, args)], capture_output=True, text=True, timeout=900,
                          env={**os.environ, **(env or {})})


def write_study(folder: Path, text: str, name: str = "study.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """The study run once with one command; returns (study file, study directory, --json summary)."""
    path = write_study(tmp_path_factory.mktemp("study"), STUDY)
    result = psytest("study", path, "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    return path, path.with_suffix(""), json.loads(result.stdout)


def test_one_command_runs_every_model_into_one_study_directory(study):
    path, root, summary = study
    assert summary["failed_models"] == [] and Path(summary["study_dir"]) == root
    runs = {(run["model"], run["kind"]): run for run in summary["runs"]}
    assert set(runs) == {(m, k) for m in MODELS for k in ("questionnaire", "behavior")}
    means = {}
    for model in MODELS:
        questionnaire = open_run(root / "runs" / model_slug(model))
        assert questionnaire.questionnaire.model == model
        scores = questionnaire.scores()
        assert set(scores["inventory"]) == {"mini-ipip", "sd3"} and set(scores["persona"]) == {
            "baseline", "agreeableness-very-high"}
        means[model] = scores[scores["scale"] == "E"]["score"].mean()
        open_run(root / "runs" / (model_slug(model) + "-behavior"), expect="behavior")
        assert runs[(model, "questionnaire")]["sent"] == runs[(model, "questionnaire")]["planned"] > 0
    # The traits the model strings set are what the runs measure: E of e=1 above E of e=-1.
    assert means["sim/e=1,seed=1"] > means["sim/e=-1,seed=2"] + 0.5


def test_the_manifest_records_the_study_file_and_every_run(study):
    path, root, _ = study
    manifest = json.loads((root / "study.json").read_text(encoding="utf-8"))
    assert manifest["kind"] == "psytest-study" and manifest["state"] == "complete"
    assert manifest["study_text"] == path.read_text(encoding="utf-8")
    assert manifest["study_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert [m["model"] for m in manifest["models"]] == MODELS
    assert {run["run_dir"] for run in manifest["runs"]} == {
        f"runs/{model_slug(m)}{suffix}" for m in MODELS for suffix in ("", "-behavior")}
    assert all(run["status"] == "complete" for run in manifest["runs"])
    assert manifest["comparison"] == "comparison" and manifest["validity"] == "validity"
    assert manifest["report"] == "report" and (root / "report" / "report.html").is_file()


def test_compare_and_validity_cover_all_models(study):
    _, root, _ = study
    statistics = pd.read_csv(root / "comparison" / "statistics.csv")
    assert list(dict.fromkeys(statistics["run"])) == MODELS  # labelled by model, in study order
    page = (root / "comparison" / "compare.html").read_text(encoding="utf-8")
    assert all(m in page and model_slug(m) in page for m in MODELS)  # the label and its run directory
    validity = json.loads((root / "validity" / "validity.json").read_text(encoding="utf-8"))
    assert validity and (root / "validity" / "validity.html").is_file()
    scores = pd.read_csv(root / "validity" / "validity_scores.csv")
    for kind in ("self-report", "behavior"):
        assert set(scores[scores["kind"] == kind]["model"]) == set(MODELS), kind


def test_running_the_study_again_sends_nothing(study):
    path, _, _ = study
    again = psytest("study", path, "--json")
    assert again.returncode == 0, again.stderr[-2000:]
    runs = json.loads(again.stdout)["runs"]
    assert len(runs) == 6 and all(run["sent"] == 0 and run["already_answered"] == run["planned"] > 0 for run in runs)


def test_dry_run_prints_each_models_plan_and_the_total(study, tmp_path):
    path, _, _ = study
    fresh = write_study(tmp_path, path.read_text(encoding="utf-8"))
    plan = psytest("study", fresh, "--dry-run", "--json")
    assert plan.returncode == 0, plan.stderr
    data = json.loads(plan.stdout)
    questionnaires = [run for run in data["runs"] if run["kind"] == "questionnaire"]
    # mini-ipip (20 items) + sd3 (27 items), 2 personas, one cell each
    assert [run["plan"]["requests_planned"] for run in questionnaires] == [94, 94, 94]
    assert data["requests_planned"] == 282 and data["to_send"] == 282 + data["conversations_planned"]
    assert not (tmp_path / "study").exists()  # nothing written
    text = psytest("study", fresh, "--dry-run")
    assert text.returncode == 0 and "282 requests" in text.stdout and all(m in text.stdout for m in MODELS)
    # against the finished study: everything is already answered
    done = json.loads(psytest("study", path, "--dry-run", "--json").stdout)
    assert done["to_send"] == 0 and done["already_answered"] == 282 + done["conversations_planned"]


def test_an_edited_study_that_changes_a_run_is_refused_by_its_identity_check(tmp_path):
    path = write_study(tmp_path, "models:\n  - sim/e=1,seed=1\ninventories: [mini-ipip]\n")
    assert psytest("study", path).returncode == 0
    path.write_text("models:\n  - sim/e=1,seed=1\ninventories: [mini-ipip]\ndesign: {temperature: 0.7}\n",
                    encoding="utf-8")
    refused = psytest("study", path)
    lines = refused.stderr.strip().splitlines()
    # the run's own header, then its identity check's one line
    assert refused.returncode == 2 and lines[:-1] == ["sim/e=1,seed=1: questionnaire"], refused.stderr
    assert lines[-1].startswith(f"psytest: error: {path}: models: sim/e=1,seed=1 (questionnaire): --out ")
    assert ("runs/sim-e-1-seed-1: this directory holds a run with temperature 0, which this command does not give"
            in lines[-1])
    # a study whose design adds levels grows its runs instead: only the new cells are sent
    path.write_text("models:\n  - sim/e=1,seed=1\ninventories: [mini-ipip]\ndesign: {temperature: [0, 0.7]}\n",
                    encoding="utf-8")
    assert psytest("study", path).returncode == 0
    from psychometrics.run.manifest import read_manifest

    extension, = read_manifest(tmp_path / "study" / "runs" / "sim-e-1-seed-1").extensions
    assert extension.requests_before == 20 and extension.requests_added == 20


@pytest.mark.parametrize(("text", "expected"), [
    ("models: [sim/e=1]\ninventories: [mini-ipip]\ninventory: [sd3]\n", "unknown key 'inventory'"),
    ("models:\n  - sim/e=1\n  - sim/e=1\ninventories: [mini-ipip]\n", "'sim/e=1' is given twice"),
    ("models:\n  - sim/e=1\n  - SIM/E=1\ninventories: [mini-ipip]\n", "would share the run directory"),
    ("models:\n  - sim/e=1\n  - sim/e=1-behavior\ninventories: [mini-ipip]\n", "would share the run directory"),
    ("models: [sim/e=1]\ninventories: [mini-ipip, no-such-inventory]\n", "inventories: unknown inventory"),
    ("models: [sim/e=1]\ninventories: [mini-ipip]\ndesign: {orders: [reversed]}\n", "unknown design option 'orders'"),
    ("models: [sim/e=1]\ninventories: [mini-ipip]\ntasks: [dictator-game]\nbehavior: {variant: 2}\n",
     "unknown key 'behavior.variant'"),
    ("models: [sim/extroversion=1]\ninventories: [mini-ipip]\n", "models: sim/extroversion=1"),
    ("models: []\ninventories: [mini-ipip]\n", "models"),
    ("inventories: [mini-ipip]\n", "'models' is missing"),
    ("- sim/e=1\n", "must be a mapping"),
    ("models: [sim/e=1]\ninventories: [mini-ipip]\nout: \"a\\0b\"\n", "out: a path cannot hold a NUL"),
    ("models: [sim/e=1]\ninventories: [mini-ipip]\ntasks: []\n", "tasks: List should have at least 1 item"),
    ("models: [sim/e=1]\ninventories: [mini-ipip]\ntasks: no-such-task\n", "tasks: "),
    ("models: [sim/e=1,seed=1]\ninventories: [mini-ipip]\n", "'seed=1' is not a model; a list in brackets splits "
     "'sim/e=1' at its commas"),
    ("models: [sim/e=1]\ninventories: [mini-ipip]\npersona_ids: [baseline]\n", "persona_ids needs personas"),
])
def test_a_bad_study_file_is_one_line_and_exit_2(tmp_path, text, expected):
    path = write_study(tmp_path, text)
    result = psytest("study", path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0] and str(path) in lines[0], lines
    assert not path.with_suffix("").exists()  # refused before anything was written


def test_a_folder_of_other_files_is_not_used_as_the_study_directory(tmp_path):
    path = write_study(tmp_path, "models: [sim/e=1]\ninventories: [mini-ipip]\n")
    (tmp_path / "study").mkdir()
    (tmp_path / "study" / "notes.txt").write_text("mine", encoding="utf-8")
    result = psytest("study", path)
    assert result.returncode == 2 and "holds files psytest did not write (notes.txt)" in result.stderr
    assert sorted(p.name for p in (tmp_path / "study").iterdir()) == ["notes.txt"]


def test_a_model_whose_requests_fail_does_not_stop_the_others(tmp_path):
    path = write_study(tmp_path, "models:\n  - sim/e=1,seed=1\n  - openai/nothing-listens-here\n  - sim/e=-1,seed=2\n"
                                 "inventories: [mini-ipip]\n")
    # An OpenAI endpoint on a port nothing listens on: every request of that model fails at once.
    result = psytest("study", path, "--max-retries", "0", "--timeout", "30", "--json",
                     env={"OPENAI_API_KEY": "none", "OPENAI_API_BASE": "http://127.0.0.1:9/v1"})
    assert result.returncode == 1, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1].startswith(
        "psytest: requests failed for 1 model(s): openai/nothing-listens-here;")
    summary = json.loads(result.stdout)
    status = {run["model"]: run["status"] for run in summary["runs"]}
    assert status == {"sim/e=1,seed=1": "complete", "openai/nothing-listens-here": "failed",
                      "sim/e=-1,seed=2": "complete"}
    statistics = pd.read_csv(tmp_path / "study" / "comparison" / "statistics.csv")
    assert set(statistics["run"]) == {"sim/e=1,seed=1", "sim/e=-1,seed=2"}  # labelled by model
    assert any("left out of the comparison" in note for note in summary["notes"])
    # the combined report has the complete models and names the one left out
    report = json.loads((tmp_path / "study" / "report" / "summary.json").read_text(encoding="utf-8"))
    assert [m["model"] for m in report["models"]] == ["sim/e=1,seed=1", "sim/e=-1,seed=2"]
    assert report["left_out"] == ["openai/nothing-listens-here (questionnaire): failed"]


@pytest.mark.parametrize("model", ["sim/e=1,seed=1", "gguf:/models/../../etc/passwd", "../../x", ".hidden", "con",
                                   "a" * 500, "///", "openai/gpt-4o-mini", "モデル", "a\x00b\nc"])
def test_model_slugs_are_safe_file_names(model):
    slug = model_slug(model)
    assert slug and len(slug) <= 100 and not slug.startswith((".", "-"))
    assert set(slug) <= set("abcdefghijklmnopqrstuvwxyz0123456789._-") and ".." not in slug.split("-")
    assert slug.split(".")[0] not in ("con", "nul", "prn", "aux")


def test_distinct_long_models_get_distinct_slugs():
    first, second = "openai/" + "x" * 200 + "1", "openai/" + "x" * 200 + "2"
    assert model_slug(first) != model_slug(second)
    assert set(check_slugs([first, second], "s.yaml").values()) == {model_slug(first), model_slug(second)}


def test_the_readme_states_the_example_studys_size():
    """examples/study.yaml's plan, counted without loading its local models, is what the README says."""
    from psychometrics.behavior.task import resolve_tasks
    from psychometrics.design.personas import resolve_persona_set
    from psychometrics.design.plan import count_requests, design_from_mapping
    from psychometrics.inventories.library import resolve_inventory
    from psychometrics.study.spec import load_study

    root = Path(__file__).resolve().parent.parent
    example = load_study(root / "examples" / "study.yaml")
    design = design_from_mapping(example.design(), "example")
    personas = resolve_persona_set(design.personas or "")
    chosen = personas.select(design.persona_ids)
    per_model = count_requests([resolve_inventory(name) for name in example.spec.inventories], design, personas)
    variants = example.spec.behavior.variants if example.spec.behavior else None
    conversations = sum(min(variants or len(t.variants), len(t.variants)) for t in resolve_tasks(example.tasks or ""))
    models = len(example.spec.models)
    requests, conversations = models * per_model, models * conversations * len(chosen)
    assert models == 5 and example.out == root / "examples" / "study"
    readme = (root / "README.md").read_text(encoding="utf-8")
    assert f"plans\n{requests:,} requests and {conversations} conversations" in readme
    assert f"study.yaml               # 5 models, 2 inventories, personas, a task: {requests:,} requests + " \
           f"{conversations} conversations" in readme


def test_a_study_directory_left_by_a_manifest_write_cut_short_is_still_the_studys(tmp_path):
    path = write_study(tmp_path, "models:\n  - sim/e=1,seed=1\ninventories: [mini-ipip]\n")
    (tmp_path / "study").mkdir()
    (tmp_path / "study" / ".study.json.4242.0123abcd.tmp").write_text("{", encoding="utf-8")
    result = psytest("study", path)
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "study" / "study.json").read_text(encoding="utf-8"))["state"] == "complete"


def test_a_damaged_study_manifest_is_one_line(tmp_path):
    path = write_study(tmp_path, "models:\n  - sim/e=1,seed=1\ninventories: [mini-ipip]\n")
    (tmp_path / "study").mkdir()
    (tmp_path / "study" / "study.json").write_text('{"kind": "something else"}', encoding="utf-8")
    result = psytest("study", path)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "study.json is not a psytest study's" in result.stderr
