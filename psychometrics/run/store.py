"""The run store: ``responses.sqlite`` beside ``manifest.json`` in a run directory.

One row per request and item (a request asks one item by default, or several), keyed by the request
id (a hash of everything that changes the answer) and the item id, written and committed as soon as
the answer arrives. A request whose id has an answered row is never sent again, and an answer is never
replaced by another, so re-running a command or resuming after a crash sends only what is missing.
Failed requests are stored with their error and sent again on the next run (all of them, permanent
errors such as a rejected key included: they were not answered). A row SQLite refuses is stored as a
failure saying why, without undoing the other answers committed with it. Each distinct prompt is
stored once, in ``prompts``, so repeated samples do not repeat the text.

SQLite runs in WAL mode, so readers (a report) never block the writer. Several processes on one machine
may work on one store at once: each claims a request before sending it (:mod:`psychometrics.engine.claims`,
table ``claims``, created by the first run that sends), so no request is sent twice, and commits its
answer and drops its claim together. Commands that only read (score, report, reproduce, validity) open
the store read-only (:func:`read_only_stores`) and never create or change it; an unreadable store is a
one-line error naming the file.

Every open checks the store (:func:`open_store`): an existing one must have all its tables and the
schema version in ``meta`` that this psytest knows (it is never re-created over a damaged one), and must
pass SQLite's ``quick_check``. A store on read-only media is opened ``immutable`` (no ``-shm`` needed).
"""

from __future__ import annotations

import contextvars
import json
import os
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from psychometrics.engine.claims import Claims
from psychometrics.errors import PsytestError
from psychometrics.models.base import clean_text
from psychometrics.run.schema import Column, StoreSchema, Table, add_missing_columns, column, read_rows, table_of

@dataclass
class ResponseRow:
    """One stored answer (or failure), and the definition of the ``responses`` table (:data:`RESPONSES`).
    JSON-valued fields are Python objects here."""

    request_id: str = column("text")
    inventory: str = column("text")
    item_id: str = column("text")
    item_index: int = column("int", sql_default="0")
    condition: dict[str, Any] = column("object:scalar")
    messages_hash: str = column("text", references="prompts(messages_hash)")
    choices: list[str] = column("array:text")
    position_values: list[int] = column("array:int")
    mode: str = column("text")
    raw_reply: str | None = column("text?")
    choice_logprobs: dict[str, float] | None = column("object:real?")
    outcome: str = column("text")
    parse_method: str | None = column("text?", None)
    position: int | None = column("int?", None)
    value: float | None = column("real?", None)
    expected_value: float | None = column("real?", None)
    entropy: float | None = column("real?", None)
    option_mass: float | None = column("real?", None)
    latency_s: float | None = column("real?", None)
    input_tokens: int | None = column("int?", None)
    output_tokens: int | None = column("int?", None)
    error: str | None = column("text?", None)
    attempts: int = column("int", 1, sql_default="1")
    reasks: int = column("int", 0, sql_default="0")
    reask_replies: list[str] | None = column("array:text?", None)
    answered_at: float = column("real", 0.0)
    note: str | None = column("text?", None)  # e.g. a re-ask that failed (the reply before it is kept)
    finish_reason: str | None = column("text?", None)  # the server's: stop, length (cut at max_tokens), ...
    served_model: str | None = column("text?", None)  # the model the server says answered
    system_fingerprint: str | None = column("text?", None)  # the server's build/configuration fingerprint
    cached_input_tokens: int | None = column("int?", None)  # prompt tokens served from a provider's cache
    cost: float | None = column("real?", None)  # what the call cost (price map currency), when known
    reused_from: str | None = column("text?", None)  # the run an answer was copied from (--reuse), else None


PROMPTS = Table("prompts", (Column("messages_hash", "text"), Column("messages", "array:array")),
                primary_key=("messages_hash",))
RESPONSES = table_of(ResponseRow, "responses", primary_key=("request_id", "item_id"),
                     indexes=(("responses_item", ("inventory", "item_id")),),
                     since={"note": 2, **dict.fromkeys(("finish_reason", "served_model", "system_fingerprint",
                                                         "cached_input_tokens", "cost", "reused_from"), 3)})
