"""The analysis layer end to end: ground-truth recovery, the score and analyze commands, R agreement."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from psychometrics.analysis.tables import analyze_item_data, analyze_run
from psychometrics.design.plan import Design
from psychometrics.errors import PsytestError
from psychometrics.inventories.item_data import inventory_from_keys, load_item_data
from psychometrics.inventories.library import resolve_inventory
from psychometrics.models.simulated import SimulatedRespondent
from psychometrics.run.directory import administer

REFERENCE = Path(__file__).parent / "reference"
BIG_FIVE = ("neuroticism", "extraversion", "openness", "agreeableness", "conscientiousness")


def test_recovered_scores_correlate_at_least_095_with_true_traits(tmp_path):
    """150 simulated people with known traits answer IPIP-NEO-120; domain scores recover the traits.

    Each person is a persona (a one-line biography); ``persona_spread=1`` gives each its own N(0, 1)
    offset on every trait, so the true level of every person is known exactly.
    """
    people = tmp_path / "people.yaml"
    people.write_text("id: people\nname: People\npersonas:\n" + "".join(
        f"  - id: p{k:03d}\n    text: You are participant number {k} in this study.\n" for k in range(150)))
    from psychometrics.design.personas import resolve_persona_set

    persona_set = resolve_persona_set(str(people))
    inventory = resolve_inventory("ipip-neo-120")
    backend = SimulatedRespondent("sim/seed=5,persona_spread=1")
    administer(backend, [inventory], Design(personas=str(people), modes=["probs"]), tmp_path / "run",
               persona_set=persona_set)
    scores = analyze_run(tmp_path / "run", structure=False)["scores"]
    for scale in inventory.scales:
        recovered = scores[scores["scale"] == scale.id].set_index("persona")["score"]
        truth = [backend.trait_level(scale.trait, (p.id, p.targets)) for p in persona_set.personas]
        r = np.corrcoef(truth, recovered.loc[[p.id for p in persona_set.personas]])[0, 1]
        assert r >= 0.95, (scale.trait, r)


@pytest.fixture(scope="module")
def varied_run(tmp_path_factory):
    """A run with personas (different simulated people), two orders and two samples, two instruments."""
    out = tmp_path_factory.mktemp("run")
    inventories = [resolve_inventory("bfi-44"), resolve_inventory("mini-ipip")]
    backend = SimulatedRespondent("sim/seed=4,persona_spread=1,position_first=1,acquiescence=0.5,noise=0.3")
    design = Design(personas="neutral-biographies", option_orders=["original", "reversed"], samples=2,
                    temperature=1.0)
    administer(backend, inventories, design, out)
    return out


def test_run_analysis_produces_every_table(varied_run):
    tables = analyze_run(varied_run)
    for name in ("scores", "score_summary", "norms", "reliability", "item_total", "retest", "efa_fit",
                 "efa_loadings", "cfa_fit", "factor_effects", "variance_decomposition", "option_order_flips",
                 "position_bias", "acquiescence", "response_styles", "mtmm", "mtmm_summary"):
        assert not tables[name].empty, name
    reliability = tables["reliability"]
    extraversion = reliability[(reliability["inventory"] == "bfi-44") & (reliability["scale"] == "E")]
    # one row per design cell (the two option orders), across its 40 personas x 2 samples
    assert sorted(extraversion["option_order"]) == ["original", "reversed"]
    assert (extraversion["n_respondents"] == 80).all() and (extraversion["alpha"] > 0.7).all()
    efa = tables["efa_fit"][tables["efa_fit"]["inventory"] == "bfi-44"]
    assert len(efa) == 2 and (efa["congruence_mean"] > 0.8).all()
    retest = tables["retest"]
    assert (retest["icc2_1"] > 0.5).all() and (retest["n_targets"] == 40).all()
    assert set(retest["option_order"]) == {"original", "reversed"}
    position = tables["position_bias"]
    pooled = position[(position["option_orders"].notna()) & (position["position"] == 0)]
    assert (pooled["rate"] > 0.2).any()
    assert (tables["acquiescence"]["balanced_acquiescence"] > 0).all()
    convergent = tables["mtmm"][tables["mtmm"]["kind"] == "convergent"]
    assert (convergent["r"] > 0.6).all() and len(convergent) == 5
    assert (convergent["n_cells"] == 2).all() and (convergent["df"] == convergent["n"] - 2 - 1).all()
    shares = tables["variance_decomposition"]
    assert set(shares["source"]) >= {"option_order", "persona", "residual"}


def test_grouping_respondents_by_fewer_factors(varied_run):
    tables = analyze_run(varied_run, by=["persona"], structure=False)
    scores = tables["scores"]
    assert scores.groupby(["inventory", "scale"]).size().max() == 40  # one respondent per biography
    assert set(scores["mode"]) == {"text"}
    # a persona averaged over samples and option orders is one respondent; the pooled cell reads "all"
    reliability = tables["reliability"]
    assert (reliability["option_order"] == "all").all() and (reliability["n_respondents"] == 40).all()
    # without persona and sample every cell has one respondent: nothing across cells, a sentence instead
    by_cell = analyze_run(varied_run, by=["option_order"], structure=False)
    assert by_cell["reliability"].filter(like="alpha").isna().all().all()
    assert by_cell["reliability"]["note"].str.contains("1 respondent").all()
    with pytest.raises(PsytestError, match="--by: unknown factor 'colour'"):
        analyze_run(varied_run, by=["colour"])


def test_analysis_refuses_a_changed_inventory(tmp_path):
    source = Path(__file__).parent / "data" / "inventories" / "valid-minimal.yaml"
    copy = tmp_path / "tiny.yaml"
    copy.write_text(source.read_text())
    from psychometrics.inventories.library import resolve_inventory as resolve

    administer(SimulatedRespondent("sim/seed=1"), [resolve(str(copy))], Design(), tmp_path / "run",
               inventory_sources={"tiny": str(copy)})
    assert not analyze_run(tmp_path / "run")["scores"].empty
    copy.write_text(copy.read_text().replace("Trust others.", "Trust other people."))
    with pytest.raises(PsytestError, match="has changed since the run"):
        analyze_run(tmp_path / "run")


def test_item_data_analysis_matches_r_on_bfi(tmp_path):
    keys = tmp_path / "bfi.yaml"
    keys.write_text(
        "response_range: [1, 6]\nscales:\n  A: [-A1, A2, A3, A4, A5]\n  C: [C1, C2, C3, -C4, -C5]\n"
        "  E: [-E1, -E2, E3, E4, E5]\n  N: [N1, N2, N3, N4, N5]\n  O: [O1, -O2, O3, O4, -O5]\n"
    )
    inventory = inventory_from_keys(keys)
    tables = analyze_item_data(load_item_data(REFERENCE / "data" / "bfi25.csv", inventory), inventory)
    golden = json.loads((REFERENCE / "golden" / "reliability.json").read_text())["alpha"]
    reliability = tables["reliability"].set_index("scale")
    item_total = tables["item_total"].set_index("item")
    for scale in "ACENO":
        reference = golden[scale]
        row = reliability.loc[scale]
        assert row["alpha"] == pytest.approx(reference["raw_alpha"], abs=1e-10)
        assert row["alpha_ci_low"] == pytest.approx(reference["feldt_lower"], abs=1e-10)
        assert row["alpha_ci_high"] == pytest.approx(reference["feldt_upper"], abs=1e-10)
        assert row["lambda6"] == pytest.approx(reference["g6"], abs=1e-10)
        for item, r_drop in zip(reference["items"], reference["r_drop"]):
            assert item_total.loc[item, "r_drop"] == pytest.approx(r_drop, abs=1e-10)
    fit = tables["cfa_fit"].iloc[0]
    cfa_golden = json.loads((REFERENCE / "golden" / "cfa.json").read_text())["models"]["bfi5"]["fit"]
    for ours, theirs in (("chisq", "chisq"), ("cfi", "cfi"), ("tli", "tli"), ("rmsea", "rmsea"), ("srmr", "srmr")):
        assert fit[ours] == pytest.approx(cfa_golden[theirs], rel=1e-6), ours


def cli(*args):
    return subprocess.run([sys.executable, "-m", "psychometrics", *args], capture_output=True, text=True, timeout=300)


def test_cli_score_and_analyze(varied_run, tmp_path):
    result = cli("score", str(varied_run), "--no-structure", "--json", "--out", str(tmp_path / "a"))
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["reliability"] and (tmp_path / "a" / "reliability.csv").exists()
    human = tmp_path / "human.csv"
    pd.read_csv(REFERENCE / "data" / "bfi25.csv").head(300).to_csv(human, index=False)
    keys = tmp_path / "keys.yaml"
    keys.write_text("response_range: [1, 6]\nscales:\n  A: [-A1, A2, A3, A4, A5]\n  C: [C1, C2, C3, -C4, -C5]\n")
    result = cli("analyze", str(human), "--keys", str(keys))
    assert result.returncode == 0, result.stderr
    assert "Reliability" in result.stdout and (tmp_path / "human-analysis" / "efa_fit.csv").exists()
    bad = cli("analyze", str(human))
    assert bad.returncode == 2 and "give exactly one of --keys" in bad.stderr


def test_congruence_with_given_reference_loadings(tmp_path):
    keys = tmp_path / "keys.yaml"
    keys.write_text("response_range: [1, 6]\nscales:\n  A: [-A1, A2, A3, A4, A5]\n  C: [C1, C2, C3, -C4, -C5]\n")
    reference = tmp_path / "loadings.csv"
    rows = ["item,F1,F2"] + [f"A{k},0.6,0.0" for k in range(1, 6)] + [f"C{k},0.0,0.6" for k in range(1, 6)]
    reference.write_text("\n".join(rows) + "\n")
    result = cli("analyze", str(REFERENCE / "data" / "bfi25.csv"), "--keys", str(keys), "--reference-loadings",
                 str(reference), "--out", str(tmp_path / "out"), "--json")
    assert result.returncode == 0, result.stderr
    fit = json.loads(result.stdout)["efa_fit"][0]
    assert fit["congruence_with"] == "reference loadings" and fit["congruence_mean"] > 0.9
    bad = tmp_path / "bad.csv"
    bad.write_text("item,F1\nA1,high\n")
    result = cli("analyze", str(REFERENCE / "data" / "bfi25.csv"), "--keys", str(keys), "--reference-loadings", str(bad))
    assert result.returncode == 2 and "expected item ids then numeric loadings" in result.stderr
