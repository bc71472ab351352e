"""The behaviour store: ``behavior.sqlite`` beside ``manifest.json`` in a behaviour run directory.

A behavioural task is a conversation of one or more turns. Each model reply is committed to ``turns``
as soon as it arrives, so an interrupted run resumes a conversation where it stopped and never pays
for a turn twice. When the last turn is in, the whole conversation (transcript, display order of the
options, outcome, score and what the scorer read) is committed to ``conversations``. A conversation
that failed (after retries) is stored with its error and retried on the next run, from its first
unanswered turn.

Scores are stored for convenience; analysis re-scores every conversation from its stored replies, so a
corrected scorer applies to old runs.
"""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS turns (
    request_id TEXT NOT NULL,
    turn INTEGER NOT NULL,
    reply TEXT,
    latency_s REAL,
    input_tokens INTEGER,
    output_tokens INTEGER,
    answered_at REAL NOT NULL,
    PRIMARY KEY (request_id, turn)
);
CREATE TABLE IF NOT EXISTS conversations (
    request_id TEXT PRIMARY KEY,
    task TEXT NOT NULL,
    variant TEXT NOT NULL,
    trait TEXT NOT NULL,
    direction INTEGER NOT NULL,
    persona TEXT NOT NULL,
    sample INTEGER NOT NULL,
    display TEXT NOT NULL,
    transcript TEXT NOT NULL,
    outcome TEXT NOT NULL,
    score REAL,
    detail TEXT,
    latency_s REAL,
    input_tokens INTEGER,
    output_tokens INTEGER,
    error TEXT,
    attempts INTEGER NOT NULL DEFAULT 1,
    answered_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS conversations_task ON conversations(task, persona);
"""

COLUMNS = (
    "request_id", "task", "variant", "trait", "direction", "persona", "sample", "display", "transcript", "outcome",
    "score", "detail", "latency_s", "input_tokens", "output_tokens", "error", "attempts", "answered_at",
)
_JSON_FIELDS = ("display", "transcript", "detail")


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
    """One finished (or failed) conversation. JSON-valued fields are Python objects here."""

    request_id: str
    task: str
    variant: str
    trait: str
    direction: int
    persona: str
    sample: int
    display: list[str]
    transcript: list[list[str]]
    outcome: str
    score: float | None = None
    detail: dict[str, Any] | None = field(default=None)
    latency_s: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    error: str | None = None
    attempts: int = 1
    answered_at: float = 0.0


class BehaviorStore:
    """Open (creating if needed) the behaviour database of a run directory."""

    def __init__(self, path: Path):
        self.path = path
        self.conn = sqlite3.connect(path, timeout=60, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.executescript(_SCHEMA)
        self.conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))

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

    def previous_attempts(self, request_id: str) -> int:
        row = self.conn.execute("SELECT attempts FROM conversations WHERE request_id = ?", (request_id,)).fetchone()
        return int(row[0]) if row else 0

    def turns(self, request_id: str) -> list[TurnReply]:
        """The replies already stored for a conversation, in turn order."""
        cursor = self.conn.execute(
            "SELECT turn, reply, latency_s, input_tokens, output_tokens FROM turns WHERE request_id = ? ORDER BY turn",
            (request_id,),
        )
        return [TurnReply(*record) for record in cursor]

    def write_turn(self, request_id: str, reply: TurnReply) -> None:
        """Commit one reply; durable when this returns."""
        with self._transaction():
            self.conn.execute(
                "INSERT OR REPLACE INTO turns (request_id, turn, reply, latency_s, input_tokens, output_tokens, "
                "answered_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (request_id, reply.turn, reply.reply, reply.latency_s, reply.input_tokens, reply.output_tokens, time.time()),
            )

    def claims(self, *, since: float | None = None, lease_s: float | None = None):
        """Claims on this store's conversations (:mod:`psychometrics.claims`), so two processes on one run
        directory never send the same conversation. Done: finished without error, or (with ``since``)
        failed at or after ``since`` in another process (the next run retries it)."""
        from psychometrics.claims import DEFAULT_LEASE_S, Claims

        def done(conn: sqlite3.Connection, request_id: str) -> bool:
            row = conn.execute("SELECT error, answered_at FROM conversations WHERE request_id = ?", (request_id,)).fetchone()
            return row is not None and (row[0] is None or (since is not None and row[1] >= since))

        return Claims(self.conn, done=done, lease_s=lease_s or DEFAULT_LEASE_S)

    def write(self, row: ConversationRow, claims=None) -> None:
        """Commit a finished or failed conversation, replacing an earlier failure of it (never an
        answer), and release its claim in the same transaction."""
        row.answered_at = row.answered_at or time.time()
        values = [getattr(row, column) for column in COLUMNS]
        for index, column in enumerate(COLUMNS):
            if column in _JSON_FIELDS and values[index] is not None:
                values[index] = json.dumps(values[index], ensure_ascii=False, sort_keys=column == "detail")
        with self._transaction():
            if row.error is not None and self.conn.execute(
                "SELECT 1 FROM conversations WHERE request_id = ? AND error IS NULL", (row.request_id,)
            ).fetchone():
                if claims is not None:
                    claims.release(row.request_id)
                return  # another process answered it meanwhile: keep the answer
            self.conn.execute(
                f"INSERT OR REPLACE INTO conversations ({', '.join(COLUMNS)}) VALUES ({', '.join('?' for _ in COLUMNS)})",
                values,
            )
            if claims is not None:
                claims.release(row.request_id)

    def rows(self) -> Iterator[ConversationRow]:
        cursor = self.conn.execute(f"SELECT {', '.join(COLUMNS)} FROM conversations ORDER BY rowid")
        for record in cursor:
            data = dict(zip(COLUMNS, record))
            for column in _JSON_FIELDS:
                if data[column] is not None:
                    data[column] = json.loads(data[column])
            yield ConversationRow(**data)

    def count(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM conversations").fetchone()[0])
