"""The combined report of a study: the models side by side, verdict first, reproducible.

A sim-only study of three models (very different traits and biases) runs end to end with one command; its
``report/`` has the verdict grid, the profiles, fragility, reliability, the variance decomposition with
model as a factor and the self-report vs behaviour tables; ``psytest compare`` of its runs labels them by
model; ``psytest reproduce STUDY`` passes and fails after a planted edit. The model factor's share follows
planted trait differences, and the decomposition with model as a factor matches R (``aov``, ``lmer``;
``tests/reference/across_models.R``)."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from psychometrics.statistics.design_effects import variance_decomposition
from psychometrics.study.spec import model_slug

PSYTEST = [sys.executable, "-m", "psychometrics"]
REFERENCE = Path(__file__).parent / "reference"
MODELS = ["sim/e=2,seed=1", "sim/e=-2,n=1.5,seed=2", "sim/a=1.5,acquiescence=1,position_first=2,seed=3"]
STUDY = """\
models:
  - sim/e=2,seed=1
  - sim/e=-2,n=1.5,seed=2
  - sim/a=1.5,acquiescence=1,position_first=2,seed=3
inventories: [mini-ipip, sd3]
design:
  option_orders: [original, reversed]
  templates: [numbered, worded]
  modes: [text]
personas: trait-shaping
persona_ids: [baseline, extraversion-very-low, extraversion-very-high, agreeableness-very-low, agreeableness-very-high,
              neuroticism-very-high]