#: The provider batches a ``--batch`` run submitted (:mod:`psychometrics.engine.batch`), one row per
#: submission, written before each step that talks to the provider: ``submission`` is psytest's own key
#: (sent with the batch so a batch created by a killed process is found again), ``request_ids`` the
#: request ids inside it, ``state`` one of ``uploading`` (the input file may be uploaded), ``creating``
#: (``file_id`` uploaded; the batch may be created), ``submitted`` (``batch_id`` known: polled),
#: ``ended`` (every result committed) or ``refused`` (the provider would not create it: ``error``);
#: ``owner`` the process taking it through its steps (``host:pid:token``, as claims name owners).
BATCHES = Table("batches", (
    Column("submission", "text"), Column("provider", "text"), Column("endpoint", "text"),
    Column("request_ids", "array:text"), Column("state", "text"), Column("file_id", "text?"),
    Column("batch_id", "text?"), Column("provider_status", "text?"), Column("created_at", "real"),
    Column("updated_at", "real"), Column("results_committed", "int", sql_default="0"),
    Column("resubmitted", "int", sql_default="0"), Column("error", "text?"), Column("owner", "text?"),
), primary_key=("submission",), indexes=(("batches_state", ("state",)),), since=3)


def _to_version_3(conn: sqlite3.Connection) -> None:
    add_missing_columns(RESPONSES, 2)(conn)
    for statement in BATCHES.ddl():
        conn.execute(statement)


#: ``responses.sqlite``: version 2 added ``note`` (stores of version 1 written late already had it);
#: version 3 what the server says about each reply (finish reason, served model, fingerprint, cached
#: prompt tokens, cost), where a reused answer came from, and the ``batches`` table.
RESPONSE_STORE = StoreSchema(3, (BATCHES, PROMPTS, RESPONSES), migrations={1: add_missing_columns(RESPONSES, 1),
                                                                           2: _to_version_3})
COLUMNS = RESPONSES.names


#: What SQLite refuses to store from a row (UnicodeEncodeError, a lone surrogate, is a ValueError).
_UNSTORABLE = (sqlite3.Error, ValueError, TypeError, OverflowError)

_JSON_FIELDS = RESPONSES.json_columns

_READ_ONLY = contextvars.ContextVar("psytest_read_only_stores", default=False)


@contextmanager
def read_only_stores() -> Iterator[None]:
    """Inside this block, stores opened without an explicit ``read_only`` are opened read-only (the
    commands that only read use it, so they never create or change a store)."""
    token = _READ_ONLY.set(True)
    try:
        yield
    finally:
        _READ_ONLY.reset(token)


def store_error(path: Path, exc: BaseException) -> PsytestError:
    """A one-line error for a store SQLite cannot open or read, naming the file and what to do."""
    text = str(exc)
    if "readonly" in text or "read-only" in text:
        hint = "it is read-only; make it and its directory writable, or copy the run directory somewhere writable"
    elif "no such table" in text:
        hint = "not a psytest store; give a run directory that psytest wrote"
    elif "not a database" in text or "malformed" in text or "corrupt" in text:
        hint = ("not a readable SQLite database (corrupt, or not a psytest store); restore it from a backup, "
                "or run again into a new --out")
    elif "locked" in text or "busy" in text:
        hint = "another process holds it locked; try again when that process has finished"
    else:
        hint = "cannot open it; check that it and its directory exist and are readable"
    return PsytestError(f"{path}: {hint} ({type(exc).__name__}: {text})")


_checked: dict[tuple, None] = {}  # stores that passed quick_check in this process, by path, size and time


def _on_read_only_media(path: Path) -> bool:
    """Whether nothing can write beside ``path``: its directory is on a read-only file system or not
    writable by us (root passes permission checks, but not a read-only mount)."""
    directory = path.resolve().parent
    try:
        if os.statvfs(directory).f_flag & os.ST_RDONLY:
            return True
    except OSError:
        pass
    return not os.access(directory, os.W_OK)


def _connect_read_only(path: Path) -> sqlite3.Connection:
    """A read-only connection that never creates or changes a file.

    A store in WAL mode needs its ``-shm`` index, which a reader creates beside the database; in a
    read-only directory (a read-only mount, an archive) it cannot. SQLite's answer for files on
    read-only media is ``immutable=1``: no locks, no ``-shm``, the database file read as it is. That
    is only correct when every committed answer is in the database file, i.e. there is no ``-wal``
    with content (a finished run checkpoints it when its last connection closes); with one, ``mode=ro``
    is tried (it works when a ``-shm`` is there too), else the error says what to do.
    """
    uri = path.resolve().as_uri()
    wal = Path(f"{path}-wal")
    if not _on_read_only_media(path):
        return sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=60, isolation_level=None)
    if not wal.exists() or wal.stat().st_size == 0:
        return sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True, timeout=60, isolation_level=None)
    conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=60, isolation_level=None)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error:
        conn.close()
        raise PsytestError(
            f"{path}: its last answers are still in its write-ahead log ({wal.name}), which SQLite can only read "
            "where it may create an index file beside it, and this directory is read-only; copy the run directory "
            "somewhere writable and read it there") from None
    return conn


