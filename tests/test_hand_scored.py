"""The scorers against careful hand scoring of real model replies (``tests/data/hand_scored/``).

Each entry is a stored conversation of a real local model (Qwen2.5 0.5B or SmolLM2 135M) and the score a
person gave it after reading it whole (:mod:`psychometrics.testing.hand_scored`). Entries marked
``fixed`` are replies the scorer once misread; each must now be read as the person read it. The agreement
over the whole set must reach 97%.
"""

from __future__ import annotations

import pytest

from psychometrics.testing.hand_scored import agreement, load_entries, read_entry

MIN_ENTRIES = 200
MIN_AGREEMENT = 0.97
READINGS = [read_entry(entry) for entry in load_entries()]


def test_the_set_is_large_and_covers_both_local_models():
    models = {r.model for r in READINGS}
    assert len(READINGS) >= MIN_ENTRIES
    assert {"local/qwen2.5-0.5b", "local/smollm2-135m"} <= models


def test_agreement_with_hand_scoring_reaches_97_percent():
    table = agreement(READINGS)
    overall = table[table["group"] == "all"].iloc[0]
    disagreements = [r for r in READINGS if not r.agrees]
    assert overall["share"] >= MIN_AGREEMENT, disagreements


@pytest.mark.parametrize("reading", [r for r in READINGS if r.fixed],
                         ids=lambda r: f"{r.task}-{r.model}-{r.variant}")
def test_every_fixed_misreading_stays_fixed(reading):
    assert reading.agrees, (reading.fixed, reading)
