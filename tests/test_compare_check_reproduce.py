"""Run comparisons, baselines and drift checks, and reproduction of a run (simulated respondents only)."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import sqlite3
from contextlib import closing
from pathlib import Path

import pandas as pd
import pytest

from psychometrics.analysis.tables import analyze_run, write_tables
from psychometrics.analysis.baseline import DEFAULT_TOLERANCE, check_run, load_baseline, make_baseline, write_baseline
from psychometrics.analysis.compare import compare_runs
from psychometrics.design.plan import Design
from psychometrics.errors import PsytestError
from psychometrics.inventories.library import resolve_inventory
from psychometrics.models.simulated import SimulatedRespondent
from psychometrics.analysis.reproduce import compare_csv, reproduce
from psychometrics.run.directory import administer

SIM = "sim/seed=3,persona_spread=1,noise=0.3"
SCALES = ("E", "A", "C", "N", "I")


def _administer(model: str, out: Path, seed: int, **design) -> Path:
    """Mini-IPIP answered by 40 simulated people (neutral biographies), two samples each, temperature 1."""
    options = dict(personas="neutral-biographies", samples=2, temperature=1.0, seed=seed)
    options.update(design)
    administer(SimulatedRespondent(model), [resolve_inventory("mini-ipip")], Design(**options), out, concurrency=1)
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    reference = _administer(SIM, root / "reference", seed=1)
    write_tables(analyze_run(reference), reference / "analysis")
    return {
        "reference": reference,
        "same_model": _administer(SIM, root / "same-model", seed=2),  # same respondent, other draws
        "extraverted": _administer(SIM + ",e=1.5", root / "extraverted", seed=3),  # extraversion shifted by 1.5 SD
    }


def _copy(run: Path, to: Path, analysis: bool = True) -> Path:
    shutil.copytree(run, to, ignore=None if analysis else shutil.ignore_patterns("analysis"))
    return to


def _edit_manifest(run: Path, **changes) -> None:
    path = run / "manifest.json"
    manifest = json.loads(path.read_text())
    for key, value in changes.items():
        if key == "design":
            manifest["design"].update(value)
        else:
            manifest[key] = value
    path.write_text(json.dumps(manifest))


def _tree_fingerprint(run: Path) -> dict:
    return {str(p.relative_to(run)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(run.rglob("*"))
            if p.is_file()}


# ---------------------------------------------------------------------------------------------------
# compare


def test_compare_detects_a_trait_difference_beyond_noise(runs):
    result = compare_runs([runs["reference"], runs["extraverted"]])
    rows = result.differences.set_index("scale")
    assert set(rows.index) == set(SCALES) and (rows["noise_method"] == "samples").all()
    e = rows.loc["E"]
    assert e["exceeds_noise"] and e["diff"] > 0.3 and e["diff_ci_low"] > 0 and e["g_ci_low"] > 0
    assert abs(e["diff"]) > 2 * e["noise_se"] and e["diff_over_noise_se"] > 2
    assert rows.drop(index="E")["exceeds_noise"].sum() <= 1
    assert result.verdict.startswith(f"{result.n_exceeding} of 5 scale differences exceed run-to-run noise")
    summary = result.summary()
    assert result.runs == [SIM, SIM + ",e=1.5"]  # labelled by model: each model once, no directory needed
    assert "YES" in summary and str(runs["extraverted"]) in summary and result.verdict in summary


def test_compare_same_model_with_other_seeds_stays_within_noise(runs):
    result = compare_runs([runs["reference"], runs["same_model"], runs["reference"]])
    # one model three times: told apart by the run directory's name, the directory given twice by #2
    assert result.runs == [f"{SIM} [reference]", f"{SIM} [same-model]", f"{SIM} [reference] #2"]
    assert result.directories == [str(runs["reference"]), str(runs["same_model"]), str(runs["reference"])]
    same = result.differences[result.differences["run"] == f"{SIM} [same-model]"]
    assert len(same) == 5 and same["exceeds_noise"].sum() <= 1
    itself = result.differences[result.differences["run"] == f"{SIM} [reference] #2"]
    assert (itself["diff"] == 0).all() and not itself["exceeds_noise"].any()
    assert list(dict.fromkeys(result.statistics["run"])) == result.runs


def test_compare_refuses_bad_input(runs, tmp_path):
    with pytest.raises(PsytestError, match="at least two run directories"):
        compare_runs([runs["reference"]])
    with pytest.raises(PsytestError, match="no such run directory"):
        compare_runs([runs["reference"], tmp_path / "nowhere"])
    edited = _copy(runs["same_model"], tmp_path / "edited")
    _edit_manifest(edited, inventories=[{"id": "mini-ipip", "content_hash": "0" * 64}])
    with pytest.raises(PsytestError, match="inventory 'mini-ipip' differs .* same inventory version") as error:
        compare_runs([runs["reference"], edited])
    assert "\n" not in str(error.value)


def test_compare_with_one_sample_per_cell_uses_the_spread_over_cells(tmp_path):
    design = dict(personas=None, samples=1, option_orders=["original", "reversed"], templates=["numbered", "lettered"])
    a = _administer("sim/seed=1,noise=0.5", tmp_path / "a", seed=1, **design)
    b = _administer("sim/seed=1,noise=0.5", tmp_path / "b", seed=2, **design)
    result = compare_runs([a, b])
    assert (result.differences["noise_method"] == "cells").all()
    assert any("one sample per cell" in note for note in result.notes)


# ---------------------------------------------------------------------------------------------------
# baseline and check


def test_baseline_then_check_passes_on_a_rerun_of_the_same_model(runs, tmp_path):
    path = tmp_path / "baseline.json"
    written = write_baseline(runs["reference"], path)
    baseline = load_baseline(path)
    assert baseline == json.loads(json.dumps(written)) == make_baseline(runs["reference"])
    assert baseline["model"] == SIM and set(baseline["inventories"]) == {"mini-ipip"}
    assert baseline["design_cells"] == [{"inventory": "mini-ipip", "mode": "text", "cells": 80}]
    entry = baseline["scales"][0]
    assert entry["n"] == 80 and entry["sd"] > 0 and 0 < entry["noise_sd"] and entry["noise_method"] == "samples"
    assert entry["noise_se"] == pytest.approx(entry["noise_sd"] / math.sqrt(80)) and entry["spread"]
    assert baseline["warnings"] == [] and baseline["psytest_baseline"] == 2
    # A noise-only re-run (same simulated respondent, other sampling seeds) passes.
    result = check_run(runs["same_model"], baseline)
    assert result.passed and result.tolerance == DEFAULT_TOLERANCE == 3 and result.unit == "sd"
    assert result.verdict.startswith("PASS: all 5 scales within 3 SD of run-to-run noise")
    rows = result.rows
    expected_se = (rows["baseline_noise_sd"] ** 2 / rows["n_baseline"] + rows["current_noise_sd"] ** 2
                   / rows["n_current"]) ** 0.5
    assert (rows["noise_se"] - expected_se).abs().max() < 1e-12
    assert ((rows["difference_sd"] - rows["difference"] / rows["noise_se"]).abs() < 1e-12).all()
    assert ((rows["allowed"] - 3 * rows["noise_se"]).abs() < 1e-12).all()
    assert (rows["difference_sd"].abs() < 3).all() and (rows["noise_se"] > 0).all()
    assert any("fails by chance with probability" in note for note in result.notes)


def test_check_fails_when_scores_are_shifted(runs, tmp_path):
    baseline = make_baseline(runs["reference"])
    failed = check_run(runs["extraverted"], baseline)
    assert not failed.passed and list(failed.failures["scale"]) == ["E"]
    assert failed.verdict.startswith("FAIL: 1 of 5 scales") and "mini-ipip/text/E" in failed.verdict
    assert any("model differs" in note for note in failed.notes)

    # The same model's answers, with every extraversion answer moved one point toward "more extraverted"
    # (within the scale: a value outside 1..5 would be set missing, not scored).
    shifted = _copy(runs["same_model"], tmp_path / "shifted")
    inventory = resolve_inventory("mini-ipip")
    scale_e = next(s for s in inventory.scales if s.id == "E")
    reversed_items = {i.id for i in inventory.items if i.reverse_keyed}
    with closing(sqlite3.connect(shifted / "responses.sqlite")) as conn, conn:
        for item in scale_e.items:
            step = -1 if item in reversed_items else 1
            conn.execute("UPDATE responses SET value = min(5, max(1, value + ?)) WHERE item_id = ? AND value IS NOT NULL",
                         (step, item))
    conn.close()
    result = check_run(shifted, baseline)
    assert not result.passed
    rows = result.rows.set_index("scale")
    assert not rows.loc["E", "within"] and rows.loc["E", "difference"] > 0.5 and rows.loc["E", "difference_sd"] > 0.5
    assert rows.drop(index="E")["within"].all()
    assert check_run(shifted, baseline, tolerance=2.0, unit="raw").passed  # a point is within 2 raw points


def test_check_fails_on_what_the_run_lacks_and_rejects_bad_options(runs, tmp_path):
    baseline = make_baseline(runs["reference"])
    template = dict(baseline["scales"][0])
    baseline["scales"] += [{**template, "mode": "probs"}, {**template, "inventory": "bfi-44", "scale": "E"}]
    baseline["inventories"]["bfi-44"] = "f" * 64
    result = check_run(runs["same_model"], baseline)
    reasons = list(result.failures["reason"])
    assert not result.passed and len(reasons) == 2
    assert "no probs-mode answers for mini-ipip" in reasons[0] and "bfi-44 was not administered" in reasons[1]
    assert "2 of 7 scales" in result.verdict

    changed = make_baseline(runs["reference"])
    changed["inventories"]["mini-ipip"] = "0" * 64
    assert check_run(runs["same_model"], changed).failures["reason"].str.contains("differs from the baseline").all()

    zero = make_baseline(runs["reference"])
    zero["scales"] = [{**zero["scales"][0], "sd": 0.0, "noise_sd": 0.0}]
    with pytest.raises(PsytestError, match="no run-to-run spread for mini-ipip/text/E.*--unit raw") as refused:
        check_run(runs["same_model"], zero)
    assert "\n" not in str(refused.value)
    assert check_run(runs["same_model"], zero, tolerance=1.0, unit="raw").passed

    with pytest.raises(PsytestError, match="--tolerance"):
        check_run(runs["same_model"], baseline, tolerance=-1)
    with pytest.raises(PsytestError, match="--unit"):
        check_run(runs["same_model"], baseline, unit="percent")
    with pytest.raises(PsytestError, match="not a psytest baseline"):
        check_run(runs["same_model"], {"scales": []})
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(PsytestError, match="not valid JSON"):
        load_baseline(tmp_path / "bad.json")


# ---------------------------------------------------------------------------------------------------
# reproduce


def test_reproduce_passes_on_an_untouched_run_and_writes_nothing(runs):
    before = _tree_fingerprint(runs["reference"])
    result = reproduce(runs["reference"], rerun=True)
    assert result.passed, result.summary()
    assert "analysis/scores.csv" in result.files_checked and len(result.files_checked) >= 10
    assert result.rerun.requests_checked == 1600 and result.rerun.items_checked == 1600
    assert result.verdict.startswith("REPRODUCED")
    assert _tree_fingerprint(runs["reference"]) == before


def test_reproduce_detects_a_tampered_analysis_table(runs, tmp_path):
    run = _copy(runs["reference"], tmp_path / "run")
    summary_csv = run / "analysis" / "score_summary.csv"
    table = pd.read_csv(summary_csv)
    original = table.loc[2, "mean"]
    table.loc[2, "mean"] = original + 1e-6
    table.to_csv(summary_csv, index=False)
    (run / "analysis" / "retest.csv").unlink()
    (run / "report").mkdir()
    shutil.copy(run / "analysis" / "reliability.csv", run / "report" / "reliability.csv")
    (run / "report" / "figure-data.csv").write_text("a,b\n1,2\n")

    result = reproduce(run)
    assert not result.passed and result.rerun is None
    problems = result.mismatches.set_index("problem")
    value = problems.loc["value"]
    assert (value["file"], value["column"], value["row"]) == ("analysis/score_summary.csv", "mean", 2)
    assert "scale=C" in value["row_key"] and float(value["recomputed"]) == pytest.approx(original)
    assert problems.loc["missing file", "file"] == "analysis/retest.csv"
    assert result.n_mismatches == 2 and "report/reliability.csv" in result.files_checked
    assert result.unverified == ["report/figure-data.csv"]
    assert result.verdict.startswith("NOT REPRODUCED: 2 table mismatches in 2 files")


def test_reproduce_rerun_detects_a_tampered_reply_and_value(runs, tmp_path):
    run = _copy(runs["reference"], tmp_path / "run", analysis=False)
    with closing(sqlite3.connect(run / "responses.sqlite")) as conn, conn:
        reply_row, reply = conn.execute("SELECT rowid, raw_reply FROM responses WHERE rowid = 10").fetchone()
        conn.execute("UPDATE responses SET raw_reply = ? WHERE rowid = 10", ("5" if reply != "5" else "1",))
        conn.execute("UPDATE responses SET value = value + 0.5 WHERE rowid = 20")
    conn.close()
    with pytest.raises(PsytestError, match="no analysis/.*--rerun"):
        reproduce(run)
    result = reproduce(run, rerun=True)
    assert not result.passed and result.files_checked == []
    found = result.rerun.mismatches.set_index("field")
    assert found.loc["raw_reply", "rowid"] == reply_row and found.loc["raw_reply", "replayed"] == reply
    assert found.loc["value", "rowid"] == 20
    assert result.rerun.n_mismatches == 2 and "2 answer fields differ" in result.verdict


def test_rerun_refuses_non_deterministic_models(runs, tmp_path):
    remote = _copy(runs["reference"], tmp_path / "remote")
    _edit_manifest(remote, model="openai/gpt-4o-mini", backend_params={"backend": "litellm"})
    with pytest.raises(PsytestError, match="openai/gpt-4o-mini is a remote model") as error:
        reproduce(remote, rerun=True)
    assert "\n" not in str(error.value)
    edited = reproduce(remote)  # the tables still reproduce, but the store was not made by the model now named
    # the stored request ids are not the ones this model's plan makes, and the plan hash differs
    assert set(edited.mismatches["problem"]) == {"not planned", "plan"} and not edited.passed

    sampled = _copy(runs["reference"], tmp_path / "sampled", analysis=False)
    _edit_manifest(sampled, model="local/smollm2-135m", backend_params={})
    with pytest.raises(PsytestError, match="at temperature 1, which is not bit-reproducible"):
        reproduce(sampled, rerun=True)


# ---------------------------------------------------------------------------------------------------
# reproduce: the tolerance model at its boundaries (module docstring of psychometrics.analysis.reproduce)


def _cells(tmp_path, stored: dict, recomputed: dict, name: str = "analysis/variance_decomposition.csv"):
    """(column, row) of every cell compare_csv flags between two small tables."""
    pd.DataFrame(stored).to_csv(tmp_path / "stored.csv", index=False)
    pd.DataFrame(recomputed).to_csv(tmp_path / "recomputed.csv", index=False)
    found, total = compare_csv(tmp_path / "stored.csv", tmp_path / "recomputed.csv", name, 100)
    assert total == len(found)
    return {(r["column"], r["row"]) for r in found}


def test_well_conditioned_numbers_are_compared_componentwise(tmp_path):
    keys = {"inventory": ["a", "a"], "mode": ["text", "text"]}
    stored = {**keys, "score": [3.0, 2.0]}
    assert _cells(tmp_path, stored, {**keys, "score": [3.0 * (1 + 0.5e-9), 2.0]}) == set()
    assert _cells(tmp_path, stored, {**keys, "score": [3.0 * (1 + 2e-9), 2.0]}) == {("score", 0)}
    # a real change (1e-6 on a score of 2) is caught
    assert _cells(tmp_path, stored, {**keys, "score": [3.0, 2.0 + 1e-6]}) == {("score", 1)}


def test_results_of_cancellation_are_compared_at_their_operands_scale(tmp_path):
    """A sum of squares that is 0 in exact arithmetic may come out as rounding of the scale's total:
    normwise within the same inventory and mode, not beyond it."""
    keys = {"inventory": ["a", "a", "b"], "mode": ["text", "text", "text"]}
    stored = {**keys, "sum_sq": [2.0, 0.0, 1e-6]}
    assert _cells(tmp_path, stored, {**keys, "sum_sq": [2.0, 1.5e-9, 1e-6]}) == set()  # 0.75e-9 of 2.0
    assert _cells(tmp_path, stored, {**keys, "sum_sq": [2.0, 2.5e-9, 1e-6]}) == {("sum_sq", 1)}
    assert _cells(tmp_path, stored, {**keys, "sum_sq": [2.0, 0.0, 1e-6 + 1.5e-9]}) == {("sum_sq", 2)}  # b's scale is 1e-6


def test_p_values_and_coefficients_have_unit_scale(tmp_path):
    keys = {"inventory": ["a", "a"], "mode": ["text", "text"]}
    stored = {**keys, "p_value": [1.0, 1e-30], "loading": [0.8, 0.0]}
    same = {**keys, "p_value": [1 - 5e-10, 1e-25], "loading": [0.8, 8e-10]}
    assert _cells(tmp_path, stored, same) == set()
    # the unstable p value of issue 13 (F = 1e-16 instead of 0) is outside the tolerance
    assert _cells(tmp_path, stored, {**same, "p_value": [0.9999999905136262, 1e-25]}) == {("p_value", 0)}
    assert _cells(tmp_path, stored, {**same, "loading": [0.8, 2e-9]}) == {("loading", 1)}


def test_integers_and_text_must_be_identical(tmp_path):
    keys = {"inventory": ["a"], "mode": ["text"]}
    stored = {**keys, "df": [1000000000], "note": ["constant"], "balanced": [True]}
    assert _cells(tmp_path, stored, {**keys, "df": [1000000001], "note": ["constant "], "balanced": [False]}) == {
        ("df", 0), ("note", 0), ("balanced", 0)}


def test_a_column_name_is_unit_scale_only_in_the_table_where_it_is_a_coefficient(tmp_path):
    keys = {"inventory": ["a", "a"], "mode": ["text", "text"]}
    stored = {**keys, "ci_low": [0.0, 1e-3]}
    nudged = {**keys, "ci_low": [8e-10, 1e-3]}
    assert _cells(tmp_path, stored, nudged, "analysis/retest.csv") == set()  # an ICC bound: scale 1
    assert _cells(tmp_path, stored, nudged, "analysis/score_summary.csv") == {("ci_low", 0)}  # scale 1e-3


def test_rerun_retries_transient_failures_and_reports_a_failed_resend_as_a_difference(runs, tmp_path, monkeypatch):
    """Re-sending goes through the send engine: a transient failure is retried (and noted), a request the
    model refuses is one ``error`` difference, not a crash; the run itself is never written."""
    import psychometrics.models as models
    from psychometrics.models.base import ModelBackend, TransientModelError
    from psychometrics.run.owner import open_run

    run = _copy(runs["reference"], tmp_path / "run")
    with closing(sqlite3.connect(f"{(run / 'responses.sqlite').as_uri()}?immutable=1", uri=True)) as conn:
        refused_row, refused_id = conn.execute(
            "SELECT rowid, request_id FROM responses ORDER BY rowid LIMIT 1 OFFSET 4").fetchone()
    before = _tree_fingerprint(run)
    refused = next(p.request for p in open_run(run).plan() if p.request_id == refused_id)
    assert _tree_fingerprint(run) == before
    resolve = models.resolve_model

    class Flaky(ModelBackend):
        """The run's model, but its first call is overloaded and one request is refused for good."""

        def __init__(self, inner):
            self.inner, self.name, self.calls = inner, inner.name, 0

        @property
        def params(self):
            return self.inner.params

        def prepare(self, inventories, persona_set=None):
            self.inner.prepare(inventories, persona_set)

        async def complete(self, request):
            self.calls += 1
            if self.calls == 1:
                raise TransientModelError("overloaded")
            if request == refused:
                raise ValueError("refused")
            return await self.inner.complete(request)

    made = []
    monkeypatch.setattr(models, "resolve_model", lambda model, **kw: made.append(Flaky(resolve(model, **kw))) or made[-1])
    result = reproduce(run, rerun=True)
    assert len(made) == 1 and made[0].calls == 1600 + 1
    assert not result.passed and result.rerun.n_mismatches == 1 and result.rerun.requests_checked == 1600
    found = result.rerun.mismatches.iloc[0]
    assert (found["field"], found["rowid"], found["replayed"]) == ("error", refused_row, "ValueError: refused")
    assert any("1 transient failures of the model were retried" in note for note in result.rerun.notes)
    assert _tree_fingerprint(run) == before


