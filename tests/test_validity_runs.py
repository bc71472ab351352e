"""Self-report vs behaviour on whole runs: simulated respondents whose behaviour is (or is not) driven by
the traits behind their questionnaire answers, analysed through ``psytest validity`` and ``psytest report``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

PSYTEST = [sys.executable, "-m", "psychometrics"]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([*PSYTEST, *args], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def _runs(root: Path, model: str, name: str) -> tuple[Path, Path]:
    questionnaire, behavior = root / f"{name}-q", root / f"{name}-b"
    run_cli("administer", "--model", model, "-i", "bfi-44", "-i", "sd3", "--personas", "trait-shaping",
            "--mode", "probs", "--out", str(questionnaire), "--json")
    run_cli("behave", "--model", model, "--tasks", "all", "--personas", "trait-shaping", "--variants", "4",
            "--out", str(behavior), "--json")
    return questionnaire, behavior


@pytest.fixture(scope="module")
def linked(tmp_path_factory):
    return _runs(tmp_path_factory.mktemp("linked"), "sim/seed=11,behavior_link=0.85", "linked")


@pytest.fixture(scope="module")
def unlinked(tmp_path_factory):
    return _runs(tmp_path_factory.mktemp("unlinked"), "sim/seed=12,behavior_link=0", "unlinked")


def _validity(questionnaire: Path, behavior: Path, out: Path) -> dict:
    return json.loads(run_cli("validity", "-s", str(questionnaire), "-b", str(behavior), "--out", str(out),
                              "--bootstrap", "500", "--json").stdout)


def test_built_in_associations_are_recovered(linked, tmp_path):
    payload = _validity(*linked, tmp_path / "v")
    overall = payload["dissociation"][0]
    assert overall["declared"] == overall["tested"] >= 19
    # Behaviour follows the traits (link .85): nearly every declared pair is confirmed.
    assert overall["share_confirmed"] >= 0.8
    pairs = payload["declared_pairs"]
    assert all(pair["r"] * pair["expected_sign"] > 0 for pair in pairs), pairs
    # Beside the index: sign, mean signed r and power (33 personas: power to detect r = .3 about .4).
    assert overall["share_expected_sign"] == 1 and overall["mean_signed_r"] > 0.5
    assert 0.3 < overall["mean_power_r30"] < 0.5 and all(0.3 < pair["power_r30"] < 0.5 for pair in pairs)
    assert all(pair["ci_low"] is None or pair["ci_low"] <= pair["r"] <= pair["ci_high"] for pair in pairs)
    for name in ("validity.html", "validity_pairs.csv", "manipulation_check.csv", "behavior_reliability.csv",
                 "validity_mtmm.csv", "dissociation.csv"):
        assert (tmp_path / "v" / name).is_file(), name
    html = (tmp_path / "v" / "validity.html").read_text(encoding="utf-8")
    assert html.count("data:image/png;base64,") == 2 and "Declared associations" in html
    assert "Reliability of self-report scores" in html and "MTMM matrix with behaviour" in html
    assert "achieved scores per target level" in html


def test_dissociation_is_detected_when_behaviour_ignores_the_traits(unlinked, tmp_path):
    payload = _validity(*unlinked, tmp_path / "v")
    overall = payload["dissociation"][0]
    # Self-reports still follow the personas, behaviour does not: few declared pairs survive BH.
    assert overall["share_confirmed"] <= 0.2
    assert overall["dissociation"] >= 0.8
    # ...and not for lack of power: about half the signs right, mean signed r near 0.
    assert 0.2 <= overall["share_expected_sign"] <= 0.8 and abs(overall["mean_signed_r"]) < 0.2


def test_manipulation_check_separates_saying_from_doing(unlinked, tmp_path):
    _validity(*unlinked, tmp_path / "v")
    import pandas as pd

    check = pd.read_csv(tmp_path / "v" / "manipulation_check.csv")
    self_rows = check[check["kind"] == "self-report"]
    behaviour_rows = check[check["kind"] == "behavior"]
    # Each trait: its 4 own personas and the baseline, one per level (personas of other traits left out).
    assert (check["n"] == 5).all() and (check["n_levels"] == 5).all()
    assert (self_rows["r"] > 0.9).all()  # the personas move what the respondent says...
    assert abs(behaviour_rows["r"].mean()) < 0.25 and (behaviour_rows["p"] < 0.05).mean() < 0.25  # ...not what it does
    levels = pd.read_csv(tmp_path / "v" / "manipulation_levels.csv")
    for _, part in levels[levels["kind"] == "self-report"].groupby("trait"):
        assert part["level"].tolist() == [-2, -1, 0, 1, 2] and part["mean"].is_monotonic_increasing


def test_two_models_give_the_within_between_model_split(linked, unlinked, tmp_path):
    out = tmp_path / "both"
    payload = json.loads(run_cli(
        "validity", "-s", str(linked[0]), "-s", str(unlinked[0]), "-b", str(linked[1]), "-b", str(unlinked[1]),
        "--out", str(out), "--bootstrap", "200", "--json").stdout)
    scopes = {row["scope"] for row in payload["dissociation"]}
    assert len(scopes) == 3  # each model and the pooled scope
    import pandas as pd

    mixed = pd.read_csv(out / "validity_mixed.csv")
    assert len(mixed) >= 19 and mixed["within"].notna().all()


def test_report_gains_the_validity_section(linked, tmp_path):
    out = tmp_path / "report"
    run_cli("report", str(linked[0]), "--behavior", str(linked[1]), "--out", str(out))
    html = (out / "report.html").read_text(encoding="utf-8")
    assert 'id="validity"' in html and "Self-report vs behaviour" in html
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["validity"]["dissociation"][0]["share_confirmed"] >= 0.8
    assert (out / "validity_pairs.csv").is_file() and (out / "validity_notes.csv").is_file()


def test_validity_refuses_swapped_runs(linked):
    result = subprocess.run([*PSYTEST, "validity", "-s", str(linked[1]), "-b", str(linked[1])],
                            capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "a behaviour run; give it with --behavior" in result.stderr