tasks: [dictator-game]
behavior: {variants: 2}
"""


def psytest(*args: object, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*PSYTEST, *map(str, args)], capture_output=True, text=True, timeout=1800,
                          env={**os.environ, **(env or {})})


def study_file(folder: Path, models: list[str], *, tasks: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = STUDY.splitlines()
    head = ["models:", *[f"  - {m}" for m in models]]
    rest = [line for line in lines[lines.index("inventories: [mini-ipip, sd3]"):]
            if tasks or not line.startswith(("tasks:", "behavior:"))]
    path = folder / "study.yaml"
    path.write_text("\n".join(head + rest) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """The study run once with one command: (study directory, --json summary)."""
    path = study_file(tmp_path_factory.mktemp("study"), MODELS)
    done = psytest("study", path, "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    return path.with_suffix(""), json.loads(done.stdout)


def read(root: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(root / "report" / name)


# ---------------------------------------------------------------------------------------------------
# the report


def test_one_command_writes_the_combined_report_as_a_derived_set(study):
    root, summary = study
    assert summary["paths"]["report"] == str(root / "report" / "report.html")
    provenance = json.loads((root / "report" / "provenance.json").read_text(encoding="utf-8"))
    assert provenance["kind"] == "study-report" and provenance["state"] == "complete"
    assert [run["model"] for run in provenance["inputs"]["runs"]] == MODELS
    assert all(run["store"] for run in provenance["inputs"]["runs"] + provenance["inputs"]["behavior_runs"])
    for name in ("verdict.csv", "fragility.csv", "reliability.csv", "model_variance.csv", "models.csv",
                 "validity_pairs.csv", "validity_mixed.csv", "report.html", "summary.json"):
        assert name in provenance["files"], name
    report = json.loads((root / "report" / "summary.json").read_text(encoding="utf-8"))
    assert [m["model"] for m in report["models"]] == MODELS and report["left_out"] == []
    assert sorted(report["files"]) == sorted(provenance["files"])


def test_the_verdict_grid_comes_first_with_every_model_and_scale(study):
    root, _ = study
    verdict = read(root, "verdict.csv")
    scales = {"mini-ipip": ["E", "A", "C", "N", "I"], "sd3": ["M", "N", "P"]}
    assert list(dict.fromkeys(verdict["model"])) == MODELS
    assert len(verdict) == len(MODELS) * 8 and verdict["label"].isin(
        ["interpretable", "fragile", "untested", "not measurable"]).all()
    page = (root / "report" / "report.html").read_text(encoding="utf-8")
    assert page.index('id="verdict"') < page.index('id="profiles"') < page.index('id="fragility"') < page.index(
        'id="reliability"') < page.index('id="model-variance"') < page.index('id="validity"')
    verdict_section = page[page.index('id="verdict"'):page.index('id="profiles"')]
    grids = re.findall(r'<h3>([^<]*)</h3>\s*<div class="scroll"><table class="grid">(.*?)</table>', verdict_section, re.S)
    assert [inventory for inventory, _ in grids] == list(scales)  # one grid per inventory
    for (inventory, grid), (_, part) in zip(grids, verdict.groupby("inventory", sort=False)):
        assert re.findall(r'<th title="([^"]*)">', grid) == scales[inventory]  # the scale id under its name
        assert ("Extraversion" if inventory == "mini-ipip" else "Machiavellianism") in grid
        rows = re.findall(r"<tr><td class=\"model\">(.*?)</td>(.*?)</tr>", grid, re.S)
        assert [name for name, _ in rows] == MODELS
        for (_, cells), (_, of_model) in zip(rows, part.groupby("model", sort=False)):
            shown = re.findall(r'<td class="v-([a-z-]+)" title="[^"]*">([^<]*)</td>', cells)
            assert [(label.replace("-", " "), float(score)) for label, score in shown] == [
                (label, round(score, 2)) for label, score in zip(of_model["label"], of_model["score"])]
    # the planted traits show in the grid's scores: E of e=2 far above E of e=-2
    e = verdict[verdict["scale"] == "E"].set_index("model")["score"]
    assert e[MODELS[0]] - e[MODELS[1]] > 2
    for key in ("profiles", "fragility", "reliability", "model_variance", "validity_forest"):
        assert f'id="figure-{key}"' in page and "could not be drawn" not in page, key


def test_fragility_reliability_and_validity_tables_have_a_row_per_model_and_scale(study):
    root, _ = study
    fragility = read(root, "fragility.csv")
    assert list(dict.fromkeys(fragility["model"])) == MODELS and len(fragility) == 24
    assert (fragility["movement_points"].dropna() >= 0).all() and fragility["method_share"].dropna().between(0, 1 + 1e-9).all()
    # the model that prefers the first displayed option is the one the option order moves; the others answer
    # the statement (at temperature 0 a simulated respondent without position bias is not moved at all)
    by_model = fragility.groupby("model", sort=False)[["movement_points", "method_share"]].max()
    assert by_model.loc[MODELS[2], "movement_points"] > 0.5 and by_model.loc[MODELS[2], "method_share"] > 0.3
    assert by_model.loc[MODELS[0], "movement_points"] == 0 and by_model.loc[MODELS[1], "movement_points"] == 0
    reliability = read(root, "reliability.csv")
    assert list(dict.fromkeys(reliability["model"])) == MODELS
    assert set(reliability["inventory"]) == {"mini-ipip", "sd3"}
    assert (reliability["alpha_median"].dropna() <= 1 + 1e-12).all() and reliability["alpha_median"].notna().any()
    mixed = read(root, "validity_mixed.csv")
    assert (mixed["n_models"] == 3).all() and {"within", "between"} <= set(mixed.columns)
    pairs = read(root, "validity_pairs.csv")
    assert set(MODELS) <= set(pairs["scope"])  # within each model, and pooled


def test_the_model_factor_is_in_the_variance_decomposition(study):
    root, _ = study
    table = read(root, "model_variance.csv")
    for (inventory, scale), part in table.groupby(["inventory", "scale"]):
        assert list(part["source"]) == ["model", "option_order", "template", "persona", "residual"], (inventory, scale)
    e = table[(table["inventory"] == "mini-ipip") & (table["scale"] == "E")].set_index("source")
    assert e.loc["model", "share"] > 0.5 and e.loc["model", "df"] == 2 and bool(e.loc["model", "balanced"])
    assert math.isclose(e["share"].sum(), 1.0) and math.isclose(e["component_share"].sum(), 1.0)
    assert math.isclose(e.loc["model", "component_sd"], math.sqrt(e.loc["model", "variance_component"]))
    assert e.loc["model", "component_sd"] > 1  # e = +2 vs -2 vs 0: the models' E differ by points, not decimals


def test_the_report_command_rebuilds_it_and_refuses_what_a_study_report_is_not(study, tmp_path):
    root, _ = study
    before = (root / "report" / "verdict.csv").read_bytes()
    again = psytest("report", root, "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["kind"] == "psytest-study-report"
    assert (root / "report" / "verdict.csv").read_bytes() == before
    behavior = psytest("report", root, "--behavior", root / "runs" / (model_slug(MODELS[0]) + "-behavior"))
    assert behavior.returncode == 2 and behavior.stderr.startswith("psytest: error: --behavior:")
    assert len(behavior.stderr.strip().splitlines()) == 1
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "mine.txt").write_text("x")
    refused = psytest("report", root, "--out", busy)
    assert refused.returncode == 2 and "mine.txt" in refused.stderr and (busy / "mine.txt").read_text() == "x"


# ---------------------------------------------------------------------------------------------------
# compare of N runs


def test_compare_of_the_study_runs_labels_them_by_model(study):
    root, _ = study
    runs = [root / "runs" / model_slug(m) for m in MODELS]
    data = psytest("compare", *runs, "--json")
    assert data.returncode == 0, data.stderr
    differences = pd.DataFrame(json.loads(data.stdout)["differences"])
    assert set(differences["reference"]) == {MODELS[0]} and list(dict.fromkeys(differences["run"])) == MODELS[1:]
    shown = psytest("compare", *runs, env={"COLUMNS": "80"})
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert shown.stdout.startswith(f"reference: {MODELS[0]}")
    for model in MODELS[1:]:
        assert any(line.startswith(model) for line in lines), model  # a row of the runs x scales matrix
    assert re.search(r"^sim/e=-2,n=1\.5,seed=2\s+-\d\.\d\d\*", shown.stdout, re.M)  # E far below the reference's
    # the same model twice is told apart by its run directory
    twice = psytest("compare", runs[0], runs[1], runs[0], "--json")
    labels = list(dict.fromkeys(pd.DataFrame(json.loads(twice.stdout)["differences"])["run"]))
    assert labels == [MODELS[1], f"{MODELS[0]} [{model_slug(MODELS[0])}] #2"]


# ---------------------------------------------------------------------------------------------------
# reproduce


def test_reproduce_passes_on_the_study_and_fails_after_a_planted_edit(study, tmp_path):
    root, _ = study
    done = psytest("reproduce", root, "--json")
    result = json.loads(done.stdout)
    assert done.returncode == 0 and result["passed"], result["verdict"]
    checked = set(result["files_checked"])
    assert {"report/verdict.csv", "report/model_variance.csv", "report/fragility.csv", "report/reliability.csv",
            "comparison/differences.csv", "validity/validity_pairs.csv"} <= checked
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    path = copy / "report" / "model_variance.csv"
    table = pd.read_csv(path, keep_default_na=False, dtype=str)
    row = table.index[(table["scale"] == "E") & (table["source"] == "model")][0]
    table.loc[row, "share"] = str(float(table.loc[row, "share"]) * 0.9)
    table.to_csv(path, index=False)
    failed = psytest("reproduce", copy, "--json")
    result = json.loads(failed.stdout)
    assert failed.returncode == 1 and not result["passed"]
    problems = {(m["file"], m["problem"]) for m in result["mismatches"]}
    assert ("report/model_variance.csv", "value") in problems
    assert ("report/model_variance.csv", "changed since written") in problems
    value = next(m for m in result["mismatches"] if m["problem"] == "value")
    assert value["column"] == "share" and "scale=E" in value["row_key"] and "source=model" in value["row_key"]
    rerun = psytest("reproduce", root, "--rerun")
    assert rerun.returncode == 2 and "--rerun" in rerun.stderr and len(rerun.stderr.strip().splitlines()) == 1


# ---------------------------------------------------------------------------------------------------
# the model share follows planted differences


def model_share(folder: Path, models: list[str]) -> float:
    """The model's share of mini-ipip E's score variance in a study of ``models`` (no tasks)."""
    done = psytest("study", study_file(folder, models, tasks=False), "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    table = pd.read_csv(folder / "study" / "report" / "model_variance.csv")
    row = table[(table["inventory"] == "mini-ipip") & (table["scale"] == "E") & (table["source"] == "model")]
    return float(row["share"].iloc[0])


def test_the_model_share_is_large_for_different_traits_and_small_for_identical_ones(study, tmp_path):
    root, _ = study
    different = pd.read_csv(root / "report" / "model_variance.csv")
    different = float(different[(different["scale"] == "E") & (different["source"] == "model")
                                & (different["inventory"] == "mini-ipip")]["share"].iloc[0])
    # the same respondent three times (keys that change nothing make the model strings distinct)
    identical = model_share(tmp_path / "same", ["sim/e=0.5,seed=4", "sim/e=0.5,seed=4,latency=0",
                                                 "sim/e=0.5,seed=4,verbose=0"])
    assert different > 0.5 and identical < 0.02, (different, identical)


# ---------------------------------------------------------------------------------------------------
# against R


def _golden() -> dict:
    return json.loads((REFERENCE / "golden" / "across_models.json").read_text(encoding="utf-8"))


def _reference_scores() -> pd.DataFrame:
    return pd.read_csv(REFERENCE / "data" / "across-models-scores.csv", keep_default_na=False)


def _drop_unbalanced(scores: pd.DataFrame) -> pd.DataFrame:
    """The rows across_models.R removes for its unbalanced comparison."""
    drop = ((scores["model"] == "local/qwen2.5-0.5b") & (scores["template"] == "worded")) | (
        (scores["persona"] == "p2") & (scores["option_order"] == "reversed"))
    return scores[~drop]


@pytest.mark.parametrize("variant", ["balanced", "unbalanced"])
def test_the_model_factor_decomposition_matches_aov(variant):
    scores = _reference_scores()
    data = scores if variant == "balanced" else _drop_unbalanced(scores)
    result = variance_decomposition(data, ["option_order", "template", "persona"], extra_factors=["model"])
    result = result.set_index(["scale", "source"])
    reference = _golden()["aov"][variant]
    assert len(reference) == len(result) == 10
    for row in reference:
        ours = result.loc[(row["scale"], row["source"])]
        what = f"{variant} {row['scale']} {row['source']}"
        assert ours["df"] == row["df"], what
        assert np.isclose(ours["sum_sq"], row["sum_sq"], rtol=1e-8, atol=1e-12), what
        assert np.isclose(ours["mean_sq"], row["mean_sq"], rtol=1e-8, atol=1e-12), what
        if row["source"] != "residual":
            assert np.isclose(ours["statistic"], row["F"], rtol=1e-8), what
            assert np.isclose(ours["p_value"], row["p"], rtol=1e-7, atol=1e-15), what
        assert bool(ours["balanced"]) == (variant == "balanced")


def test_the_model_factor_components_match_lmer():
    scores = _reference_scores()
    compared = 0
    for block in _golden()["lmer"]:
        factors = [block["factors"]] if isinstance(block["factors"], str) else list(block["factors"])
        result = variance_decomposition(scores, [f for f in factors if f != "model"], extra_factors=["model"])
        result = result.set_index(["scale", "source"])
        for row in block["rows"]:
            ours = result.loc[row["scale"]]
            truncated = "truncated at zero" in ours["note"].iloc[0]
            if row["boundary"] or truncated:  # REML and the ANOVA method differ at the boundary (documented)
                continue
            for source, value in row["components"].items():
                assert np.isclose(ours.loc[source, "variance_component"], value, rtol=1e-4, atol=1e-7), (
                    factors, row["scale"], source)
                compared += 1
    assert compared >= 8


def test_extra_factors_are_refused_when_they_are_design_factors_or_absent():
    scores = _reference_scores()
    with pytest.raises(ValueError, match="design factor"):
        variance_decomposition(scores, extra_factors=["persona"])
    with pytest.raises(ValueError, match="no 'vendor' column"):
        variance_decomposition(scores, extra_factors=["vendor"])


# ---------------------------------------------------------------------------------------------------
# hostile model text and twenty models


def test_model_text_is_escaped_in_the_page_and_inert_in_figures(study):
    from psychometrics.report.study_figures import plot_labels, profiles
    from psychometrics.report.study_report import render_study_page

    root, _ = study
    hostile = {MODELS[0]: "<script>alert(1)</script>", MODELS[1]: "$\\frac{a}{b}$ \x1b[31m red",
               MODELS[2]: "=HYPERLINK(\"http://x\")"}
    tables = {name[:-4]: pd.read_csv(root / "report" / name) for name in
              ("verdict.csv", "fragility.csv", "reliability.csv", "model_variance.csv", "models.csv")}
    for table in tables.values():
        if "model" in table.columns:
            table["model"] = table["model"].map(lambda m: hostile.get(m, m))
    page, _ = render_study_page(root, tables, {"models": [{"model": m} for m in hostile.values()]}, dpi=40)
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "\x1b" not in plot_labels(list(hostile.values()))[hostile[MODELS[1]]]
    assert plot_labels(list(hostile.values()))[hostile[MODELS[1]]].startswith("\\$\\frac")
    assert "could not be drawn" not in page
    from psychometrics.report.figures import png_bytes

    assert png_bytes(profiles(tables), dpi=30)[:4] == b"\x89PNG"


def test_figures_grow_with_the_number_of_models_and_keep_names_apart():
    from psychometrics.report import study_figures as figs

    models = [f"sim/e={i / 10:.1f},a=-1,n=1,noise=0.3,acquiescence=1,seed={i}" for i in range(20)]
    rows = [{"model": m, "inventory": "mini-ipip", "mode": "text", "scale": s, "score": 3.0, "ci_low": 2.5,
             "ci_high": 3.5, "scale_min": 1, "scale_max": 5, "norm_mean": 3.2, "norm_sd": 0.7, "label": "fragile",
             "movement_points": 0.3, "alpha_median": 0.8} for m in models for s in "EACNI"]
    frame = pd.DataFrame(rows)
    labels = figs.plot_labels(models)
    assert len(set(labels.values())) == 20 and max(len(v) for v in labels.values()) <= figs.LABEL_CHARS + 3
    heights = {}
    for n in (3, 20):
        part = {"verdict": frame[frame["model"].isin(models[:n])], "fragility": frame[frame["model"].isin(models[:n])]}
        heights[n] = (figs.profiles(part).theme.themeables["figure_size"].properties["value"][1],
                      figs.fragility_map(part).theme.themeables["figure_size"].properties["value"][1])
    for small, large in zip(heights[3], heights[20]):
        assert large - small >= 17 * figs.ROW_INCHES * 0.99  # a fixed height per model row, so rows stay legible
        assert large < 30


@pytest.mark.parametrize("edit, needle", [
    (lambda d: d["runs"][0].update(run_dir="../../outside"), "is outside the study directory"),
    (lambda d: d["runs"][0].update(run_dir="."), "is outside the study directory"),
    (lambda d: d.update(runs=[1]), "an entry is not a run record"),
    (lambda d: d.update(kind="something-else"), "not a psytest study manifest"),
    (lambda d: [r.update(status="pending") for r in d["runs"]], "no complete questionnaire run"),
    (lambda d: d["runs"][0].update(run_dir="runs/nothing"), "no such run directory"),
])
@pytest.mark.parametrize("command", ["report", "reproduce"])
def test_a_damaged_study_manifest_is_one_line(study, tmp_path, capsys, edit, needle, command):
    from psychometrics.testing.cli import cli, one_line_error

    root, _ = study
    copy = tmp_path / "copy"
    shutil.copytree(root, copy, ignore=shutil.ignore_patterns("*-behavior"))
    manifest = json.loads((copy / "study.json").read_text(encoding="utf-8"))
    edit(manifest)
    (copy / "study.json").write_text(json.dumps(manifest), encoding="utf-8")
    before = {p: p.read_bytes() for p in (copy / "report").iterdir()}
    code, _, err = cli(capsys, command, copy)
    one_line_error(code, err, needle)
    assert {p: p.read_bytes() for p in (copy / "report").iterdir()} == before  # nothing written