# ---------------------------------------------------------------------------------------------------
# the drift gate: zero spread, noise only, a real shift


def _cli(*args: str):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "psychometrics", *args], capture_output=True, text=True, timeout=600)


def test_check_fails_on_a_real_shift_of_one_sd_naming_the_scale(runs, tmp_path):
    baseline = make_baseline(runs["reference"])
    shifted = _administer(SIM + ",e=1", tmp_path / "e1", seed=4)  # extraversion moved by 1 SD, other draws
    result = check_run(shifted, baseline)
    assert not result.passed and list(result.failures["scale"]) == ["E"]
    row = result.failures.iloc[0]
    assert row["difference"] > row["allowed"] > 0 and row["difference_sd"] > 3
    assert result.verdict.startswith("FAIL: 1 of 5 scales outside 3 SD of run-to-run noise")
    assert "mini-ipip/text/E" in result.verdict and f"allowed ±{row['allowed']:.3f}" in result.verdict
    # The other scales stay within noise: the simulated respondent keys Mini-IPIP items as Mini-IPIP does.
    assert result.rows.set_index("scale").drop(index="E")["within"].all()


@pytest.mark.parametrize("model, design", [
    ("sim/seed=2,noise=0.4", dict(personas=None, samples=1, temperature=0.0)),  # one cell
    # Repeated samples of label probabilities from a respondent without state noise: all identical.
    ("sim/seed=2", dict(personas=None, samples=3, temperature=0.0, modes=["probs"])),
], ids=["one-cell", "greedy-probs"])
def test_a_baseline_without_spread_warns_and_is_refused_in_sd_units(tmp_path, model, design):
    reference = _administer(model, tmp_path / "ref", seed=1, **design)
    rerun = _administer(model, tmp_path / "rerun", seed=2, **design)
    written = _cli("baseline", str(reference), "--out", str(tmp_path / "b.json"))
    assert written.returncode == 0, written.stderr
    warning = written.stderr.strip().splitlines()
    assert len(warning) == 1 and warning[0].startswith("psytest: warning: 5 scale(s) have no run-to-run spread")
    baseline = load_baseline(tmp_path / "b.json")
    assert baseline["warnings"] and not any(entry["spread"] for entry in baseline["scales"])

    refused = _cli("check", str(rerun), "--baseline", str(tmp_path / "b.json"))
    assert refused.returncode == 2 and refused.stdout == ""
    line = refused.stderr.strip()
    assert "\n" not in line and "Traceback" not in line and "inf" not in line
    assert "no run-to-run spread for mini-ipip/" in line and "--unit raw" in line and "repeated samples" in line
    with pytest.raises(PsytestError, match="no run-to-run spread"):
        check_run(rerun, baseline)

    raw = _cli("check", str(rerun), "--baseline", str(tmp_path / "b.json"), "--unit", "raw")
    assert raw.returncode == 0 and "PASS: all 5 scales within 0.5 points" in raw.stdout
    moved = _administer(model + ",e=2", tmp_path / "moved", seed=1, **design)
    failed = check_run(moved, baseline, tolerance=0.25, unit="raw")
    assert list(failed.failures["scale"]) == ["E"] and failed.failures.iloc[0]["difference"] > 0.25


