"""The behaviour store: ``behavior.sqlite`` beside ``manifest.json`` in a behaviour run directory.

A behavioural task is a conversation of one or more turns. Each model reply is committed to ``turns``
as soon as it arrives, so an interrupted run resumes a conversation where it stopped and never pays
for a turn twice. When the last turn is in, the whole conversation (transcript, display order of the
options, outcome, score and what the scorer read) is committed to ``conversations``. A conversation
that failed (after retries) is stored with its error and retried on the next run, from its first
unanswered turn (every failure is, permanent ones included: they were not answered). A stored reply or
finished conversation is never replaced by another; one SQLite refuses is stored as a failure saying
why. Commands that only read open the store read-only (:func:`psychometrics.run.store.read_only_stores`).

Scores are stored for convenience; analysis re-scores every conversation from its stored replies, so a
corrected scorer applies to old runs.
"""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from psychometrics.models.base import clean_text
from psychometrics.run.schema import Column, StoreSchema, Table, column, read_rows, table_of
from psychometrics.run.store import check_contents, open_store

@dataclass
class TurnReply:
    """One stored model reply of a conversation."""

    turn: int
    reply: str | None
    latency_s: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None


@dataclass
class ConversationRow:
    """One finished (or failed) conversation, and the definition of the ``conversations`` table.
    JSON-valued fields are Python objects here."""

    request_id: str = column("text")
    task: str = column("text")
    variant: str = column("text")
    trait: str = column("text")
    direction: int = column("int")
    persona: str = column("text")
    sample: int = column("int")
    display: list[str] = column("array:text")
    transcript: list[list[str]] = column("array:array")
    outcome: str = column("text")
    score: float | None = column("real?", None)
    detail: dict[str, Any] | None = column("object?", None)
    latency_s: float | None = column("real?", None)
    input_tokens: int | None = column("int?", None)
    output_tokens: int | None = column("int?", None)
    error: str | None = column("text?", None)
    attempts: int = column("int", 1, sql_default="1")
    answered_at: float = column("real", 0.0)


TURNS = Table("turns", (
    Column("request_id", "text"), Column("turn", "int"), Column("reply", "text?"), Column("latency_s", "real?"),
    Column("input_tokens", "int?"), Column("output_tokens", "int?"), Column("answered_at", "real"),
), primary_key=("request_id", "turn"))
CONVERSATIONS = table_of(ConversationRow, "conversations", primary_key=("request_id",),
                         indexes=(("conversations_task", ("task", "persona")),))
#: ``behavior.sqlite``, version 1.
BEHAVIOR_STORE = StoreSchema(1, (TURNS, CONVERSATIONS))
COLUMNS = CONVERSATIONS.names
_JSON_FIELDS = CONVERSATIONS.json_columns


