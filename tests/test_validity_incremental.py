"""Incremental validity, equivalence, gating, the persona-effect ratio and the disattenuation floor
(psychometrics/validity/incremental.py, validity_pairs' correction).

Golden values come from ``tests/reference/incremental.R`` (residual-method partial r, ``anova(lm0, lm1)``,
``p.adjust``, TOST from ``pnorm``, ``lm`` coefficients) on the validity.R data (one trait per persona) and on
a multi-trait data set it writes (every persona sets every trait).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from psychometrics.errors import PsytestError
from psychometrics.validity.incremental import (
    CONCLUSIONS, EQUIVALENT, EXPLAINED, INCONCLUSIVE, NOT_INTERPRETABLE, PREDICTS_BEYOND, PREDICTS_UNCONTROLLED,
    REVERSED, conclusion_rules, partial_test, tost_r,
)
from psychometrics.validity.statistics import disattenuate, validity_tables

REFERENCE = Path(__file__).parent / "reference"
GOLDEN = json.loads((REFERENCE / "golden" / "incremental.json").read_text())
TIGHT = 1e-10


def _read(prefix: str, names=("selfreport", "behavior", "targets")) -> dict:
    return {name: pd.read_csv(REFERENCE / "data" / f"{prefix}-{name}.csv") for name in names}


@pytest.fixture(scope="module")
def single():
    data = _read("validity", ("selfreport", "items", "behavior", "targets"))
    return validity_tables(data["selfreport"], data["behavior"], data["targets"], items=data["items"], n_boot=200)


@pytest.fixture(scope="module")
def multi():
    data = _read("incremental")
    return validity_tables(data["selfreport"], data["behavior"], data["targets"], n_boot=200)


def _row(table: pd.DataFrame, **keys) -> pd.Series:
    mask = np.ones(len(table), bool)
    for key, value in keys.items():
        mask &= (table[key] == value).to_numpy()
    assert mask.sum() == 1, keys
    return table[mask].iloc[0]


@pytest.mark.parametrize("name", ["single", "multi"])
def test_partial_r_delta_r2_f_and_tost_match_r(name, request):
    tables = request.getfixturevalue(name)
    table = tables["validity_incremental"]
    assert len(table) == len(GOLDEN[name]["pairs"])
    for ref in GOLDEN[name]["pairs"]:
        row = _row(table, scope=ref["scope"], trait=ref["trait"], task=ref["task"])
        where = (name, ref["scope"], ref["task"])
        assert row["n"] == ref["n"] and row["df"] == ref["df"], where
        for key in ("partial_r", "f", "p_incremental", "delta_r2", "r2_targets", "p_equivalence", "p_bh_incremental"):
            assert row[key] == pytest.approx(ref[key], abs=TIGHT, rel=1e-9), where + (key,)
        assert row["tested_r"] == row["partial_r"] and row["basis"].startswith("partial r given target levels")
        assert row["incremental_confirmed"] == (np.sign(row["partial_r"]) == row["expected_sign"]
                                                and ref["p_bh_incremental"] < 0.05), where
        assert row["conclusion"] in CONCLUSIONS and row["reason"]


@pytest.mark.parametrize("name", ["single", "multi"])
def test_persona_effect_ratio_matches_lm(name, request):
    table = request.getfixturevalue(name)["persona_effect"]
    assert len(table) == len(GOLDEN[name]["ratios"])
    for ref in GOLDEN[name]["ratios"]:
        row = _row(table, scope=ref["scope"], trait=ref["trait"], task=ref["task"])
        where = (name, ref["scope"], ref["task"])
        assert row["n"] == ref["n"], where
        for key in ("d_selfreport", "d_behavior", "ratio"):
            assert row[key] == pytest.approx(ref[key], abs=TIGHT, rel=1e-9), where + (key,)
        if not pd.isna(row["ci_low"]):
            assert row["ci_low"] <= row["ci_high"]


def test_ratio_recovers_a_known_persona_effect(multi):
    """multi: the target moves self-report and behaviour through theta, except extraversion's behaviour
    (link 0), which the target moves directly; pooled, d of dictator-game near the self-report's."""
    table = multi["persona_effect"].set_index(["scope", "task"])
    pooled = table.loc[("pooled", "dictator-game")]
    assert 0.4 < pooled["ratio"] < 1.3 and pooled["ci_low"] < pooled["ratio"] < pooled["ci_high"]
    incremental = multi["validity_incremental"].set_index(["scope", "task"])
    # extraversion: behaviour follows the target, not the persona's own theta: nothing beyond the persona
    assert incremental.loc[("pooled", "social-choice"), "conclusion"] != PREDICTS_BEYOND
    assert incremental.loc[("pooled", "dictator-game"), "conclusion"] == PREDICTS_BEYOND
    assert incremental.loc[("pooled", "setback-writing"), "conclusion"] == PREDICTS_BEYOND