def _store_version(conn: sqlite3.Connection, path: Path, schema: StoreSchema) -> int | None:
    """The store's schema version, or None for an empty database (no tables at all: a new store). A store
    that has tables must be one psytest wrote, whole: every table of ``schema``, and a ``meta.schema_version``
    this psytest knows (older ones are migrated by writers, read as they are by readers). Anything else (a
    table dropped, another program's database, a store from a newer psytest) is refused, never re-created:
    re-creating a dropped ``responses`` table would make a resumed run send everything again."""
    present = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if not present:
        return None
    if "meta" not in present:
        raise PsytestError(f"{path}: not a psytest store (no 'meta' table); give a run directory psytest wrote, "
                           "or another --out")
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    version = int(row[0]) if row is not None and str(row[0]).isdigit() else None
    if version is None or not 1 <= version <= schema.version:
        found = "none" if row is None else repr(row[0])
        newer = version is not None and version > schema.version
        raise PsytestError(f"{path}: store schema version {found}, but this psytest reads versions 1 to "
                           f"{schema.version}; " + ("upgrade psytest to read it" if newer
                                                    else "it is not a store this psytest wrote"))
    missing = [t for t in schema.tables_of(version) if t not in present]
    if missing:
        raise PsytestError(f"{path}: the store lacks its '{missing[0]}' table (damaged, or edited by hand); it is "
                           "not used, so nothing is sent again: restore it from a backup, or run into a new --out")
    return version


def check_integrity(conn: sqlite3.Connection, path: Path, *, full: bool = False, name: Path | None = None) -> None:
    """SQLite's own check of the whole file: ``quick_check`` (every page and record readable, O(size);
    cached per file state within a process) or, with ``full``, ``integrity_check`` (also every index
    against its table, for ``reproduce``). A store that fails is a one-line error naming ``name`` (default
    ``path``), never read on."""
    try:
        stat = path.stat()
        wal = Path(f"{path}-wal")
        state = (str(path.resolve()), full, stat.st_size, stat.st_mtime_ns,
                 wal.stat().st_size if wal.exists() else -1, wal.stat().st_mtime_ns if wal.exists() else -1)
    except OSError:
        state = None
    if state is not None and state in _checked:
        return
    pragma = "integrity_check" if full else "quick_check"
    try:
        problems = [row[0] for row in conn.execute(f"PRAGMA {pragma}(20)")]
    except sqlite3.Error as exc:
        raise store_error(name or path, exc) from None
    if problems != ["ok"]:
        raise PsytestError(f"{name or path}: fails SQLite's {pragma} ({problems[0]}"
                           + (f"; {len(problems) - 1} more problems" if len(problems) > 1 else "")
                           + "); restore it from a backup, or run again into a new --out")
    if state is not None:
        _checked[state] = None


def open_store(path: Path, schema: StoreSchema, read_only: bool | None = None) -> tuple[sqlite3.Connection, bool, int]:
    """(autocommit connection to the SQLite store at ``path``, whether it is read-only, its schema version).

    Read-only (``read_only``, or by default inside :func:`read_only_stores`): nothing created or
    changed (see :func:`_connect_read_only` for read-only directories), the store must exist, and an
    older version is read as it is. Otherwise a missing store is created, in WAL mode, in one
    transaction, and an older one is migrated (:meth:`StoreSchema.migrate`) in one transaction. Either
    way an existing store must be a whole psytest store of a known version (:func:`_store_version`) and
    pass SQLite's quick check (:func:`check_integrity`). Any failure is a one-line :class:`PsytestError`
    naming the file."""
    path = Path(path)
    read_only = _READ_ONLY.get() if read_only is None else read_only
    if read_only and not path.is_file():
        raise PsytestError(f"{path}: no such store; give a run directory that psytest wrote")
    conn = None
    try:
        if read_only:
            conn = _connect_read_only(path)
            version = _store_version(conn, path, schema)
            if version is None:
                raise PsytestError(f"{path}: an empty database, not a psytest store; give a run directory that "
                                   "psytest wrote")
            check_integrity(conn, path)
        else:
            # check_same_thread=False: the send engine commits from a thread of its own (engine.pool.StoreThread),
            # one thread at a time
            conn = sqlite3.connect(path, timeout=60, isolation_level=None, check_same_thread=False)
            if _store_version(conn, path, schema) is not None:
                check_integrity(conn, path)  # before anything is written to it
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("BEGIN IMMEDIATE")  # created or migrated whole or not at all, even by two processes at once
            try:
                found = _store_version(conn, path, schema)
                if found is None:
                    for statement in schema.ddl():
                        conn.execute(statement)
                    conn.execute("INSERT INTO meta(key, value) VALUES ('schema_version', ?)", (str(schema.version),))
                elif found < schema.version:
                    schema.migrate(conn, found)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            version = schema.version
        conn.execute(f"SELECT 1 FROM {schema.tables[-1].name} LIMIT 1").fetchall()
    except PsytestError:
        if conn is not None:
            conn.close()
        raise
    except sqlite3.Error as exc:
        if conn is not None:
            conn.close()
        raise store_error(path, exc) from None
    return conn, read_only, version


