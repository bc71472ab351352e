"""The fast paths that let a million stored responses be analysed (benchmarks/store_memory.py) give
exactly what the straightforward computations give.

* ``responses_frame`` reads columns straight from SQLite and shares repeated strings: the frame equals
  one built from :meth:`RunStore.rows` row by row.
* Resampling flips count pairs per group instead of listing every pair of samples (quadratic).
* Response-style rates find each level's rows by sorting once instead of scanning every row per level.
* Acquiescence counts (positive, reverse-keyed) answer pairs per cell and scale instead of merging.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from psychometrics.statistics import design_effects, response_styles
from psychometrics.conditions import CONDITION_FIELDS, FACTORS, ordered_levels, same_level
from psychometrics.design.plan import Design
from psychometrics.inventories.library import resolve_inventory
from psychometrics.models.simulated import SimulatedRespondent
from psychometrics.run.directory import administer
from psychometrics.statistics.frames import TOLERANCE, valid_answers
from psychometrics.run.frame import responses_frame
from psychometrics.run.store import RunStore

COLUMNS = ["request_id", "inventory", "item_id", "item_index", *CONDITION_FIELDS, "outcome", "parse_method", "position",
           "value", "expected_value", "entropy", "option_mass", "raw_reply", "latency_s", "error"]


def frame_row_by_row(store: RunStore) -> pd.DataFrame:
    records = []
    for row in store.rows():
        record = {name: getattr(row, name) for name in COLUMNS if name not in CONDITION_FIELDS}
        record.update({name: row.condition.get(name) for name in CONDITION_FIELDS})
        records.append(record)
    frame = pd.DataFrame.from_records(records, columns=COLUMNS)
    # one temperature is not a factor of the run: no column (its tables are as before temperature was one)
    return frame.drop(columns="temperature") if frame["temperature"].nunique() <= 1 else frame


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two small runs covering probs and text, personas, several items per request, refusals and errors."""
    root = tmp_path_factory.mktemp("runs")
    inventories = [resolve_inventory("mini-ipip"), resolve_inventory("sd3")]
    designs = {
        "probs_text_personas": ("sim/e=1,refusal=0.1,seed=2", Design(
            option_orders=["original", "reversed"], modes=["text", "probs"], samples=3, temperature=0.7,
            personas="trait-shaping", persona_ids=None)),
        "multi_item_reask": ("sim/e=-1,refusal=0.3,seed=3", Design(
            items_per_request=3, item_orders=2, samples=2, temperature=[0.3, 0.7], invalid="reask:1")),
    }
    out = {}
    for name, (model, design) in designs.items():
        administer(SimulatedRespondent(model), inventories, design, root / name, concurrency=4)
        with RunStore(root / name / "responses.sqlite") as store:
            out[name] = (responses_frame(store), frame_row_by_row(store))
    return out, inventories


def test_responses_frame_equals_the_row_by_row_frame(runs):
    frames, _ = runs
    for fast, slow in frames.values():
        assert len(fast) > 100
        pd.testing.assert_frame_equal(fast, slow)
    fast = frames["probs_text_personas"][0]
    assert fast["persona"].nunique() > 1 and set(fast["mode"]) == {"text", "probs"}
    assert "temperature" not in fast and set(frames["multi_item_reask"][0]["temperature"]) == {0.3, 0.7}


def test_repeated_strings_are_shared(runs):
    fast = runs[0]["probs_text_personas"][0]
    items = fast["item_id"].to_numpy(dtype=object)
    first = {}
    for value in items:
        assert first.setdefault(value, value) is value  # one object per distinct item id


def _listed(frame, keys, within, tau):
    pairs = design_effects._pairs(frame, keys, within)
    return len(pairs), int(((pairs["value_a"] - pairs["value_b"]).abs() > tau + TOLERANCE).sum())