def test_a_format_1_baseline_is_read_and_gives_the_same_verdict(runs, tmp_path):
    current = make_baseline(runs["reference"])
    old = {k: v for k, v in current.items() if k not in ("warnings", "noise")}
    old["psytest_baseline"] = 1
    old["scales"] = [{k: v for k, v in e.items() if k not in ("noise_se", "noise_df", "spread")} for e in current["scales"]]
    (tmp_path / "old.json").write_text(json.dumps(old))
    for other in ("same_model", "extraverted"):
        new_rows = check_run(runs[other], current).rows
        old_rows = check_run(runs[other], load_baseline(tmp_path / "old.json")).rows
        pd.testing.assert_frame_equal(new_rows, old_rows)
    lacking = {**old, "scales": [{k: v for k, v in e.items() if k != "noise_sd"} for e in old["scales"]]}
    (tmp_path / "lacking.json").write_text(json.dumps(lacking))
    with pytest.raises(PsytestError, match=r"scales\[0\] lacks noise_sd") as error:
        load_baseline(tmp_path / "lacking.json")
    assert "\n" not in str(error.value)
    for version in (3, "1", True, None):
        (tmp_path / "future.json").write_text(json.dumps({**old, "psytest_baseline": version}))
        with pytest.raises(PsytestError, match="not supported"):
            load_baseline(tmp_path / "future.json")
