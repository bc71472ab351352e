"""The economic task estimators against R (tests/reference/econ_tasks.R, golden/econ_tasks.json): Kirby's
consistency estimate of the discount rate k over his 27 items and of the loss-aversion coefficient over the
12 shipped gambles (clean, noisy, all-sooner and all-later choice patterns), and the expected-value optimum
of the cold Columbia Card Task in each of Figner et al.'s eight round settings."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from psychometrics.behavior.kinds import get_kind
from psychometrics.behavior.kinds_trials import cct_expected_value, cct_optimum, threshold_estimate
from psychometrics.behavior.task import TASK_DIR, load_task

REFERENCE = Path(__file__).resolve().parent / "reference"
GOLDEN = json.loads((REFERENCE / "golden" / "econ_tasks.json").read_text())


def _values(task_id: str) -> list[float]:
    """Item indifference values in file order, from the shipped task (Kirby's order; the gambles' order)."""
    task = load_task(TASK_DIR / f"{task_id}.yaml")
    variant = task.variants[0]
    kind = get_kind(task.kind)
    return [kind.value(task, variant, item.id) for item in variant.items]


VALUES = {"kirby": _values("delay-discounting"), "gambles": _values("loss-aversion")}


def _patterns():
    with open(REFERENCE / "data" / "econ-choices.csv", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("row", GOLDEN["thresholds"], ids=lambda r: f"{r['measure']}-{r['pattern']}")
def test_threshold_matches_r(row):
    choices = [int(c) for c in row["choices"]]
    theta, consistency = threshold_estimate(VALUES[row["measure"]], choices)
    assert math.log(theta) == pytest.approx(row["log_theta"], abs=1e-9)
    assert consistency == pytest.approx(row["consistency"])


def test_r_read_the_same_items_and_patterns():
    assert len(VALUES["kirby"]) == 27 and len(VALUES["gambles"]) == 12
    assert {(r["measure"], r["choices"]) for r in _patterns()} == {(r["measure"], r["choices"]) for r in GOLDEN["thresholds"]}
    noisy = [r for r in GOLDEN["thresholds"] if r["consistency"] < 1]
    assert noisy, "some patterns must be inconsistent, or the tie rule is untested"


@pytest.mark.parametrize("row", GOLDEN["cct"], ids=lambda r: f"{r['gain']}-{r['loss']}-{r['n']}")
def test_cct_optimum_matches_r(row):
    assert cct_optimum(32, row["n"], row["gain"], row["loss"]) == row["optimum"]
    assert cct_expected_value(row["optimum"], 32, row["n"], row["gain"], row["loss"]) == pytest.approx(row["ev_optimum"])
    assert cct_expected_value(10, 32, row["n"], row["gain"], row["loss"]) == pytest.approx(row["ev_10"])
