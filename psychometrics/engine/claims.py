"""Leases on requests, so that several processes working on one SQLite store never send the same request.

Before sending a request a worker *claims* its id in the ``claims`` table of the store; the claim
succeeds only if the request needs sending (the caller's ``done`` check says no) and no other live
owner holds a claim on it. The answer is then committed and the claim released in one
transaction (:meth:`Claims.release` inside the caller's transaction). Per request that is two
write transactions: one to claim, one to answer.

An owner is ``host:pid:token`` (a fresh random token per run, so two runs in one process differ; on
Linux the token ends in the process's start time, so a reused pid is not mistaken for its owner).
Whether an owner on this host is alive is known exactly: a claim of a live local process stands
whatever its expiry (it may be stalled, or the machine suspended, past the lease: taking its request
would pay for it twice), and a claim of a local process that no longer exists (``os.kill(pid, 0)``
fails, it is a zombie, or the pid now belongs to a later process) is void at once, so resuming after a
crash or a SIGKILL does not wait. Only claims of owners whose liveness cannot be checked (another host
name: a container sharing the volume) expire, ``lease_s`` seconds after they were taken or last renewed
(:meth:`Claims.keep_alive` renews all of an owner's claims in one statement every third of the lease).

SQLite's WAL mode needs shared memory, so every process on one store must run on one machine (one
kernel; containers on it included): never put a store on a network file system.

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
import weakref
from contextlib import asynccontextmanager
from typing import AsyncIterator, Callable

CLAIMED = "claimed"  # this owner may send the request now
DONE = "done"  # nothing to send: ``done`` said so
HELD = "held"  # another live owner holds a claim on it (unexpired, when its liveness cannot be checked)

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
_LIVE_IN_THIS_PROCESS: set[str] = set()  # owners of the Claims objects alive in this process


def _proc_stat(pid: int) -> list[bytes] | None:
    """The fields of ``/proc/PID/stat`` after the command name (state first), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _start_time(pid: int) -> str | None:
    fields = _proc_stat(pid)
    return fields[19].decode() if fields is not None and len(fields) > 19 else None


def new_owner() -> str:
    """``host:pid:token`` naming this process and run (``token.starttime`` where /proc tells it)."""
    start = _start_time(os.getpid())
    return f"{_HOST}:{os.getpid()}:{secrets.token_hex(6)}" + (f".{start}" if start else "")


def _local_pid(owner: str) -> tuple[int, str] | None:
    """(pid, token) of an owner on this host, or None (another host, or not an owner name)."""
    host, _, rest = owner.partition(":")
    pid_text, _, token = rest.partition(":")
    return (int(pid_text), token) if host == _HOST and pid_text.isdigit() else None


def local_owner_is_dead(owner: str) -> bool:
    """True when ``owner`` was a process on this host that no longer runs (or is a zombie, or its pid
    now belongs to a process started later), or a run of this process that has ended.

    Owners on other hosts, or whose pid cannot be read, count as alive: only their lease frees them.
    """
    local = _local_pid(owner)
    if local is None:
        return False
    pid, token = local
    if pid == os.getpid():
        return owner not in _LIVE_IN_THIS_PROCESS  # another run in this very process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # someone else's live process: its start time still tells whether it is the owner
    fields = _proc_stat(pid)
    if fields is None:
        return False
    if fields[0] in (b"Z", b"X"):  # killed, not yet reaped
        return True
    started = token.rpartition(".")[2] if "." in token else None
    return started is not None and len(fields) > 19 and fields[19].decode() != started


def local_owner_is_alive(owner: str) -> bool:
    """True when ``owner`` is a process on this host known to be running (its claims never expire)."""
    return _local_pid(owner) is not None and not local_owner_is_dead(owner)


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
        if _local_pid(self.owner) is not None and _local_pid(self.owner)[0] == os.getpid():
            _LIVE_IN_THIS_PROCESS.add(self.owner)
            weakref.finalize(self, _LIVE_IN_THIS_PROCESS.discard, self.owner)
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
        if row is not None and row[0] != self.owner:
            if local_owner_is_alive(row[0]):
                return HELD  # a live process of this host: its lease does not matter
            if row[1] > now and _local_pid(row[0]) is None:
                return HELD  # another host's claim, not yet expired
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
    async def keep_alive(self, run=None) -> AsyncIterator["Claims"]:
        """Renew this owner's claims every third of the lease while the block runs; release them after.
        ``run``: ``await run(function)`` calls ``function`` where the connection is used during the block
        (the send engine's store thread); default here, in the event loop."""

        async def call(function):
            return function() if run is None else await run(function)

        async def beat() -> None:
            while True:
                await asyncio.sleep(self.lease_s / 3)
                try:
                    await call(self.renew)
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
                await call(self.release_all)  # after the commits handed over before it (one thread, in order)
            except sqlite3.Error:
                pass  # the claims lapse with the lease anyway
