"""Norm comparisons and MTMM against R (tests/reference/norms_mtmm.R); keys files and item data."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from psychometrics.conditions import CONDITION_FIELDS
from psychometrics.errors import PsytestError
from psychometrics.inventories.model import inventory_from_data
from psychometrics.inventories.item_data import inventory_from_keys, keyed, load_item_data
from psychometrics.statistics.mtmm import mtmm
from psychometrics.statistics.norms import bootstrap_mean_ci, compare_to_norm, hedges_g

REFERENCE = Path(__file__).parent / "reference"
GOLDEN = json.loads((REFERENCE / "golden" / "norms_mtmm.json").read_text())


def test_hedges_g_matches_effectsize():
    model, human = GOLDEN["model"], GOLDEN["human"]
    g, low, high = hedges_g(statistics.mean(model), statistics.stdev(model), len(model),
                            statistics.mean(human), statistics.stdev(human), len(human))
    assert g == pytest.approx(GOLDEN["hedges_g"], abs=1e-10)
    # effectsize finds the noncentral-t bounds with optim (abstol 1e-9); we solve them exactly.
    assert low == pytest.approx(GOLDEN["hedges_ci_low"], abs=1e-6)
    assert high == pytest.approx(GOLDEN["hedges_ci_high"], abs=1e-6)


def test_comparison_with_a_norm_of_unknown_size_matches_t_test():
    model = np.array(GOLDEN["model"])
    result = compare_to_norm(model, "norm", GOLDEN["norm_mean"], GOLDEN["norm_sd"], None)
    assert result.effect == "d_vs_norm" and "unknown" in result.note
    assert result.ci_low == pytest.approx(GOLDEN["d_ci_low"], abs=1e-10)
    assert result.ci_high == pytest.approx(GOLDEN["d_ci_high"], abs=1e-10)
    assert result.t_score == pytest.approx(50 + 10 * (model.mean() - 3.64) / 0.72)
    assert 0 < result.percentile < 100


def test_norm_comparison_edge_cases():
    assert compare_to_norm(np.array([np.nan]), "g", 3, 1, 100) is None
    single = compare_to_norm(np.array([4.0]), "g", 3.0, 0.5, 100)
    assert single.z == 2.0 and single.percentile == pytest.approx(97.72498680518208)
    assert single.ci_low is None and "one scored cell" in single.note
    known = compare_to_norm(np.array(GOLDEN["model"]), "g", 3.2, 0.8, 300)
    assert known.effect == "hedges_g"


def test_bootstrap_ci_is_seeded_and_covers_the_mean():
    values = np.array(GOLDEN["model"])
    low, high = bootstrap_mean_ci(values, seed=1)
    assert (low, high) == bootstrap_mean_ci(values, seed=1)
    assert low < values.mean() < high
    assert bootstrap_mean_ci(np.array([3.0])) == (None, None)


def _toy_inventory(ident: str) -> object:
    return inventory_from_data(
        {
            "id": ident, "name": ident, "version": "1", "citation": "-", "licence": "-", "instructions": "-",
            "response_scale": {"min": 1, "max": 5, "labels": {i: str(i) for i in range(1, 6)}},
            "items": [{"id": f"i{k}", "text": f"item {ident} {k}"} for k in range(1, 4)],
            "scales": [{"id": f"t{k}", "name": f"t{k}", "trait": f"trait{k}", "items": [f"i{k}"]} for k in range(1, 4)],
        },
        ident,
    )


def test_mtmm_correlations_and_campbell_fiske_match_r():
    data = pd.DataFrame(GOLDEN["mtmm_scores"])
    inventories = [_toy_inventory("a"), _toy_inventory("b")]
    rows = []
    for index in range(len(data)):
        cell = {field: "x" for field in CONDITION_FIELDS} | {"sample": index}
        for method in ("a", "b"):
            for k in range(1, 4):
                rows.append({**cell, "inventory": method, "kind": "scale", "scale": f"t{k}",
                             "score": data[f"{method}_t{k}"][index]})
    table, summary = mtmm(pd.DataFrame(rows), inventories)
    names = list(data.columns)
    reference = np.array(GOLDEN["mtmm_cor"])
    for row in table.itertuples():
        i = names.index(f"{row.method_a}_{row.trait_a.replace('trait', 't')}")
        j = names.index(f"{row.method_b}_{row.trait_b.replace('trait', 't')}")
        assert row.r == pytest.approx(reference[i][j], abs=1e-12)
    assert sorted(table["kind"].value_counts().items()) == [
        ("convergent", 3), ("heterotrait-heteromethod", 6), ("heterotrait-monomethod", 6)]
    criterion1 = summary.iloc[0]
    assert criterion1["comparisons"] == 3
    assert criterion1["passed"] == sum(p < 0.05 for p in GOLDEN["convergent_p"])


def test_mtmm_needs_two_methods_sharing_traits():
    table, summary = mtmm(pd.DataFrame(columns=["inventory", "kind", "scale", "score", *CONDITION_FIELDS]),
                          [_toy_inventory("a")])
    assert table.empty and summary.empty


# -- keys files and item data ---------------------------------------------------------------------


BFI_KEYS = """
response_range: [1, 6]
scales:
  A: [-A1, A2, A3, A4, A5]
  C: [C1, C2, C3, -C4, -C5]
  E: [-E1, -E2, E3, E4, E5]
  N: [N1, N2, N3, N4, N5]
  O: [O1, -O2, O3, O4, -O5]
