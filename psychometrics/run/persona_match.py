"""Runs joined on the respondent must have used the same persona set; their persona target levels.

Validity tables (``psytest validity``, ``psytest report RUN --behavior``, a study's validity and its
combined report) join questionnaire and behaviour runs on the respondent, model x persona, by persona
id. Two runs whose persona sets differ would pair a self-report under one persona text with behaviour
under another that merely shares its id (a set with rotated targets, an edited copy, a different set that
also has a ``baseline``), and the manipulation check would read targets the other run never gave.
:func:`check_same_personas` refuses that with one line naming both runs and both sets. Runs differ when
one has a persona set and the other none, or when the sets' content hashes differ (any change of a
persona's id, text or targets, or of the set's name or description); where both manifests record the
personas they used, the first persona whose targets or text differ is named. Runs of the same set with
different ``--persona-ids`` do not differ: they join on the personas they share.

:func:`persona_targets` gives the ``persona, trait, level`` rows of the runs' respondents from the
manifests (:class:`psychometrics.run.manifest.PersonaSetRef`), falling back to resolving the set by name
for runs made before the targets were recorded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from psychometrics.errors import PsytestError

if TYPE_CHECKING:
    import pandas as pd

    from psychometrics.run.manifest import Manifest


class PersonaSetMismatch(PsytestError):
    """Runs to be joined on the persona used different persona sets (see :func:`check_same_personas`)."""


def describe(manifest: "Manifest") -> str:
    """``persona set 'ID' (hash 1234abcd5678)``, with the file when the run named one, or ``no persona set``."""
    ref = manifest.personas
    if ref is None:
        return "no persona set"
    source = manifest.design.personas
    where = f" from {source}" if source and source != ref.id else ""
    return f"persona set '{ref.id}'{where} (hash {ref.content_hash[:12]})"


def _first_persona_difference(a: "Manifest", b: "Manifest") -> str | None:
    """The first persona both runs used whose targets or text differ (None when not recorded or none)."""
    ra, rb = a.personas, b.personas
    if ra is None or rb is None:
        return None
    for persona in sorted(set(ra.targets or {}) & set(rb.targets or {})):
        ta, tb = (ra.targets or {})[persona], (rb.targets or {})[persona]
        if ta != tb:
            return f"persona '{persona}' targets {_levels(tb)} in one and {_levels(ta)} in the other"
    for persona in sorted(set(ra.texts or {}) & set(rb.texts or {})):
        if (ra.texts or {})[persona] != (rb.texts or {})[persona]:
            return f"persona '{persona}' has a different text in each"
    return None


def _levels(targets: dict[str, int]) -> str:
    return "{" + ", ".join(f"{trait} {level:+d}" for trait, level in targets.items()) + "}" if targets else "nothing"


def check_same_personas(runs: Sequence[tuple[str, "Manifest"]]) -> None:
    """Refuse runs (``(how the run was given, e.g. "--behavior runs/b", its manifest)``) whose persona sets
    differ from the first run's (see the module docstring)."""
    if not runs:
        return
    first_label, first = runs[0]
    for label, manifest in runs[1:]:
        a, b = first.personas, manifest.personas
        if a is None and b is None:
            continue
        if a is not None and b is not None and a.content_hash == b.content_hash:
            continue
        detail = _first_persona_difference(first, manifest)
        raise PersonaSetMismatch(
            f"{label} used {describe(manifest)}, {first_label} used {describe(first)}"
            + (f" ({detail})" if detail else "")
            + ": their respondents are joined on the persona, so give runs made with the same persona set")


def persona_targets(manifests: Sequence["Manifest"]) -> "pd.DataFrame | None":
    """``persona, trait, level`` rows (:data:`psychometrics.validity.statistics.TARGET_COLUMNS`) of the personas
    the runs used, from each manifest's recorded targets; a manifest without them (a run made before they
    were recorded) resolves its persona set by name, and gives none if the set's file is gone. None when no
    run used a persona set."""
    import pandas as pd

    from psychometrics.design.personas import resolve_persona_set

    rows: list[tuple[str, str, int]] = []
    resolved: set[str] = set()
    used = False
    for manifest in manifests:
        ref = manifest.personas
        name = manifest.design.personas
        if ref is None and not name:
            continue
        used = True
        if ref is not None and ref.targets is not None:
            rows += [(persona, trait, level) for persona, targets in ref.targets.items()
                     for trait, level in targets.items()]
            continue
        if not name or name in resolved:
            continue
        resolved.add(name)
        try:
            persona_set = resolve_persona_set(name)
        except PsytestError:
            continue  # a user's persona file that moved, in a run without recorded targets
        if ref is not None and persona_set.content_hash != ref.content_hash:
            continue  # the file changed since the run: its targets are not the run's
        rows += [(p.id, trait, level) for p in persona_set.personas for trait, level in p.targets.items()]
    if not used:
        return None
    return pd.DataFrame(rows, columns=["persona", "trait", "level"]).drop_duplicates(ignore_index=True)