def test_tost_matches_r_and_brackets():
    for ref in GOLDEN["tost"]:
        assert tost_r(ref["r"], int(ref["df"]), GOLDEN["bound"]) == pytest.approx(ref["p"], abs=1e-14)
    assert tost_r(0.0, 400) < 0.001 and tost_r(0.0, 20) > 0.05  # equivalence needs respondents
    assert tost_r(0.5, 400) == pytest.approx(1.0) and tost_r(None, 30) is None and tost_r(0.1, 1) is None
    assert tost_r(0.1, 100, 0.3) < tost_r(0.1, 100, 0.2)


def test_partial_test_degenerate_cases():
    rng = np.random.default_rng(0)
    level = np.repeat([-1.0, 0.0, 1.0], 10)
    b = level + rng.normal(size=30)
    # self-report exactly a function of the target level: nothing to partial
    out = partial_test(level * 2 + 1, b, level[:, None])
    assert out["partial_r"] is None and out["self_determined"] and "function of the persona" in out["note"]
    # too few respondents for the covariates
    out = partial_test(rng.normal(size=4), rng.normal(size=4), rng.normal(size=(4, 3)))
    assert out["partial_r"] is None and "too few respondents" in out["note"]
    # missing values are dropped pairwise with the covariates
    s = level + rng.normal(size=30)
    s[3] = np.nan
    assert partial_test(s, b, level[:, None])["n"] == 29


def _common_cause(n_personas: int = 120, spread: float = 0.0, seed: int = 3, n_models: int = 1):
    """Respondent-level frames: every persona sets 3 traits at -3..3; self-report and behaviour follow
    theta = target + spread * own offset, each through its own saturating response and noise."""
    rng = np.random.default_rng(seed)
    traits = ["agreeableness", "extraversion", "neuroticism"]
    levels = {t: rng.permutation(np.resize(np.arange(-3, 4), n_personas)) for t in traits}
    targets = pd.DataFrame([(f"p{i:03d}", t, int(levels[t][i])) for i in range(n_personas) for t in traits],
                           columns=["persona", "trait", "level"])
    tasks = [("dictator-game", "agreeableness", 1), ("insult-reply", "agreeableness", -1),
             ("social-choice", "extraversion", 1), ("setback-writing", "neuroticism", 1)]
    selfreport, behavior = [], []
    for m in range(n_models):
        for i in range(n_personas):
            theta = {t: 0.6 * levels[t][i] + spread * rng.normal() for t in traits}
            for t in traits:
                selfreport.append((f"m{m}", f"p{i:03d}", "inv", t[:1], t, 1,
                                   3 + 2 * math.tanh(theta[t]) + rng.normal(0, 0.2), "c1"))
            for task, t, direction in tasks:
                score = 1 / (1 + math.exp(-2 * direction * theta[t])) + rng.normal(0, 0.1)
                behavior.append((f"m{m}", f"p{i:03d}", 0, task, "v1", t, direction, "valid", score))
    return (pd.DataFrame(selfreport, columns=["model", "persona", "inventory", "scale", "trait", "trait_sign", "score",
                                              "cell"]),
            pd.DataFrame(behavior, columns=["model", "persona", "sample", "task", "variant", "trait", "direction",
                                            "outcome", "score"]), targets)


