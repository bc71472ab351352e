"""Behavioural tasks: what a model does, to set beside what it says about itself.

``task`` loads task files, ``kinds`` holds the scoring rules (numbers, choices, regular expressions and
a lexicon; no LLM judge) with the readers of replies in ``reading``, ``runner`` sends the conversations
and ``analysis`` turns stored replies into behaviour scores. :mod:`psychometrics.validity.statistics` relates them
to questionnaire scores.
"""
