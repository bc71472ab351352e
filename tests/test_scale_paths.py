"""The shortcuts that keep a half-million-answer run's report in minutes give what the plain definitions give:
spreadsheet-safe cells checked once per distinct value, figure panels named once per scale."""

from __future__ import annotations

import numpy as np
import pandas as pd

from psychometrics.analysis.tables import _cell_safe, spreadsheet_safe


def test_spreadsheet_safe_per_distinct_value_equals_cell_by_cell() -> None:
    hostile = ["=HYPERLINK(\"x\")", "@SUM(A1)", "-1.5", "+3", "plain", "\x1b[31mred", "\tlead", "‮bidi", "-x"]
    rng = np.random.default_rng(3)
    cells = [hostile[i] for i in rng.integers(0, len(hostile), 500)]
    frame = pd.DataFrame({
        "text": pd.Series(cells, dtype=object).where(rng.random(500) > 0.1, None),
        "level": ["a", "=b"] * 250,
        "number": np.arange(500.0),
        "mixed": [1, "=1+1", 2.5, None, "ok"] * 100,
        "lists": [["=x"], ["y"]] * 250,
        "clean": ["x"] * 500,
    })
    safe = spreadsheet_safe(frame)
    for column in frame:
        textual = pd.api.types.is_object_dtype(frame[column]) or pd.api.types.is_string_dtype(frame[column])
        expected = frame[column].map(_cell_safe) if textual else frame[column]
        assert safe[column].tolist() == expected.where(frame[column].notna(), frame[column]).tolist(), column
    untouched = frame[["clean", "number"]]
    assert spreadsheet_safe(untouched) is untouched
    assert safe["text"].isna().sum() == frame["text"].isna().sum() > 0
    assert (safe["level"] == "'=b").sum() == 250 and safe["clean"].eq("x").all()


def test_distribution_panels_are_counted_as_per_answer() -> None:
    from psychometrics.report.figures import response_distribution

    rng = np.random.default_rng(5)
    n = 3000
    responses = pd.DataFrame({
        "inventory": rng.choice(["bfi-44", "ipip-neo-300"], n), "scale": rng.choice(["E", "A", "C"], n),
        "mode": rng.choice(["text", "probs"], n), "value": rng.integers(1, 6, n).astype(float),
        "outcome": rng.choice(["valid", "invalid"], n, p=[0.9, 0.1]),
    })
    verdict = pd.DataFrame({"inventory": ["bfi-44"] * 3, "scale": ["E", "A", "C"],
                            "scale_name": ["Extraversion and a long name", "Agreeableness", "Conscientiousness"]})
    plot = response_distribution({"responses": responses, "verdict": verdict})
    counts = plot.data
    valid = responses[responses["outcome"] == "valid"]
    assert counts["count"].sum() == len(valid)
    for (inventory, mode, value), group in valid.groupby(["inventory", "mode", "value"]):
        rows = counts[counts["panel"].astype(str).str.startswith(f"{inventory} ({mode})")
                      & (counts["value"] == str(int(value))) & (counts["mode"] == mode)]
        assert rows["count"].sum() == len(group)
    assert any("Extraversion and a" in str(p) for p in counts["panel"].unique())
