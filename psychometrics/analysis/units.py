"""The unit of analysis, defined once: what a respondent is, what a design cell is.

A **respondent** is one persona answering one sample (``persona x sample``), as in Serapio-Garcia et al.
(2023, "Personality traits in large language models"), where each persona description is a simulated
respondent. A **design cell** is one combination of the measurement conditions the researcher chose
(option order x template x wording x item order): the same respondent measured under another cell is the
same person asked differently, not another person. The answer mode (text or option probabilities)
stratifies everything: the two are different measurements.

Statistics of individual differences (reliability, item-total correlations, EFA, CFA, MTMM, test-retest)
are computed across respondents within one design cell, never across cells: alpha across option orders
would measure how the design moves the answers, not how consistently items measure a trait. What varies
across cells is reported as *stability* (variance shares in score points, answer flips, position bias,
acquiescence, the range of the cell means).

Every table says which unit its rows were computed over (the column ``unit``), and ``summary.json``
carries :data:`UNIT` under ``unit``.
"""

from __future__ import annotations

#: What identifies a respondent.
RESPONDENT_FIELDS: tuple[str, ...] = ("persona", "sample")

#: What identifies a design cell (the measurement conditions); the answer mode stratifies separately.
#: ``temperature`` is a column only of runs that vary it (:func:`psychometrics.conditions.condition_columns`).
CELL_FIELDS: tuple[str, ...] = ("option_order", "template", "wording", "item_order", "temperature")

#: The fewest respondents in a cell for which reliability (alpha, lambda-6, split-half, item-total) is
#: computed. Below it a coefficient's sampling error is so large that it says nothing (the Feldt interval
#: of alpha with 5 respondents and 4 items spans most of [-1, 1]).
MIN_RESPONDENTS_RELIABILITY = 5

#: The fewest respondents for the factor analyses is ``n_items + 1`` (a correlation matrix of full rank)
#: and never fewer than this.
MIN_RESPONDENTS_STRUCTURE = 10

#: The unit in words, as reports and ``summary.json`` state it.
UNIT = {
    "respondent": "persona x sample",
    "design_cell": "option order x template x wording x item order",
    "strata": "answer mode",
    "individual_differences": "reliability, item-total, EFA, CFA, MTMM and test-retest are computed across "
                              "respondents within each design cell",
    "stability": "what varies across design cells is reported as stability: variance shares in score points, "
                 "answer flips, position bias, acquiescence, range of the cell means",
}

#: The value of the ``unit`` column of tables computed across respondents within a design cell.
WITHIN_CELL = "respondents (persona x sample) within a design cell"
#: ... of tables computed across design cells (stability).
ACROSS_CELLS = "design cells (stability of the measurement)"
#: ... of tables with one row per respondent and cell.
PER_RESPONDENT = "one respondent (persona x sample) in one design cell"
#: ... of summaries over respondents, each respondent's score first averaged over its design cells.
OVER_RESPONDENTS = "respondents (persona x sample), each averaged over its design cells"
#: ... of tables of stored answers (one row per answer, or counts of answers).
ANSWERS = "stored answers"
#: ... of every table of item data (rows are people).
PERSON = "person"


def too_few_respondents(n: int, needed: int, what: str) -> str:
    """The one plain sentence shown where a statistic is absent for lack of respondents."""
    return (f"{what} not computed: {n} respondent(s) in a design cell at most, {needed} needed; a respondent is "
            "persona x sample, so add personas (--personas) or samples (--samples at a temperature above 0)")


def min_respondents_structure(n_items: int) -> int:
    """The fewest respondents in a cell for EFA, CFA and omega of ``n_items`` items."""
    return max(MIN_RESPONDENTS_STRUCTURE, n_items + 1)


def respondent_scores(scores, keys: tuple[str, ...] = ("inventory", "mode", "kind", "scale"),
                      respondent: tuple[str, ...] = RESPONDENT_FIELDS):
    """Each respondent's score averaged over the design cells it was measured in.

    ``scores`` has one row per respondent x design cell x scale (``Run.scores()``); the result has one row
    per ``keys`` x respondent with ``score`` (the mean over cells, missing cells skipped) and ``n_cells``.
    Intervals of a model's score are taken over these rows: respondents are the sampled units, design cells
    are conditions the researcher fixed. ``respondent``: the columns that identify one (item data: the
    person)."""
    present = [k for k in keys if k in scores.columns]
    who = [f for f in respondent if f in scores.columns]  # a grouping without them is one respondent
    if not [*present, *who]:
        import pandas as pd

        return pd.DataFrame({"score": [scores["score"].mean()], "n_cells": [int(scores["score"].count())]})
    grouped = scores.groupby([*present, *who], sort=False, dropna=False)["score"]
    return grouped.agg(score="mean", n_cells="count").reset_index()
