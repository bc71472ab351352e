"""The unit of analysis (psychometrics.analysis.units): a respondent is persona x sample, never a design cell.

(a) A run whose only variation is the design (one persona, one sample, option orders x templates) gets no
reliability, omega, EFA, CFA, MTMM or test-retest number anywhere: not in ``analyze_run``'s tables, not in
``psytest report``'s CSVs nor its ``summary.json``; each table says why in one sentence instead.
(b) A run with personas x samples gets one reliability row per design cell, equal to ``psych::alpha`` on
that cell's respondents x items matrix (``tests/reference/units.R``, ``golden/units.json``).
(c) Every CSV a run analysis or report writes has a ``unit`` column, and ``summary.json`` a ``unit`` key.
"""

from __future__ import annotations

import json
import math
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from psychometrics.analysis.tables import analyze_run, write_tables
from psychometrics.analysis.units import CELL_FIELDS, UNIT
from psychometrics.design.plan import Design
from psychometrics.inventories.library import resolve_inventory
from psychometrics.models.simulated import SimulatedRespondent
from psychometrics.run.directory import administer

REFERENCE = Path(__file__).parent / "reference"
ITEMS_CSV = REFERENCE / "data" / "units-items.csv"
GOLDEN = REFERENCE / "golden" / "units.json"

#: Every numeric result of the analyses of individual differences (none may appear in a cell-only run).
INDIVIDUAL_DIFFERENCES = {
    "reliability": ["alpha", "alpha_ci_low", "alpha_ci_high", "std_alpha", "average_r", "lambda6", "omega_total",
                    "omega_hierarchical", "split_half_min", "split_half_mean", "split_half_max"],
    "item_total": ["r_drop", "alpha_if_dropped"],
    "efa_fit": ["rmsr", "rmsea", "tli", "congruence_mean", "congruence_min"],
    "efa_loadings": ["loading"],
    "cfa_fit": ["chisq", "df", "pvalue", "cfi", "tli", "rmsea", "srmr", "aic", "bic"],
    "retest": ["icc2_1", "ci_low", "ci_high", "icc3_1", "icc2_k"],
    "mtmm": ["r", "p"],
    "mtmm_summary": ["passed", "share_passed"],
}

# Two instruments that share the Big Five (so MTMM would be computed), one persona and one sample
# (temperature 0), and six design cells: option order x template.
CELL_ONLY_DESIGN = dict(option_orders=["original", "reversed"], templates=["numbered", "lettered", "worded"])
CELL_ONLY_MODEL = "sim/seed=7,position_first=1,acquiescence=0.5,noise=0.5"

# Twelve different people (persona_spread) x two samples in two design cells (the option orders).
RESPONDENT_MODEL = "sim/seed=11,persona_spread=1,noise=0.6"
RESPONDENT_DESIGN = dict(option_orders=["original", "reversed"], personas="neutral-biographies",
                         persona_ids=[f"bio{k:02d}" for k in range(1, 13)], samples=2, temperature=1.0)
ITEM_COLUMNS = ["persona", "sample", "option_order", "item_id", "scale", "reverse_keyed", "value"]


@pytest.fixture(scope="module")
def cell_only_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cells") / "run"
    inventories = [resolve_inventory("bfi-44"), resolve_inventory("mini-ipip")]
    administer(SimulatedRespondent(CELL_ONLY_MODEL), inventories, Design(**CELL_ONLY_DESIGN), out)
    return out


def make_respondent_run(out: Path) -> Path:
    administer(SimulatedRespondent(RESPONDENT_MODEL), [resolve_inventory("mini-ipip")], Design(**RESPONDENT_DESIGN),
               out)
    return out


@pytest.fixture(scope="module")
def respondent_run(tmp_path_factory) -> Path:
    return make_respondent_run(tmp_path_factory.mktemp("respondents") / "run")