@pytest.mark.parametrize("seed", range(40))
def test_counted_pair_flips_equal_listed_pairs(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 90))
    unique_samples = seed % 2 == 0  # the counting path; otherwise rows share a sample and pairs are listed
    frame = pd.DataFrame({
        "item_id": rng.choice(["a", "b", None], n), "option_order": rng.choice(["original", "reversed"], n),
        "template": rng.choice(["numbered", None], n),
        "sample": rng.permutation(n) if unique_samples else rng.integers(0, 6, n),
        "value": rng.choice([1.0, 2.0, 2.5, 3.0, 3.0000001, 3.5, 4.0, 5.0, 1.73], n),
    })
    keys = ["item_id", "option_order", "template"]
    for tau in (0.0, 0.3, 0.5, 1.0, -1.0):
        assert design_effects._pair_flips(frame, keys, "sample", tau) == _listed(frame, keys, "sample", tau)


def test_counted_pair_flips_on_a_run(runs):
    frames, _ = runs
    valid = valid_answers(frames["probs_text_personas"][0])
    keys = ["item_id", "option_order", "template", "persona", "wording", "item_order"]
    for _mode, part in valid.groupby("mode"):
        for tau in (0.0, 0.5):
            pairs, flips = design_effects._pair_flips(part, keys, "sample", tau)
            assert (pairs, flips) == _listed(part, keys, "sample", tau) and pairs > 0


@pytest.mark.parametrize("pool", [
    [0, 1, 2, 3], ["original", "reversed", None], [1, "1", 2, None, "x"], [1.0, 2, "2"],
    ["paraphrase2", "paraphrase10", "original"],
])
def test_level_rows_equal_a_scan_of_every_row(pool):
    rng = np.random.default_rng(len(pool))
    for n in (0, 1, 7, 60):
        column = pd.Series([pool[i] for i in rng.integers(0, len(pool), n)], dtype=object)
        levels = ordered_levels(column, "wording")
        scanned = [np.flatnonzero(column.map(lambda v, lv=lv: same_level(v, lv)).to_numpy(dtype=bool))
                   for lv in levels]
        found = response_styles._level_rows(column, levels)
        assert len(found) == len(scanned)
        for a, b in zip(found, scanned):
            np.testing.assert_array_equal(a, b)


def test_acquiescence_pair_counts_equal_an_explicit_merge(runs):
    frames, inventories = runs
    responses = frames["probs_text_personas"][0]
    table = response_styles.acquiescence(responses, inventories, per_scale=True)
    by_id = {inv.id: inv for inv in inventories}
    cells = [c for c in FACTORS if c in responses.columns]
    checked = 0
    for row in table.itertuples():
        if pd.isna(row.n_pairs):
            continue
        inventory = by_id[row.inventory]
        scales = row.scales_used.split(";") if row.scale == "all" else [row.scale]
        part = valid_answers(responses[(responses["inventory"] == row.inventory) & (responses["mode"] == row.mode)])
        part = part.assign(scale=part["item_id"].map(inventory.scale_of_item))
        part = part[part["scale"].isin(scales)]
        reverse = part["item_id"].map({i.id: i.reverse_keyed for i in inventory.items}).astype(bool)
        filled = part.fillna({c: "\x00NA" for c in cells})
        pairs = filled[~reverse].merge(filled[reverse], on=[*cells, "scale"], suffixes=("_pos", "_rev"))
        mid = row.midpoint
        agree = ((pairs["value_pos"] > mid + TOLERANCE) & (pairs["value_rev"] > mid + TOLERANCE)).sum()
        disagree = ((pairs["value_pos"] < mid - TOLERANCE) & (pairs["value_rev"] < mid - TOLERANCE)).sum()
        assert row.n_pairs == len(pairs) > 0
        assert (row.agree_both, row.disagree_both) == (agree, disagree)
        assert row.agree_both_rate == pytest.approx(agree / len(pairs), abs=1e-15)
        checked += 1
    assert checked >= 10