def test_a_common_cause_is_not_incremental_validity():
    """Self-report and behaviour follow only the target level, each through its own curve: the plain r
    confirms every pair, beyond the target levels none predicts and the plain r is explained by the persona."""
    selfreport, behavior, targets = _common_cause(n_personas=600)
    table = validity_tables(selfreport, behavior, targets, n_boot=200)["validity_incremental"]
    assert table["confirmed"].all()
    assert not table["incremental_confirmed"].any()
    assert (table["conclusion"] == EXPLAINED).sum() >= 3, table[["task", "partial_r", "p_equivalence", "reason"]]
    assert set(table["conclusion"]) <= {EXPLAINED, INCONCLUSIVE}
    # Entered linearly, the curved target effect would leave a common-cause remainder behind.
    from psychometrics.validity.incremental import partial_test as test

    s = selfreport.pivot_table(index="persona", columns="trait", values="score")["agreeableness"]
    b = behavior[behavior["task"] == "dictator-game"].set_index("persona")["score"].reindex(s.index)
    level = targets[targets["trait"] == "agreeableness"].set_index("persona")["level"].reindex(s.index)
    assert test(s.to_numpy(), b.to_numpy(), level.to_numpy(float)[:, None])["partial_r"] > 0.3


def test_traits_beyond_the_target_are_recovered_and_reversed_pairs_counted_apart():
    selfreport, behavior, targets = _common_cause(spread=1.0, n_models=2)
    behavior = behavior.copy()
    wrong = behavior["task"] == "social-choice"
    behavior.loc[wrong, "direction"] = -1  # declared the wrong way round
    tables = validity_tables(selfreport, behavior, targets, n_boot=200)
    table = tables["validity_incremental"].set_index(["scope", "task"])
    for scope in ("m0", "m1", "pooled"):
        for task in ("dictator-game", "insult-reply", "setback-writing"):
            assert table.loc[(scope, task), "conclusion"] == PREDICTS_BEYOND, (scope, task)
        assert table.loc[(scope, "social-choice"), "conclusion"] == REVERSED
    assert table.loc[("pooled", "dictator-game"), "basis"] == "partial r given target levels and model"
    dissociation = tables["dissociation"].set_index(["scope", "trait"])
    row = dissociation.loc[("pooled", "all")]
    assert row["confirmed_incremental"] == 3 and row["n_reversed"] == 1
    assert row["dissociation_incremental"] == pytest.approx(1 / 4)


def test_gating_on_the_manipulation_check():
    """A trait whose self-report the persona does not move: every pair of it is not interpretable, with r
    and p of the check in the sentence; the other traits are unaffected."""
    selfreport, behavior, targets = _common_cause(spread=1.0, n_personas=80)
    flat = selfreport["trait"] == "extraversion"
    rng = np.random.default_rng(9)
    selfreport = selfreport.copy()
    selfreport.loc[flat, "score"] = 3 + rng.normal(0, 0.5, int(flat.sum()))
    tables = validity_tables(selfreport, behavior, targets, n_boot=200)
    check = tables["manipulation_check"].set_index(["scope", "trait", "measure"])
    r, p = check.loc[("m0", "extraversion", "self-report"), ["r", "p"]]
    table = tables["validity_incremental"].set_index("task")
    row = table.loc["social-choice"]
    assert row["conclusion"] == NOT_INTERPRETABLE and row["interpretable"] is False or row["interpretable"] == 0
    p_text = "< .001" if p < 0.001 else "= " + f"{p:.3f}".lstrip("0")
    assert row["reason"] == f"not interpretable: the persona did not move the self-report (r = {r:.2f}, p {p_text})"
    assert table.loc["dictator-game", "conclusion"] == PREDICTS_BEYOND
    ratio = tables["persona_effect"].set_index("task")
    assert "not interpretable: the persona did not move the self-report" in ratio.loc["social-choice", "note"]