def item_answers(run: Path) -> pd.DataFrame:
    """The run's raw answers with each item's scale and keying, as ``units.R`` reads them."""
    from psychometrics.run.owner import open_run

    run_ = open_run(run)
    inventory = run_.inventories[0]
    responses = run_.answers().responses
    frame = responses.assign(scale=responses["item_id"].map(inventory.scale_of_item),
                             reverse_keyed=responses["item_id"].map({i.id: i.reverse_keyed for i in inventory.items}))
    frame = frame[frame["outcome"] == "valid"][ITEM_COLUMNS]
    return frame.sort_values(ITEM_COLUMNS[:4]).reset_index(drop=True)


@lru_cache(maxsize=None)
def golden() -> dict:
    return json.loads(GOLDEN.read_text(encoding="utf-8"))


def numbers(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    present = [c for c in columns if c in frame.columns]
    return frame[present].apply(pd.to_numeric, errors="coerce")


def assert_no_individual_differences(tables: dict[str, pd.DataFrame], where: str) -> None:
    for name, columns in INDIVIDUAL_DIFFERENCES.items():
        table = tables.get(name)
        if table is None or table.empty:
            continue
        values = numbers(table, columns)
        assert values.isna().all().all(), f"{where}: {name} has numbers computed over design cells: {values.dropna(how='all')}"


# ---------------------------------------------------------------------------------------------------
# (a) a design-cell-only run


def test_a_design_cell_only_run_gets_no_reliability_or_structure(cell_only_run):
    tables = analyze_run(cell_only_run)
    assert_no_individual_differences(tables, "analyze_run")
    for name in ("reliability", "efa_fit", "cfa_fit"):
        table = tables[name]
        # one plain sentence per inventory x mode, not one per scale per cell
        assert len(table) == 2 and sorted(table["inventory"]) == ["bfi-44", "mini-ipip"], name
        assert table["note"].str.contains("1 respondent").all() and table["note"].str.contains("--personas").all()
        assert (table["n_cells"] == 6).all() and (table["n_respondents"] == 1).all()
    assert tables["item_total"].empty and tables.get("efa_loadings", pd.DataFrame()).empty
    assert tables["retest"]["note"].str.contains("one sample").all() and len(tables["retest"]) == 2
    assert len(tables["mtmm"]) == 1 and "MTMM not computed" in tables["mtmm"]["note"].iloc[0]
    summary = tables["score_summary"]
    assert (summary["n_respondents"] == 1).all() and (summary["n_cells"] == 6).all()
    assert summary["ci_low"].isna().all() and summary["note"].str.contains("one respondent").all()
    assert summary["sd_over_cells"].notna().any()  # what is left to say across cells is stability
    assert {"option_order", "template"} <= set(tables["variance_decomposition"]["source"])


def test_a_report_of_a_design_cell_only_run_says_so(cell_only_run, tmp_path):
    from psychometrics.report import build_report

    paths = build_report(cell_only_run, tmp_path / "report", dpi=40)
    csvs = {p.stem: pd.read_csv(p) for p in paths.out_dir.glob("*.csv")}
    assert_no_individual_differences(csvs, "report CSVs")
    summary = json.loads(paths.summary.read_text())
    assert summary["unit"] == UNIT
    assert [row["inventory"] for row in summary["reliability"]] == ["bfi-44", "mini-ipip"]
    for row in summary["reliability"]:
        assert row["alpha_median"] is None and row["alpha_min"] is None and row["omega_total_median"] is None
        assert row["design_cells"] == 0 and "1 respondent" in row["note"]
        assert row.get("retest_icc2_1_median") is None


def test_a_by_without_persona_and_sample_never_makes_cells_respondents(tmp_path):
    """Grouping only by design factors leaves one respondent per cell: no alpha, whatever the data."""
    run = tmp_path / "run"
    administer(SimulatedRespondent(RESPONDENT_MODEL), [resolve_inventory("mini-ipip")],
               Design(**{**RESPONDENT_DESIGN, "persona_ids": ["bio01", "bio02", "bio03"], "samples": 1}), run)
    assert_no_individual_differences(analyze_run(run, by=["option_order"]), "--by option_order")
    assert_no_individual_differences(analyze_run(run, by=["option_order", "persona"]), "--by option_order persona")


# ---------------------------------------------------------------------------------------------------
# (b) within-cell reliability equals psych::alpha on the cell's matrix


def test_b_within_cell_alpha_matches_r(respondent_run):
    answers = item_answers(respondent_run)
    reference = pd.read_csv(ITEMS_CSV, keep_default_na=False, na_values=[""])
    # the golden values apply: the run is the one R read
    pd.testing.assert_frame_equal(answers.astype(str), reference[ITEM_COLUMNS].astype(str))
    tables = analyze_run(respondent_run)
    reliability = tables["reliability"].set_index(["option_order", "scale"])
    compared = 0
    for row in golden()["alpha"]:
        ours = reliability.loc[(row["option_order"], row["scale"])]
        assert ours["n_respondents"] == row["n"] == 24
        for column, theirs in (("alpha", "raw_alpha"), ("std_alpha", "std_alpha"), ("lambda6", "g6"),
                               ("average_r", "average_r"), ("alpha_ci_low", "feldt_lower"),
                               ("alpha_ci_high", "feldt_upper")):
            assert ours[column] == pytest.approx(row[theirs], abs=1e-10), (row["option_order"], row["scale"], column)
            compared += 1
    assert compared == 2 * 5 * 6
    for column in CELL_FIELDS:  # the rows say which cell they belong to (one temperature: not a column)
        if column == "temperature":
            assert column not in tables["reliability"]
        else:
            assert tables["reliability"][column].notna().all()
    # EFA and CFA per cell too (24 respondents > 20 items)
    assert sorted(tables["efa_fit"]["option_order"]) == ["original", "reversed"]
    assert tables["cfa_fit"]["chisq"].notna().all() and len(tables["cfa_fit"]) == 2
    # retest: the 12 personas are the targets, one ICC per scale per cell
    retest = tables["retest"]
    assert len(retest) == 2 * 5 and (retest["n_targets"] == 12).all() and retest["icc2_1"].notna().all()


def test_b_a_cell_with_too_few_respondents_is_left_out_and_named_once(respondent_run):
    from psychometrics.analysis.tables import _within_cell_item_tables
    from psychometrics.conditions import CONDITION_FIELDS
    from psychometrics.run.owner import open_run

    run = open_run(respondent_run)
    responses = run.answers().responses
    # the reversed cell keeps two personas x two samples: 4 respondents, one fewer than reliability needs
    keep = ~((responses["option_order"] == "reversed") & ~responses["persona"].isin(["bio01", "bio02"]))
    tables = _within_cell_item_tables(responses[keep], run.inventories, CONDITION_FIELDS, structure=True,
                                      reference_loadings=None)
    reliability = tables["reliability"]
    computed = reliability[reliability["scale"].notna()]
    assert set(computed["option_order"]) == {"original"} and len(computed) == 5
    assert computed["alpha"].notna().all()
    named = reliability[reliability["scale"].isna()]
    assert len(named) == 1 and named["n_respondents"].iloc[0] == 4
    assert "in 1 of 2 design cells" in named["note"].iloc[0]
    assert set(tables["efa_fit"]["option_order"]) == {"original"}


def test_b_score_summary_intervals_are_over_respondents(respondent_run):
    tables = analyze_run(respondent_run)
    summary = tables["score_summary"]
    scales = summary[summary["kind"] == "scale"].set_index("scale")
    scores = tables["scores"][tables["scores"]["kind"] == "scale"]
    for scale, row in scales.iterrows():
        part = scores[scores["scale"] == scale]
        means = part.groupby(["persona", "sample"])["score"].mean()
        assert row["n_respondents"] == 24 and row["n_cells"] == 2 and row["n"] == 48
        assert row["mean"] == pytest.approx(means.mean(), abs=1e-12)
        assert row["sd"] == pytest.approx(means.std(ddof=1), abs=1e-12)
        assert row["ci_low"] < row["mean"] < row["ci_high"]


def test_variance_components_in_score_points_match_lmer():
    from psychometrics.statistics.design_effects import variance_decomposition

    scores = pd.read_csv(REFERENCE / "data" / "sensitivity-scores.csv", keep_default_na=False, na_values=[""])
    compared = 0
    for block in golden()["lmer_sd"]:
        result = variance_decomposition(scores[scores["kind"] == "scale"], block["factors"]).set_index(["scale", "source"])
        for row in block["rows"]:
            if row["boundary"]:
                continue
            ours = result.loc[row["scale"]]
            for source, value in row["sds"].items():
                assert ours.loc[source, "component_sd"] == pytest.approx(value, rel=1e-4, abs=1e-6), (row["scale"], source)
                assert ours.loc[source, "component_sd"] == pytest.approx(math.sqrt(ours.loc[source, "variance_component"]))
                compared += 1
    assert compared >= 10


# ---------------------------------------------------------------------------------------------------
# (c) the unit is stated everywhere


def test_c_every_csv_and_summary_state_the_unit(respondent_run, cell_only_run, tmp_path):
    from psychometrics.report import build_report

    for run in (respondent_run, cell_only_run):
        written = write_tables(analyze_run(run), tmp_path / run.parent.name / "analysis")
        paths = build_report(run, tmp_path / run.parent.name / "report", dpi=40)
        for path in [*written, *paths.out_dir.glob("*.csv")]:
            frame = pd.read_csv(path)
            assert "unit" in frame.columns and frame["unit"].notna().all(), path
        assert json.loads(paths.summary.read_text())["unit"] == UNIT
    within = pd.read_csv(tmp_path / respondent_run.parent.name / "analysis" / "reliability.csv")
    assert set(within["unit"]) == {"respondents (persona x sample) within a design cell"}


def test_item_data_unit_is_the_person():
    from psychometrics.analysis.tables import analyze_item_data
    from psychometrics.inventories.item_data import inventory_from_keys, load_item_data

    keys = Path(__file__).parent / "data" / "units-keys.yaml"
    inventory = inventory_from_keys(keys)
    tables = analyze_item_data(load_item_data(REFERENCE / "data" / "bfi25.csv", inventory), inventory)
    labelled = [name for name, table in tables.items() if not table.empty]
    assert {"scores", "score_summary", "reliability", "item_total", "efa_fit", "cfa_fit"} <= set(labelled)
    for name in labelled:
        assert (tables[name]["unit"] == "person").all(), name
    summary = tables["score_summary"]
    assert (summary["n_respondents"] == summary["n"]).all() and (summary["n"] > 2000).all()
    assert np.isfinite(tables["reliability"]["alpha"]).all()


if __name__ == "__main__":  # regenerate the item answers units.R reads
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        frame = item_answers(make_respondent_run(Path(tmp) / "run"))
    frame.to_csv(ITEMS_CSV, index=False)
    print(f"wrote {ITEMS_CSV} ({len(frame)} rows)", file=sys.stderr)


def test_without_respondent_columns_the_summary_is_the_mean_over_the_rows_not_the_first():
    """`score --by option_order,mode` pools respondents: each row is a cell, and there is one respondent,
    whose score is the mean over the rows (it was the first row's score, whichever cell came first)."""
    from psychometrics.analysis.tables import score_summary

    scores = pd.DataFrame({"inventory": "mini-ipip", "mode": "text", "kind": "scale", "scale": "E",
                           "option_order": ["original", "reversed"], "score": [2.0, 4.0]})
    row = score_summary(scores).iloc[0]
    assert row["mean"] == 3.0 and row["n_respondents"] == 1 and row["n"] == 2