# What each column may hold (its kind, :mod:`psychometrics.run.schema`) is checked in SQL before a command
# reads a store: a value of another type (text where a number belongs, a NULL in a required column, JSON
# that is not JSON or not of its shape) is one line naming the file, the row and the column, not a
# TypeError in the analysis.
_SQL_TYPES = {"text": "'text'", "int": "'integer'", "real": "'integer', 'real'"}
_JSON_ITEM_TYPES = {"text": "'text'", "int": "'integer'", "real": "'integer', 'real'",
                    "scalar": "'text', 'integer', 'real', 'true', 'false', 'null'", "array": "'array'"}


def _wrong(name: str, kind: str) -> str:
    """An SQL condition true when column ``name`` does not hold ``kind`` (see :mod:`psychometrics.run.schema`)."""
    nullable = kind.endswith("?")
    kind = kind.rstrip("?")
    if kind in _SQL_TYPES:
        wrong = f"typeof({name}) NOT IN ({_SQL_TYPES[kind]})"
    else:
        shape, _, items = kind.partition(":")
        wrong = f"typeof({name}) != 'text' OR NOT json_valid({name}) OR json_type({name}) != '{shape}'"
        if items:
            wrong += (f" OR EXISTS (SELECT 1 FROM json_each({name}) WHERE json_each.type NOT IN "
                      f"({_JSON_ITEM_TYPES[items]}))")
    return f"({name} IS NOT NULL AND ({wrong}))" if nullable else f"({name} IS NULL OR {wrong})"


def check_contents(conn: sqlite3.Connection, path: Path, table: Table = RESPONSES, version: int | None = None) -> None:
    """Raise a one-line :class:`PsytestError` naming ``path``, the row and the column when a column of
    ``table`` is missing (except those a store of ``version`` predates) or holds a value of another kind
    than the table defines."""
    optional = table.added_after(version) if version is not None else ()
    types = table.kinds
    name = table.name
    try:
        present = {row[1] for row in conn.execute(f"PRAGMA table_info({name})")}
        if not present:
            raise PsytestError(f"{path}: has no table {name}; not a psytest store: give a run directory psytest wrote")
        types = {c: t for c, t in types.items() if c in present or c not in optional}
        missing = [c for c in types if c not in present]
        if missing:
            raise PsytestError(f"{path}: table {name} has no column '{missing[0]}'; not a store this psytest wrote: "
                               "give a run directory psytest wrote")
        conditions = {name_: _wrong(name_, kind) for name_, kind in types.items()}
        found = conn.execute(f"SELECT rowid FROM {name} WHERE {' OR '.join(conditions.values())} LIMIT 1").fetchone()
        if found is None:
            return
        for bad, condition in conditions.items():
            value = conn.execute(f"SELECT {bad} FROM {name} WHERE rowid = ? AND {condition}", found).fetchone()
            if value is not None:
                break
    except sqlite3.Error as exc:
        raise store_error(path, exc) from None
    shown = repr(value[0]) if len(repr(value[0])) <= 40 else repr(value[0])[:37] + "..."
    expected = types[bad].rstrip("?").replace("real", "number").replace("int", "whole number")
    raise PsytestError(f"{path}: {name} row {found[0]}, column '{bad}': {shown} is not {expected.replace(':', ' of ')}"
                       f"{'' if types[bad].endswith('?') else ' (required)'}; the store was changed or damaged: "
                       "restore it from a backup, or run again into a new --out")