def test_without_targets_the_plain_r_is_used_and_labelled():
    selfreport, behavior, _ = _common_cause(spread=1.0, n_personas=60)
    tables = validity_tables(selfreport, behavior, None, n_boot=200)
    table = tables["validity_incremental"].set_index("task")
    assert (table["basis"] == "plain r (no persona targets)").all()
    assert table["partial_r"].isna().all() and (table["tested_r"] == table["r"]).all()
    assert table.loc["dictator-game", "conclusion"] == PREDICTS_UNCONTROLLED
    assert "persona is not controlled" in table.loc["dictator-game", "reason"]
    assert tables["persona_effect"].empty
    assert any("no persona targets: nothing to partial out" in n for n in tables["notes"]["note"])


def test_equivalence_is_required_before_does_not_predict():
    rng = np.random.default_rng(4)
    selfreport, behavior, targets = _common_cause(spread=1.0, n_personas=400)
    behavior = behavior.copy()
    unrelated = behavior["task"] == "setback-writing"
    behavior.loc[unrelated, "score"] = rng.normal(size=int(unrelated.sum()))
    table = validity_tables(selfreport, behavior, targets, n_boot=200)["validity_incremental"].set_index("task")
    assert table.loc["setback-writing", "conclusion"] == EQUIVALENT
    # the same null with 30 personas: not significant, but no equivalence either
    small = [frame[frame["persona"].isin([f"p{i:03d}" for i in range(30)])] for frame in (selfreport, behavior, targets)]
    table = validity_tables(*small, n_boot=200)["validity_incremental"].set_index("task")
    assert table.loc["setback-writing", "conclusion"] == INCONCLUSIVE
    assert "not equivalent to 0" in table.loc["setback-writing", "reason"]
    with pytest.raises(PsytestError, match="--equivalence-bound 1.5"):
        validity_tables(selfreport, behavior, targets, n_boot=200, equivalence_bound=1.5)


def test_conclusion_rules_name_every_label_once():
    labels = [label for label, _ in conclusion_rules()]
    assert sorted(labels) == sorted(CONCLUSIONS) and len(set(labels)) == len(labels)
    assert "0.3" in dict(conclusion_rules(0.3))[EQUIVALENT]


def test_disattenuation_floor_interval_and_no_clipping():
    notes: list[str] = []
    out = disattenuate(0.11, 30, 0.8, 0.15, notes=notes)
    assert out["r_corrected"] is None and out["r_corrected_low"] is None
    assert notes == ["not corrected for attenuation: reliability below the floor 0.5 (behaviour 0.15)"]
    notes = []
    out = disattenuate(0.3, 40, 0.8, 0.6, notes=notes)
    factor = math.sqrt(0.8 * 0.6)
    z, half = math.atanh(0.3), 1.959963984540054 / math.sqrt(39)
    assert out["r_corrected"] == pytest.approx(0.3 / factor)
    assert out["r_corrected_low"] == pytest.approx(math.tanh(z - half) / factor)
    assert out["r_corrected_high"] == pytest.approx(math.tanh(z + half) / factor)
    assert notes == []
    notes = []
    out = disattenuate(0.6, 40, 0.55, 0.5, notes=notes)
    assert out["r_corrected"] == pytest.approx(0.6 / math.sqrt(0.275)) and out["r_corrected"] > 1
    assert "beyond +-1 (not clipped)" in notes[0]
    assert disattenuate(0.3, 40, 0.7, 0.45, floor=0.4)["r_corrected"] is not None


@pytest.mark.parametrize("bound", ["1.5", "0", "nan", "-0.2"])
def test_cli_refuses_a_bad_equivalence_bound_in_one_line(bound, tmp_path):
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "psychometrics", "validity", "-s", str(tmp_path / "q"), "-b",
                             str(tmp_path / "b"), "--equivalence-bound", bound], capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("psytest: error: --equivalence-bound ") and "between 0 and 1" in result.stderr
