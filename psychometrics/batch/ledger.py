"""The ``batches`` table of a run store: what a ``--batch`` run has submitted, written before each step.

Every step that talks to the provider is recorded first and committed, so a process killed at any
point leaves a row saying how far it got (states in :data:`psychometrics.run.store.BATCHES`):

``uploading``  the request ids are fixed; the input file may or may not have been uploaded
``creating``   the input file is uploaded (``file_id``); the batch may or may not have been created
``submitted``  the batch exists (``batch_id``): it is polled and its results committed
``ended``      every result of the batch is committed (failures included)
``refused``    the provider would not create the batch (``error``); its requests are free again

A request is *live* while a submission holding it is ``uploading``, ``creating`` or ``submitted``: it is
never put in another batch then. Only when the batch has ended, and the request has no answer, is it
submitted again (a new submission, its ``resubmitted`` count saying how many it repeats).
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from dataclasses import dataclass

LIVE_STATES = ("uploading", "creating", "submitted")


@dataclass
class Submission:
    submission: str
    provider: str
    endpoint: str
    request_ids: list[str]
    state: str
    file_id: str | None = None
    batch_id: str | None = None
    provider_status: str | None = None
    created_at: float = 0.0
    results_committed: int = 0
    resubmitted: int = 0
    error: str | None = None


_FIELDS = ("submission", "provider", "endpoint", "request_ids", "state", "file_id", "batch_id", "provider_status",
           "created_at", "results_committed", "resubmitted", "error")


class Ledger:
    """The ``batches`` table on an autocommit connection (the run store's): each change its own transaction."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def _rows(self, where: str = "", args: tuple = ()) -> list[Submission]:
        rows = self.conn.execute(f"SELECT {', '.join(_FIELDS)} FROM batches {where} ORDER BY created_at, rowid", args)
        return [Submission(**{**dict(zip(_FIELDS, row)), "request_ids": json.loads(row[3])}) for row in rows]

    def all(self) -> list[Submission]:
        return self._rows()

    def live(self) -> list[Submission]:
        return self._rows(f"WHERE state IN ({', '.join('?' * len(LIVE_STATES))})", LIVE_STATES)

    def times_submitted(self) -> dict[str, int]:
        """How many submissions (other than refused ones) each request id has been in."""
        counts: dict[str, int] = {}
        for sub in self._rows("WHERE state != 'refused'"):
            for request_id in sub.request_ids:
                counts[request_id] = counts.get(request_id, 0) + 1
        return counts

    def begin(self, provider: str, endpoint: str, request_ids: list[str], resubmitted: int, state: str) -> Submission:
        """Record a new submission of ``request_ids`` (committed before anything is sent)."""
        now = time.time()
        sub = Submission(uuid.uuid4().hex, provider, endpoint, list(request_ids), state, created_at=now,
                         resubmitted=resubmitted)
        self.conn.execute(
            "INSERT INTO batches (submission, provider, endpoint, request_ids, state, created_at, updated_at, "
            "results_committed, resubmitted) VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?)",
            (sub.submission, provider, endpoint, json.dumps(sub.request_ids), state, now, now, resubmitted))
        return sub

    def update(self, sub: Submission, **changes) -> None:
        """Set fields of ``sub`` (in the table and on the object), committed when this returns."""
        for name, value in changes.items():
            if name not in _FIELDS or name in ("submission", "request_ids"):
                raise ValueError(f"not a changeable batches field: {name}")
            setattr(sub, name, value)
        names = list(changes)
        self.conn.execute(f"UPDATE batches SET {', '.join(f'{n} = ?' for n in names)}, updated_at = ? "
                          "WHERE submission = ?", (*[changes[n] for n in names], time.time(), sub.submission))


def live_count(conn: sqlite3.Connection) -> tuple[int, int]:
    """(live submissions, requests in them) of a store; (0, 0) for a store without a ``batches`` table."""
    try:
        rows = conn.execute(f"SELECT request_ids FROM batches WHERE state IN ({', '.join('?' * len(LIVE_STATES))})",
                            LIVE_STATES).fetchall()
    except sqlite3.OperationalError:
        return 0, 0
    return len(rows), sum(len(json.loads(row[0])) for row in rows)