class BehaviorStore:
    """The behaviour database of a run directory: created if needed, or read-only
    (:func:`psychometrics.run.store.open_store`)."""

    def __init__(self, path: Path, *, read_only: bool | None = None):
        self.path = path
        self.conn, self.read_only, self.version = open_store(path, BEHAVIOR_STORE, read_only)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "BehaviorStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self):
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def answered_ids(self) -> set[str]:
        """Conversations that finished without an error (failures are retried)."""
        return {row[0] for row in self.conn.execute("SELECT request_id FROM conversations WHERE error IS NULL")}

    def turns(self, request_id: str) -> list[TurnReply]:
        """The replies already stored for a conversation, in turn order."""
        cursor = self.conn.execute(
            "SELECT turn, reply, latency_s, input_tokens, output_tokens FROM turns WHERE request_id = ? ORDER BY turn",
            (request_id,),
        )
        return [TurnReply(*record) for record in cursor]

    def write_turn(self, request_id: str, reply: TurnReply) -> None:
        """Commit one reply (its text made storable); durable when this returns. A turn already stored
        (by another process) is kept."""
        if reply.reply is not None:
            reply.reply = clean_text(reply.reply)
        with self._transaction():
            self.conn.execute(
                "INSERT OR IGNORE INTO turns (request_id, turn, reply, latency_s, input_tokens, output_tokens, "
                "answered_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (request_id, reply.turn, reply.reply, reply.latency_s, reply.input_tokens, reply.output_tokens, time.time()),
            )

    def claims(self, *, since: float | None = None, lease_s: float | None = None):
        """Claims on this store's conversations (:mod:`psychometrics.engine.claims`), so two processes on one run
        directory never send the same conversation. Done: finished without error, or (with ``since``)
        failed at or after ``since`` in another process (the next run retries it)."""
        from psychometrics.engine.claims import DEFAULT_LEASE_S, Claims

        def done(conn: sqlite3.Connection, request_id: str) -> bool:
            row = conn.execute("SELECT error, answered_at FROM conversations WHERE request_id = ?", (request_id,)).fetchone()
            return row is not None and (row[0] is None or (since is not None and row[1] >= since))

        return Claims(self.conn, done=done, lease_s=lease_s or DEFAULT_LEASE_S)

    def failed_attempts(self) -> dict[str, int]:
        """Attempts so far of every conversation stored as a failure (one query for a whole run)."""
        return dict(self.conn.execute("SELECT request_id, attempts FROM conversations WHERE error IS NOT NULL"))

    def write(self, row: ConversationRow, claims=None) -> bool:
        """Commit a finished or failed conversation, replacing an earlier failure of it (never an
        answer), and release its claim in the same transaction. A row SQLite refuses is stored as a
        failure saying why (``row`` changed to match). Returns whether it was stored."""
        with self._transaction():
            return self._write_one(row, claims)

    def write_and_claim(self, items: list[tuple[list[ConversationRow], object, str | None]], claims) -> list[str | None]:
        """:meth:`write` for each (rows, unused, next conversation id) item, and a claim on each next
        conversation (None where there is none), all in one transaction: the send engine's group commit
        (:func:`psychometrics.engine.pool.send_all`). Returns each claim's status."""
        with self._transaction():
            statuses = []
            for rows, _, following in items:
                for row in rows:
                    self._write_one(row, claims)
                statuses.append(None if following is None else claims.claim_in_transaction(following))
        return statuses

    def _write_one(self, row: ConversationRow, claims) -> bool:
        """:meth:`write` inside the caller's transaction, the row in a savepoint of its own."""
        row.answered_at = row.answered_at or time.time()
        if claims is not None:
            claims.release(row.request_id)
        if self.conn.execute(
            "SELECT 1 FROM conversations WHERE request_id = ? AND error IS NULL", (row.request_id,)
        ).fetchone():
            return False  # another process answered it meanwhile: keep that answer
        self.conn.execute("SAVEPOINT psytest_conversation")
        try:
            self._insert(row)
        except (sqlite3.Error, ValueError, TypeError, OverflowError) as exc:  # UnicodeEncodeError is a ValueError
            self.conn.execute("ROLLBACK TO psytest_conversation")
            row.error = clean_text(f"could not store the conversation ({type(exc).__name__}: {exc})")[:2000]
            row.outcome, row.score, row.detail, row.input_tokens, row.output_tokens = "error", None, None, None, None
            row.transcript = [[clean_text(str(part)) for part in message] for message in row.transcript]
            self._insert(row)
        self.conn.execute("RELEASE psytest_conversation")
        return True

    def _insert(self, row: ConversationRow) -> None:
        values = [getattr(row, name) for name in COLUMNS]
        for index, name in enumerate(COLUMNS):
            if name in _JSON_FIELDS and values[index] is not None:
                values[index] = json.dumps(values[index], ensure_ascii=False, sort_keys=name == "detail")
        self.conn.execute(
            f"INSERT OR REPLACE INTO conversations ({', '.join(COLUMNS)}) VALUES ({', '.join('?' for _ in COLUMNS)})",
            values,
        )

    def turn_output_tokens(self) -> dict[str, list[int | None]]:
        """Per conversation, the output tokens of each stored turn in order (to tell cut-off replies)."""
        tokens: dict[str, list[int | None]] = {}
        for request_id, count in self.conn.execute("SELECT request_id, output_tokens FROM turns ORDER BY request_id, turn"):
            tokens.setdefault(request_id, []).append(count)
        return tokens

    def rows(self) -> Iterator[ConversationRow]:
        return read_rows(self.conn, CONVERSATIONS, tuple(COLUMNS), ConversationRow)

    def count(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM conversations").fetchone()[0])

    def check_contents(self) -> None:
        """One-line error unless every column holds what psytest writes, and every transcript entry is a
        [role, text] pair (:func:`psychometrics.run.store.check_contents`)."""
        for table in (TURNS, CONVERSATIONS):
            check_contents(self.conn, self.path, table, self.version)
        bad = self.conn.execute(
            "SELECT conversations.rowid FROM conversations, json_each(conversations.transcript) AS entry WHERE "
            "json_valid(conversations.transcript) AND (entry.type != 'array' OR json_array_length(entry.value) != 2 "
            "OR json_type(entry.value, '$[0]') != 'text' OR json_type(entry.value, '$[1]') != 'text') LIMIT 1"
        ).fetchone()
        if bad is not None:
            from psychometrics.errors import PsytestError

            raise PsytestError(f"{self.path}: conversations row {bad[0]}, column 'transcript': an entry is not a "
                               "[role, text] pair; the store was changed or damaged: restore it from a backup, or run "
                               "again into a new --out")
    def fingerprint(self) -> dict:
        """What the store holds, cheaply (see :meth:`psychometrics.run.store.RunStore.fingerprint`)."""
        rows, failed, last, times, scores = self.conn.execute(
            "SELECT count(*), count(error), coalesce(max(rowid), 0), total(answered_at), total(score) "
            "FROM conversations").fetchone()
        turns, turn_times = self.conn.execute("SELECT count(*), total(answered_at) FROM turns").fetchone()
        return {"conversations": rows, "failed": failed, "max_rowid": last, "answered_at_total": round(times, 6),
                "score_total": round(scores, 9), "turns": turns, "turn_answered_at_total": round(turn_times, 6)}
