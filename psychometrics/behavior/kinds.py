"""Scoring rules ("kinds") for behavioural tasks: render a variant, read the reply, simulate a reply.

Every kind checks a task file's kind-specific content (:meth:`Kind.validate`), fills the placeholders of
a variant's turns with the options or items in a random display order (:meth:`Kind.render`), turns the
model's replies into a score (:meth:`Kind.score`) and writes a plausible reply for the simulated
respondent (:meth:`Kind.simulate`). No LLM judge: numbers, labels, regular expressions and a lexicon.

This module is the registry (:data:`KINDS`, :func:`get_kind`) and the place to import from. The base
class, outcomes and results are in :mod:`psychometrics.behavior.kind_base`; the kinds in ``kinds_number``,
``kinds_choice``, ``kinds_text``, ``kinds_constraints``, ``kinds_items`` ``kinds_social`` and ``kinds_trials``; the reply readers in
:mod:`psychometrics.behavior.reading`; placeholder filling in :mod:`psychometrics.behavior.placeholders`;
the helpers for simulated replies in ``simulated_replies`` and ``regex_examples``.
"""

from __future__ import annotations

from psychometrics.behavior.kind_base import OUTCOMES, Kind, Rendered, Scored
from psychometrics.behavior.kinds_choice import ChoiceKind, SycophancyKind
from psychometrics.behavior.kinds_constraints import ConstraintsKind
from psychometrics.behavior.kinds_items import ClaimsKind, PlantedErrorsKind, QuizClaimKind
from psychometrics.behavior.kinds_number import NumberKind
from psychometrics.behavior.kinds_social import CalibrationKind, OpinionChangeKind, RatingConsistencyKind
from psychometrics.behavior.kinds_text import CountListKind, LengthKind, SentimentKind
from psychometrics.behavior.kinds_trials import (
    CardRoundsKind, ListedChoicesKind, ReportedOutcomeKind, StatedNumberKind,
)
from psychometrics.behavior.placeholders import MAX_OPTIONS
from psychometrics.behavior.reading.checks import CHECK_TYPES, check_passes
from psychometrics.errors import PsytestError

__all__ = [
    "CHECK_TYPES", "CalibrationKind", "CardRoundsKind", "KINDS", "ListedChoicesKind", "MAX_OPTIONS", "OUTCOMES",
    "ChoiceKind", "ClaimsKind", "ConstraintsKind", "CountListKind", "Kind", "LengthKind", "NumberKind",
    "OpinionChangeKind", "PlantedErrorsKind", "QuizClaimKind", "RatingConsistencyKind", "Rendered",
    "ReportedOutcomeKind", "Scored", "SentimentKind", "StatedNumberKind",
    "SycophancyKind", "check_passes", "get_kind",
]

KINDS: dict[str, Kind] = {
    kind.name: kind
    for kind in (NumberKind(), ChoiceKind(), SycophancyKind(), CountListKind(), LengthKind(), SentimentKind(),
                 ConstraintsKind(), PlantedErrorsKind(), ClaimsKind(), QuizClaimKind(),
                 CalibrationKind(), OpinionChangeKind(), RatingConsistencyKind(), StatedNumberKind(),
                 ReportedOutcomeKind(), CardRoundsKind(), ListedChoicesKind())
}


def get_kind(name: str) -> Kind:
    """The scoring rule called ``name``."""
    try:
        return KINDS[name]
    except KeyError:
        raise PsytestError(f"unknown task kind '{name}'; choose one of: {', '.join(sorted(KINDS))}") from None
