"""Leases on requests, so that several processes working on one SQLite store never send the same request.

Before sending a request a worker *claims* its id in the ``claims`` table of the store; the claim
succeeds only if the request needs sending (the caller's ``done`` check says no) and no other live
owner holds an unexpired claim on it. The answer is then committed and the claim released in one
transaction (:meth:`Claims.release` inside the caller's transaction). Per request that is two
write transactions: one to claim, one to answer.

An owner is ``host:pid:token`` (a fresh random token per run, so two runs in one process differ).
Claims expire ``lease_s`` seconds after they were taken or last renewed (:meth:`Claims.keep_alive`
renews all of an owner's claims in one statement every third of the lease), so a run that died on
another machine frees its requests after one lease. A claim of a process on this host that no longer
exists (``os.kill(pid, 0)`` fails, or it is a zombie) is void at once, so resuming after a crash or a
SIGKILL does not wait for the lease.

Any table works: the request id is an opaque string and ``done(conn, request_id)`` (run inside the
claim's transaction) is the only link to the caller's answers.

Usage::

    claims = Claims(conn, done=lambda c, rid: c.execute("SELECT 1 FROM answers WHERE id = ?", (rid,)).fetchone())
    async with claims.keep_alive():
        if claims.claim(rid) == CLAIMED:
            answer = await send(...)
            conn.execute("BEGIN IMMEDIATE"); insert(answer); claims.release(rid); conn.execute("COMMIT")
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import sqlite3
import time
from contextlib import asynccontextmanager
from typing import AsyncIterator, Callable

CLAIMED = "claimed"  # this owner may send the request now
DONE = "done"  # nothing to send: ``done`` said so
HELD = "held"  # another live owner holds an unexpired claim on it

DEFAULT_LEASE_S = 60.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS claims (
    request_id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    expires_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS claims_owner ON claims(owner);
"""

_HOST = socket.gethostname()


def new_owner() -> str:
    """``host:pid:token`` naming this process and run."""
    return f"{_HOST}:{os.getpid()}:{secrets.token_hex(6)}"


def local_owner_is_dead(owner: str) -> bool:
    """True when ``owner`` was a process on this host that no longer runs (or is a zombie).

    Owners on other hosts, or whose pid cannot be read, count as alive: only their lease frees them.
    """
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != _HOST or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False  # another run in this very process: alive while we are
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # someone else's live process
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] in (b"Z", b"X")  # killed, not yet reaped
    except (OSError, IndexError):
        return False


class Claims:
    """Claims of one owner on the store behind ``conn`` (autocommit connection: ``isolation_level=None``).

    Parameters
    ----------
    conn : sqlite3.Connection
        The store; the ``claims`` table is created if missing.
    done : callable, optional
        ``done(conn, request_id)`` is truthy when the request needs no sending (already answered).
        Runs inside the claim transaction, so no other process can commit an answer in between.
    lease_s : float
        How long a claim stands without renewal.
    owner : str, optional
        Defaults to :func:`new_owner`.
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        *,
        done: Callable[[sqlite3.Connection, str], object] | None = None,
        lease_s: float = DEFAULT_LEASE_S,
        owner: str | None = None,
    ):
        if not lease_s > 0:
            raise ValueError(f"lease_s must be positive, got {lease_s}")
        self.conn = conn
        self.done = done
        self.lease_s = float(lease_s)
        self.owner = owner or new_owner()
        conn.executescript(SCHEMA)

    def claim(self, request_id: str) -> str:
        """Try to claim ``request_id``: :data:`CLAIMED`, :data:`DONE` or :data:`HELD`. One transaction."""
        return self.claim_many([request_id])[0]

    def claim_many(self, request_ids: list[str]) -> list[str]:
        """:meth:`claim` for several requests in one transaction (one commit): their statuses."""
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            statuses = [self.claim_in_transaction(request_id) for request_id in request_ids]
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return statuses

    def claim_in_transaction(self, request_id: str) -> str:
        """:meth:`claim` inside a write transaction the caller holds (``BEGIN IMMEDIATE``)."""
        conn = self.conn
        if self.done is not None and self.done(conn, request_id):
            return DONE
        row = conn.execute("SELECT owner, expires_at FROM claims WHERE request_id = ?", (request_id,)).fetchone()
        now = time.time()
        if row is not None and row[0] != self.owner and row[1] > now and not local_owner_is_dead(row[0]):
            return HELD
        conn.execute(
            "INSERT OR REPLACE INTO claims(request_id, owner, expires_at) VALUES (?, ?, ?)",
            (request_id, self.owner, now + self.lease_s),
        )
        return CLAIMED

    def release(self, request_id: str) -> None:
        """Drop this owner's claim on ``request_id``; call it inside the transaction that stores the answer."""
        self.conn.execute("DELETE FROM claims WHERE request_id = ? AND owner = ?", (request_id, self.owner))

    def renew(self) -> int:
        """Extend every claim of this owner by a full lease; returns how many there are."""
        cursor = self.conn.execute(
            "UPDATE claims SET expires_at = ? WHERE owner = ?", (time.time() + self.lease_s, self.owner)
        )
        return cursor.rowcount

    def release_all(self) -> None:
        """Drop every claim of this owner (at the end of a run, or when it is interrupted)."""
        self.conn.execute("DELETE FROM claims WHERE owner = ?", (self.owner,))

    @asynccontextmanager
    async def keep_alive(self) -> AsyncIterator["Claims"]:
        """Renew this owner's claims every third of the lease while the block runs; release them after."""

        async def beat() -> None:
            while True:
                await asyncio.sleep(self.lease_s / 3)
                try:
                    self.renew()
                except sqlite3.OperationalError:
                    pass  # store busy past its timeout: try again next beat

        task = asyncio.create_task(beat())
        try:
            yield self
        finally:
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, sqlite3.Error):
                pass
            try:
                self.release_all()
            except sqlite3.Error:
                pass  # the claims lapse with the lease anyway
