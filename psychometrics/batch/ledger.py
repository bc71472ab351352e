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

A submission not yet ``submitted`` belongs to its ``owner`` (the process that recorded it, named as
:mod:`psychometrics.engine.claims` names owners): another process takes it up only once that owner is
gone (a dead process on this host at once, a process on another host after :data:`OTHER_HOST_LEASE_S`
without a change), and only one process wins the take-over (:meth:`Ledger.take`).
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from dataclasses import dataclass

LIVE_STATES = ("uploading", "creating", "submitted")
OTHER_HOST_LEASE_S = 600.0


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
    owner: str | None = None
    updated_at: float = 0.0

    def abandoned(self) -> bool:
        """Whether no live process is taking this submission through its steps (see the module docstring)."""
        from psychometrics.engine.claims import _local_pid, local_owner_is_alive

        if self.owner is None:
            return True
        if _local_pid(self.owner) is not None:
            return not local_owner_is_alive(self.owner)
        return time.time() - self.updated_at > OTHER_HOST_LEASE_S


_FIELDS = ("submission", "provider", "endpoint", "request_ids", "state", "file_id", "batch_id", "provider_status",
           "created_at", "results_committed", "resubmitted", "error", "owner", "updated_at")


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

    def begin(self, provider: str, endpoint: str, request_ids: list[str], resubmitted: int, state: str,
              owner: str) -> Submission:
        """Record a new submission of ``request_ids`` by ``owner`` (committed before anything is sent)."""
        now = time.time()
        sub = Submission(uuid.uuid4().hex, provider, endpoint, list(request_ids), state, created_at=now,
                         resubmitted=resubmitted, owner=owner, updated_at=now)
        self.conn.execute(
            "INSERT INTO batches (submission, provider, endpoint, request_ids, state, created_at, updated_at, "
            "results_committed, resubmitted, owner) VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, ?)",
            (sub.submission, provider, endpoint, json.dumps(sub.request_ids), state, now, now, resubmitted, owner))
        return sub

    def take(self, sub: Submission, owner: str) -> bool:
        """Make ``owner`` the owner of the abandoned ``sub``, unless another process took it first."""
        taken = self.conn.execute("UPDATE batches SET owner = ?, updated_at = ? WHERE submission = ? AND "
                                  "owner IS ? AND state = ?", (owner, time.time(), sub.submission, sub.owner,
                                                               sub.state)).rowcount == 1
        if taken:
            sub.owner = owner
        return taken

    def update(self, sub: Submission, **changes) -> None:
        """Set fields of ``sub`` (in the table and on the object), committed when this returns."""
        for name in changes:
            if name not in _FIELDS or name in ("submission", "request_ids", "updated_at"):
                raise ValueError(f"not a changeable batches field: {name}")
        changes["updated_at"] = time.time()
        for name, value in changes.items():
            setattr(sub, name, value)
        names = list(changes)
        self.conn.execute(f"UPDATE batches SET {', '.join(f'{n} = ?' for n in names)} WHERE submission = ?",
                          (*[changes[n] for n in names], sub.submission))


def live_count(conn: sqlite3.Connection) -> tuple[int, int]:
    """(live submissions, requests in them) of a store; (0, 0) for a store without a ``batches`` table."""
    try:
        rows = conn.execute(f"SELECT request_ids FROM batches WHERE state IN ({', '.join('?' * len(LIVE_STATES))})",
                            LIVE_STATES).fetchall()
    except sqlite3.OperationalError:
        return 0, 0
    return len(rows), sum(len(json.loads(row[0])) for row in rows)
