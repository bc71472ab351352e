"""Psychometric statistics, each checked against R (scripts and goldens in tests/reference/)."""
