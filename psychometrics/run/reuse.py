"""``--reuse RUN_DIR``: answers to identical requests copied from other runs instead of being sent again.

A request id is a hash of everything that changes the answer (model and its settings, the messages as
rendered, labels, mode, temperature, seed, max_tokens, sample index:
:func:`psychometrics.design.plan.request_identity`), so a request with the same id in another run's
store is the same request, and its answer is as good as a new one. :func:`reusable` finds them (for
``--dry-run``), :func:`reuse_answers` copies them, before anything is sent, one transaction per source.

Another run's store is input like any other file: it is opened read-only and checked, and only its
answers are taken (failures are not answers), request by request, when its rows are exactly the items
this run plans for that request. What is the run's own (the design cell, prompt hash, labels and
positions) comes from this run's plan, never from the source; a stored position outside the labels makes
the request be sent instead. Each copied row records where it came from (``reused_from``: the source
run's directory) and costs nothing here (``cost`` 0: no call was made).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from psychometrics.errors import PsytestError

if TYPE_CHECKING:
    from psychometrics.design.plan import PlannedRequest
    from psychometrics.run.store import ResponseRow, RunStore

#: Fields of a stored answer that belong to the reply (copied); every other field comes from this run's plan.
REPLY_FIELDS = ("raw_reply", "choice_logprobs", "outcome", "parse_method", "position", "expected_value", "entropy",
                "option_mass", "latency_s", "input_tokens", "output_tokens", "attempts", "reasks", "reask_replies",
                "note", "finish_reason", "served_model", "system_fingerprint", "cached_input_tokens")


def check_sources(sources: Iterable[Path], run_dir: Path | None) -> list[Path]:
    """The ``--reuse`` directories, each a questionnaire run with a store, given once, not ``run_dir``."""
    from psychometrics.run.manifest import read_manifest
    from psychometrics.run.owner import RESPONSES

    checked: list[Path] = []
    for source in sources:
        source = Path(source)
        if not source.is_dir():
            raise PsytestError(f"--reuse {source}: not a directory; give the directory of a psytest run")
        if run_dir is not None and run_dir.exists() and source.resolve() == run_dir.resolve():
            raise PsytestError(f"--reuse {source}: is the run being written (--out); its answers are used anyway: "
                               "give other runs to --reuse")
        if source.resolve() in [c.resolve() for c in checked]:
            raise PsytestError(f"--reuse {source}: given twice; give each run once")
        if read_manifest(source, expect=None).kind != "questionnaire":
            raise PsytestError(f"--reuse {source}: a behaviour run; --reuse takes questionnaire runs (made by "
                               "'psytest administer')")
        if not (source / RESPONSES).is_file():
            raise PsytestError(f"--reuse {source}: has no {RESPONSES} (nothing answered yet); give a run that has "
                               "answers, or leave it out")
        checked.append(source)
    return checked


def _answered_rows(source: "RunStore", wanted: list[str], batch: int = 500) -> dict[str, list["ResponseRow"]]:
    """The stored rows of each of ``wanted`` that the source answered (no failure among its rows)."""
    import json

    from psychometrics.run.store import RESPONSES, ResponseRow

    columns = source._columns  # an older store lacks the columns added later: they stay at their defaults
    decode = [name for name in columns if name in RESPONSES.json_columns]
    found: dict[str, list[ResponseRow]] = {}
    for start in range(0, len(wanted), batch):
        chunk = wanted[start:start + batch]
        marks = ", ".join("?" for _ in chunk)
        cursor = source.conn.execute(
            f"SELECT {', '.join(columns)} FROM responses WHERE request_id IN ({marks}) "
            "AND request_id NOT IN (SELECT request_id FROM responses WHERE error IS NOT NULL "
            f"AND request_id IN ({marks})) ORDER BY request_id, item_index", [*chunk, *chunk])
        for record in cursor:
            data = dict(zip(columns, record))
            for name in decode:
                if data[name] is not None:
                    data[name] = json.loads(data[name])
            found.setdefault(data["request_id"], []).append(ResponseRow(**data))
    return found


def _adopted(planned: "PlannedRequest", stored: list["ResponseRow"], source: str) -> list["ResponseRow"] | None:
    """This run's rows for ``planned`` carrying the stored reply, or None when the stored rows do not fit
    (other items, a position outside the labels): then the request is sent instead."""
    from psychometrics.engine.send import _base_row

    if [row.item_id for row in stored] != [item.id for item in planned.items]:
        return None
    rows = []
    for index, old in enumerate(stored):
        row = _base_row(planned, index, old.attempts if isinstance(old.attempts, int) else 1)
        for name in REPLY_FIELDS:
            setattr(row, name, getattr(old, name))
        positions = planned.prompt.position_values
        if row.position is not None:
            if not isinstance(row.position, int) or not 0 <= row.position < len(positions):
                return None
            row.value = float(positions[row.position])
        elif old.value is not None:
            return None  # a value without the position it came from: not an answer psytest stored
        row.cost, row.reused_from, row.answered_at = 0.0, source, time.time()
        rows.append(row)
    return rows


def reusable(planned: list["PlannedRequest"], answered: set[str], sources: list[Path]) -> dict[str, list[str]]:
    """The ids of the requests not in ``answered`` that each source would give (``--dry-run``), in order:
    a request found in the first source is not counted again for the next."""
    return {str(source): list(found) for source, found in _find(planned, answered, sources)}


def _find(planned, answered, sources):
    from psychometrics.run.owner import RESPONSES
    from psychometrics.run.store import RunStore

    todo = {p.request_id: p for p in planned if p.request_id not in answered}
    for source in sources:
        with RunStore(source / RESPONSES, read_only=True) as store:
            store.check_contents()
            stored = _answered_rows(store, list(todo))
        label = str(source.resolve())
        found = {}
        for request_id, rows in stored.items():
            adopted = _adopted(todo[request_id], rows, label)
            if adopted is not None:
                found[request_id] = adopted
        for request_id in found:
            del todo[request_id]
        yield source, found


def reuse_answers(store: "RunStore", planned: list["PlannedRequest"], sources: list[Path]) -> list[dict]:
    """Copy into ``store`` the answers ``sources`` hold to requests it has not answered; returns one
    ``{"at", "source", "requests"}`` record per source that gave any (for the manifest)."""
    by_id = {p.request_id: p for p in planned}
    records = []
    for source, found in _find(planned, store.answered_ids(), sources):
        if not found:
            continue
        store.write_many([(rows, [[m.role, m.content] for m in by_id[request_id].prompt.messages])
                          for request_id, rows in found.items()])
        records.append({"at": _now(), "source": str(source.resolve()), "requests": len(found)})
    return records


def _now() -> str:
    import datetime as _dt

    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