def _as_failure(rows: list[ResponseRow], exc: BaseException) -> None:
    """Turn rows SQLite refused into storable failure rows saying why (in place)."""
    reason = clean_text(f"could not store the reply ({type(exc).__name__}: {exc})")[:2000]
    for row in rows:
        row.raw_reply = clean_text(str(row.raw_reply)) if row.raw_reply is not None else None
        row.reask_replies = [clean_text(str(r)) for r in row.reask_replies] if row.reask_replies else None
        row.outcome, row.error, row.note, row.choice_logprobs = "error", reason, None, None
        row.parse_method = row.position = row.value = row.expected_value = row.entropy = row.option_mass = None
        row.input_tokens = row.output_tokens = None


class RunStore:
    """The responses database of a run directory: created if needed, or read-only (see :func:`open_store`)."""

    #: The send engine may commit answers and claims from its store thread (engine.pool.StoreThread):
    #: nothing else uses this connection while it sends.
    commits_in_thread = True

    def __init__(self, path: Path, *, read_only: bool | None = None):
        self.path = path
        self.conn, self.read_only, self.version = open_store(path, RESPONSE_STORE, read_only)
        self._saved_prompts: set[str] = set()  # prompts this connection has inserted (they stay: never deleted)
        missing = set(RESPONSES.added_after(self.version))  # an older store, read as it is
        self._columns = tuple(c for c in COLUMNS if c not in missing)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "RunStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def answered_ids(self) -> set[str]:
        """Ids of requests that have an answer (failures are not answers: they are retried)."""
        return {row[0] for row in self.conn.execute("SELECT DISTINCT request_id FROM responses WHERE error IS NULL")}

    def failed_attempts(self) -> dict[str, int]:
        """Attempts so far of every request whose stored outcome is a failure (one query for a whole run)."""
        return dict(self.conn.execute(
            "SELECT request_id, MAX(attempts) FROM responses WHERE error IS NOT NULL GROUP BY request_id"))

    def claims(self, *, since: float | None = None, lease_s: float | None = None) -> Claims:
        """Claims on this store's requests (see :mod:`psychometrics.engine.claims`). A request counts as done
        when it has an answer, or (with ``since``) a failure stored at or after ``since`` (another
        process tried it during this run; the next run retries it)."""

        def done(conn: sqlite3.Connection, request_id: str) -> bool:
            return conn.execute(
                "SELECT 1 FROM responses WHERE request_id = ? AND (error IS NULL OR answered_at >= ?) LIMIT 1",
                (request_id, float("inf") if since is None else since),
            ).fetchone() is not None

        return Claims(self.conn, done=done, **({} if lease_s is None else {"lease_s": lease_s}))

    def save_prompt(self, messages_hash: str, messages: list[list[str]]) -> bool:
        """Store a prompt once; whether this call inserted it (it was not known to this connection)."""
        if messages_hash in self._saved_prompts:  # repeated samples of one prompt: stored once already
            return False
        self.conn.execute(
            "INSERT OR IGNORE INTO prompts(messages_hash, messages) VALUES (?, ?)",
            (messages_hash, json.dumps(messages, ensure_ascii=False)),
        )
        self._saved_prompts.add(messages_hash)
        return True

    def write(
        self, rows: list[ResponseRow], *, prompt: list[list[str]] | None = None, claims: Claims | None = None
    ) -> bool:
        """Store the rows of one request in one transaction, replacing an earlier failure of it, with its
        ``prompt`` messages (stored once per distinct prompt) and dropping its claim in ``claims``.

        Nothing replaces an answer (should two processes have sent one request, the first answer stays).
        Rows SQLite refuses are stored as a failure saying why, and changed in place to match. Durable
        when this returns; a request's rows are all there or none is. Returns whether the rows were stored.
        """
        return self.write_many([(rows, prompt)], claims=claims)[0]

    def write_many(
        self, requests: list[tuple[list[ResponseRow], list[list[str]] | None]], *, claims: Claims | None = None
    ) -> list[bool]:
        """:meth:`write` for several requests (rows, prompt) in one transaction: one commit for the answers
        that arrive together. Durable when this returns; returns whether each request's rows were stored."""
        return self._in_transaction(lambda write: [write(rows, prompt, claims) for rows, prompt in requests])

    def write_and_claim(
        self, items: list[tuple[list[ResponseRow], list[list[str]] | None, str | None]], claims: Claims
    ) -> list[str | None]:
        """:meth:`write_many` for (rows, prompt, next request id) items, and in the same transaction a claim
        on each next request (None when there is none): a worker pool's answers and its next claims in
        one commit. Returns each claim's status."""
        def write_all(write):
            for rows, prompt, _ in items:
                write(rows, prompt, claims)
            return [None if following is None else claims.claim_in_transaction(following) for *_, following in items]

        return self._in_transaction(write_all)

    def _in_transaction(self, work):
        """``work(write)`` in one transaction, ``write`` being :meth:`_write_one`; if SQLite refuses a row,
        the transaction is rolled back and done again with :meth:`_write_safely`, a savepoint per request
        (two statements more each, so only then), so that only the refused request becomes a failure."""
        try:
            with self._transaction():
                return work(lambda rows, prompt, claims: self._write_one(rows, prompt, claims, []))
        except _UNSTORABLE:
            with self._transaction():
                return work(self._write_safely)

    def _write_safely(self, rows: list[ResponseRow], prompt: list[list[str]] | None, claims: Claims | None) -> bool:
        """:meth:`_write_one` in a savepoint of the caller's transaction: rows SQLite refuses (text it cannot
        encode, a number too large) are stored as a failure with the reason instead, and the other requests
        of the transaction are unaffected."""
        self.conn.execute("SAVEPOINT psytest_request")
        added: list[str] = []
        try:
            stored = self._write_one(rows, prompt, claims, added)
        except _UNSTORABLE as exc:
            self.conn.execute("ROLLBACK TO psytest_request")
            self._saved_prompts.difference_update(added)  # rolled back with the savepoint
            _as_failure(rows, exc)
            cleaned = [[clean_text(str(part)) for part in message] for message in prompt] if prompt else None
            stored = self._write_one(rows, cleaned, claims, added)
        self.conn.execute("RELEASE psytest_request")
        return stored

    def _write_one(self, rows: list[ResponseRow], prompt: list[list[str]] | None, claims: Claims | None,
                   added: list[str]) -> bool:
        now = time.time()
        placeholders = ", ".join("?" for _ in COLUMNS)
        records = []
        for row in rows:
            row.answered_at = row.answered_at or now
            values = [getattr(row, name) for name in COLUMNS]
            for index, name in enumerate(COLUMNS):
                if name in _JSON_FIELDS and values[index] is not None:
                    values[index] = json.dumps(values[index], ensure_ascii=False, sort_keys=name != "choices")
            records.append(values)
        request_id = rows[0].request_id
        if claims is not None:
            claims.release(request_id)
        # an earlier failure is replaced; an answer (another process's, meanwhile) stays: the rows are ignored
        self.conn.execute("DELETE FROM responses WHERE request_id = ? AND error IS NOT NULL", (request_id,))
        inserted = self.conn.executemany(
            f"INSERT OR IGNORE INTO responses ({', '.join(COLUMNS)}) VALUES ({placeholders})", records).rowcount
        if inserted <= 0:
            return False
        if prompt is not None and self.save_prompt(rows[0].messages_hash, prompt):
            added.append(rows[0].messages_hash)
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
        return read_rows(self.conn, RESPONSES, self._columns, ResponseRow)

    def count(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    def check_contents(self) -> None:
        """One-line error unless every column holds what psytest writes (:func:`check_contents`)."""
        check_contents(self.conn, self.path, RESPONSES, self.version)
    def fingerprint(self) -> dict:
        """What the store holds, cheaply (one scan inside SQLite): rows, failures, the largest rowid and
        totals of the commit times and values. Any answer added or replaced (a failure answered on a
        later run) changes it, so a table derived from an earlier state is told apart (see
        :mod:`psychometrics.run.outputs`)."""
        rows, failed, last, times, values, expected = self.conn.execute(
            "SELECT count(*), count(error), coalesce(max(rowid), 0), total(answered_at), total(value), "
            "total(expected_value) FROM responses").fetchone()
        return {"rows": rows, "failed": failed, "max_rowid": last, "answered_at_total": round(times, 6),
                "value_total": round(values, 9), "expected_value_total": round(expected, 9)}

    @contextmanager
    def reading(self) -> Iterator[dict]:
        """A read transaction (one consistent snapshot, even while another process writes); yields the
        :meth:`fingerprint` of what is read inside it."""
        self.conn.execute("BEGIN")
        try:
            self.check_contents()  # before the fingerprint reads the columns
            yield self.fingerprint()
        finally:
            self.conn.execute("COMMIT")