traits: {A: agreeableness, C: conscientiousness, E: extraversion, N: neuroticism, O: openness}
"""


def test_keys_file_and_item_data(tmp_path):
    keys = tmp_path / "bfi-keys.yaml"
    keys.write_text(BFI_KEYS)
    inventory = inventory_from_keys(keys)
    assert [s.id for s in inventory.scales] == ["A", "C", "E", "N", "O"]
    assert {i.id for i in inventory.items if i.reverse_keyed} == {"A1", "C4", "C5", "E1", "E2", "O2", "O5"}
    data = load_item_data(REFERENCE / "data" / "bfi25.csv", inventory)
    assert data.shape == (2436, 25)
    flipped = keyed(data, inventory)
    assert (flipped["A1"] == 7 - data["A1"]).all() and (flipped["A2"] == data["A2"]).all()


@pytest.mark.parametrize(
    "keys, message",
    [
        ("response_range: [1]\nscales: {A: [a]}\n", "response_range must be two whole numbers"),
        ("response_range: [1, 5]\nscales: {}\n", "scales must map each scale"),
        ("response_range: [1, 5]\nscales: {A: [a, -a]}\n", "item 'a' is keyed both ways"),
        ("response_range: [1, 5]\nscales: {A: [a]}\ncolour: red\n", "unknown field 'colour'"),
        ("response_range: [1, 5]\nscales: {A: [a], B: [a]}\n", "item 'a' is listed also in scale 'A'"),
    ],
)
def test_bad_keys_files(tmp_path, keys, message):
    path = tmp_path / "keys.yaml"
    path.write_text(keys)
    with pytest.raises(PsytestError, match=message):
        inventory_from_keys(path)


@pytest.mark.parametrize(
    "csv_text, message",
    [
        ("a,b\n1,2\n", "no column for item(s) c"),
        ("a,b,c\n1,2,x\n", "row 2, column c: 'x' is not a number"),
        ("a,b,c\n1,2,3\n1,9,3\n", "row 3, column b: value 9 is outside the response range 1..5"),
        ("a,b,c\n", "no data rows"),
    ],
)
def test_bad_item_data(tmp_path, csv_text, message):
    keys = tmp_path / "k.yaml"
    keys.write_text("response_range: [1, 5]\nscales: {S: [a, -b, c]}\n")
    data = tmp_path / "d.csv"
    data.write_text(csv_text)
    with pytest.raises(PsytestError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_item_data(data, inventory_from_keys(keys))


def test_missing_cells_are_nan(tmp_path):
    keys = tmp_path / "k.yaml"
    keys.write_text("response_range: [1, 5]\nscales: {S: [a, b]}\n")
    data = tmp_path / "d.csv"
    data.write_text("a,b,extra\n1,,zz\nNA,4,zz\n")
    frame = load_item_data(data, inventory_from_keys(keys))
    assert frame.isna().sum().sum() == 2 and list(frame.columns) == ["a", "b"]
