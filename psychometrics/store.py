"""The run store: ``responses.sqlite`` beside ``manifest.json`` in a run directory.

One row per request and item (a request asks one item by default, or several), keyed by the request
id (a hash of everything that changes the answer) and the item id, written and committed as soon as
the answer arrives. A request whose id has an answered row is never sent
again, so re-running a command or resuming after a crash sends only what is missing. Failed requests
are stored with their error and retried on the next run. Each distinct prompt is stored once, in
``prompts``, so repeated samples do not repeat the text.

SQLite runs in WAL mode, so readers (a report) never block the writer. Several processes may work on
one store at once: each claims a request before sending it (:mod:`psychometrics.claims`, table
``claims``, created by the first run that sends), so no request is sent twice, and commits its answer
and drops its claim together.
"""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from psychometrics.claims import Claims

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS prompts (
    messages_hash TEXT PRIMARY KEY,
    messages TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS responses (
    request_id TEXT NOT NULL,
    inventory TEXT NOT NULL,
    item_id TEXT NOT NULL,
    item_index INTEGER NOT NULL DEFAULT 0,
    condition TEXT NOT NULL,
    messages_hash TEXT NOT NULL REFERENCES prompts(messages_hash),
    choices TEXT NOT NULL,
    position_values TEXT NOT NULL,
    mode TEXT NOT NULL,
    raw_reply TEXT,
    choice_logprobs TEXT,
    outcome TEXT NOT NULL,
    parse_method TEXT,
    position INTEGER,
    value REAL,
    expected_value REAL,
    entropy REAL,
    option_mass REAL,
    latency_s REAL,
    input_tokens INTEGER,
    output_tokens INTEGER,
    error TEXT,
    attempts INTEGER NOT NULL DEFAULT 1,
    reasks INTEGER NOT NULL DEFAULT 0,
    reask_replies TEXT,
    answered_at REAL NOT NULL,
    PRIMARY KEY (request_id, item_id)
);
CREATE INDEX IF NOT EXISTS responses_item ON responses(inventory, item_id);
"""

COLUMNS = (
    "request_id", "inventory", "item_id", "item_index", "condition", "messages_hash", "choices", "position_values", "mode",
    "raw_reply", "choice_logprobs", "outcome", "parse_method", "position", "value", "expected_value", "entropy",
    "option_mass", "latency_s", "input_tokens", "output_tokens", "error", "attempts", "reasks", "reask_replies",
    "answered_at",
)


@dataclass
class ResponseRow:
    """One stored answer (or failure). JSON-valued fields are Python objects here."""

    request_id: str
    inventory: str
    item_id: str
    item_index: int
    condition: dict[str, Any]
    messages_hash: str
    choices: list[str]
    position_values: list[int]
    mode: str
    raw_reply: str | None
    choice_logprobs: dict[str, float] | None
    outcome: str
    parse_method: str | None = None
    position: int | None = None
    value: float | None = None
    expected_value: float | None = None
    entropy: float | None = None
    option_mass: float | None = None
    latency_s: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    error: str | None = None
    attempts: int = 1
    reasks: int = 0
    reask_replies: list[str] | None = None
    answered_at: float = 0.0


_JSON_FIELDS = ("condition", "choices", "position_values", "choice_logprobs", "reask_replies")


class RunStore:
    """Open (creating if needed) the responses database of a run directory."""

    def __init__(self, path: Path):
        self.path = path
        self.conn = sqlite3.connect(path, timeout=60, isolation_level=None)
        self._saved_prompts: set[str] = set()  # prompts this connection has inserted (they stay: never deleted)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.executescript(_SCHEMA)
        self.conn.execute(
            "INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
        )

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "RunStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def answered_ids(self) -> set[str]:
        """Ids of requests that have an answer (failures are not answers: they are retried)."""
        return {row[0] for row in self.conn.execute("SELECT DISTINCT request_id FROM responses WHERE error IS NULL")}

    def previous_attempts(self, request_id: str) -> int:
        row = self.conn.execute("SELECT MAX(attempts) FROM responses WHERE request_id = ?", (request_id,)).fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def is_answered(self, request_id: str) -> bool:
        return self.conn.execute(
            "SELECT 1 FROM responses WHERE request_id = ? AND error IS NULL LIMIT 1", (request_id,)
        ).fetchone() is not None

    def claims(self, *, since: float | None = None, lease_s: float | None = None) -> Claims:
        """Claims on this store's requests (see :mod:`psychometrics.claims`). A request counts as done
        when it has an answer, or (with ``since``) a failure stored at or after ``since`` (another
        process tried it during this run; the next run retries it)."""

        def done(conn: sqlite3.Connection, request_id: str) -> bool:
            return conn.execute(
                "SELECT 1 FROM responses WHERE request_id = ? AND (error IS NULL OR answered_at >= ?) LIMIT 1",
                (request_id, float("inf") if since is None else since),
            ).fetchone() is not None

        return Claims(self.conn, done=done, **({} if lease_s is None else {"lease_s": lease_s}))

    def save_prompt(self, messages_hash: str, messages: list[list[str]]) -> None:
        if messages_hash in self._saved_prompts:  # repeated samples of one prompt: stored once already
            return
        self.conn.execute(
            "INSERT OR IGNORE INTO prompts(messages_hash, messages) VALUES (?, ?)",
            (messages_hash, json.dumps(messages, ensure_ascii=False)),
        )
        self._saved_prompts.add(messages_hash)

    def write(
        self, rows: list[ResponseRow], *, prompt: list[list[str]] | None = None, claims: Claims | None = None
    ) -> bool:
        """Store the rows of one request in one transaction, replacing an earlier failure of it, with its
        ``prompt`` messages (stored once per distinct prompt) and dropping its claim in ``claims``.

        A failure never replaces an answer (should two processes have sent one request). Durable when
        this returns; a request's rows are all there or none is. Returns whether the rows were stored.
        """
        return self.write_many([(rows, prompt)], claims=claims)[0]

    def write_many(
        self, requests: list[tuple[list[ResponseRow], list[list[str]] | None]], *, claims: Claims | None = None
    ) -> list[bool]:
        """:meth:`write` for several requests (rows, prompt) in one transaction: one commit for the answers
        that arrive together. Durable when this returns; returns whether each request's rows were stored."""
        with self._transaction():
            return [self._write_one(rows, prompt, claims) for rows, prompt in requests]

    def write_and_claim(
        self, items: list[tuple[list[ResponseRow], list[list[str]] | None, str | None]], claims: Claims
    ) -> list[str | None]:
        """:meth:`write_many` for (rows, prompt, next request id) items, and in the same transaction a claim
        on each next request (None when there is none): a worker pool's answers and its next claims in
        one commit. Returns each claim's status."""
        with self._transaction():
            for rows, prompt, _ in items:
                self._write_one(rows, prompt, claims)
            return [None if following is None else claims.claim_in_transaction(following) for *_, following in items]

    def _write_one(self, rows: list[ResponseRow], prompt: list[list[str]] | None, claims: Claims | None) -> bool:
        now = time.time()
        placeholders = ", ".join("?" for _ in COLUMNS)
        records = []
        for row in rows:
            row.answered_at = row.answered_at or now
            values = [getattr(row, column) for column in COLUMNS]
            for index, column in enumerate(COLUMNS):
                if column in _JSON_FIELDS and values[index] is not None:
                    values[index] = json.dumps(values[index], ensure_ascii=False, sort_keys=column != "choices")
            records.append(values)
        request_id = rows[0].request_id
        failed = any(row.error is not None for row in rows)
        if claims is not None:
            claims.release(request_id)
        if failed and self.is_answered(request_id):
            return False
        if prompt is not None:
            self.save_prompt(rows[0].messages_hash, prompt)
        self.conn.execute("DELETE FROM responses WHERE request_id = ?", (request_id,))
        self.conn.executemany(f"INSERT INTO responses ({', '.join(COLUMNS)}) VALUES ({placeholders})", records)
        return True

    @contextmanager
    def _transaction(self):
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            self._saved_prompts.clear()  # some may have been inserted in the rolled-back transaction
            raise
        self.conn.execute("COMMIT")

    def rows(self) -> Iterator[ResponseRow]:
        cursor = self.conn.execute(f"SELECT {', '.join(COLUMNS)} FROM responses ORDER BY rowid")
        for record in cursor:
            data = dict(zip(COLUMNS, record))
            for column in _JSON_FIELDS:
                if data[column] is not None:
                    data[column] = json.loads(data[column])
            yield ResponseRow(**data)

    def count(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0])


