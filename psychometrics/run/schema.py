"""The stores' tables, each defined once: a row class whose fields say what every column holds.

A store table is a dataclass whose fields carry their *kind* (:func:`column`): ``text``, ``int``,
``real`` (an integer is a real too), ``object`` or ``array`` (JSON text; ``array:text`` an array of
text, ``object:real`` an object of numbers, ``object:scalar`` of scalars), with a trailing ``?`` when the
column may be NULL. Everything else is derived from that one definition (:class:`Table`): the SQL
``CREATE TABLE``, the column list, which columns hold JSON, and the type check run in SQL before a store
is read (:func:`psychometrics.run.store.check_contents`).

Each store file has a schema version in its ``meta`` table and numbered migrations from every earlier
version (:class:`StoreSchema`): a writer migrates an older store in one transaction before it writes; a
reader takes an older store as it is (columns added later read as NULL); a store from a newer psytest,
or one whose tables are gone, is refused.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Callable

_SQL_TYPE = {"text": "TEXT", "int": "INTEGER", "real": "REAL", "object": "TEXT", "array": "TEXT"}


def column(kind: str, default: Any = dataclasses.MISSING, *, sql_default: str | None = None,
           references: str | None = None, factory: Callable[[], Any] | None = None) -> Any:
    """A dataclass field stored in a column of ``kind`` (see the module docstring). ``sql_default`` is the
    column's SQL ``DEFAULT``; ``references`` a foreign key (``table(column)``)."""
    metadata = {"kind": kind, "sql_default": sql_default, "references": references}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class Column:
    name: str
    kind: str
    sql_default: str | None = None
    references: str | None = None
    since: int = 1  # the store version that added it; older stores read it as NULL

    @property
    def nullable(self) -> bool:
        return self.kind.endswith("?")

    @property
    def base(self) -> str:
        """``text``, ``int``, ``real``, ``object`` or ``array``."""
        return self.kind.rstrip("?").partition(":")[0]

    @property
    def is_json(self) -> bool:
        return self.base in ("object", "array")

    def ddl(self) -> str:
        parts = [self.name, _SQL_TYPE[self.base]]
        if not self.nullable:
            parts.append("NOT NULL")
        if self.sql_default is not None:
            parts.append(f"DEFAULT {self.sql_default}")
        if self.references:
            parts.append(f"REFERENCES {self.references}")
        return " ".join(parts)


@dataclass(frozen=True)
class Table:
    """One table: its columns in order, primary key and indexes."""

    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...] = ()
    indexes: tuple[tuple[str, tuple[str, ...]], ...] = ()
    since: int = 1  # the store version that added the table; older stores (read as they are) lack it

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def json_columns(self) -> frozenset[str]:
        return frozenset(c.name for c in self.columns if c.is_json)

    @property
    def kinds(self) -> dict[str, str]:
        return {c.name: c.kind for c in self.columns}

    def added_after(self, version: int) -> tuple[str, ...]:
        """Columns a store of ``version`` may lack (added by a later migration)."""
        return tuple(c.name for c in self.columns if c.since > version)

    def ddl(self) -> list[str]:
        lines = [c.ddl() for c in self.columns]
        if self.primary_key:
            lines.append(f"PRIMARY KEY ({', '.join(self.primary_key)})")
        statements = [f"CREATE TABLE IF NOT EXISTS {self.name} (\n    " + ",\n    ".join(lines) + "\n)"]
        statements += [f"CREATE INDEX IF NOT EXISTS {index} ON {self.name}({', '.join(columns)})"
                       for index, columns in self.indexes]
        return statements


def table_of(row_class: type, name: str, *, primary_key: tuple[str, ...] = (),
             indexes: tuple[tuple[str, tuple[str, ...]], ...] = (), since: dict[str, int] | None = None) -> Table:
    """The :class:`Table` a row dataclass defines (its fields made with :func:`column`)."""
    columns = []
    for f in dataclasses.fields(row_class):
        meta = f.metadata
        if "kind" not in meta:
            raise TypeError(f"{row_class.__name__}.{f.name} is not a column (use column(kind))")
        columns.append(Column(f.name, meta["kind"], meta["sql_default"], meta["references"],
                              (since or {}).get(f.name, 1)))
    return Table(name, tuple(columns), primary_key, indexes)


META = Table("meta", (Column("key", "text"), Column("value", "text")), primary_key=("key",))


@dataclass(frozen=True)
class StoreSchema:
    """A store file: its tables, current ``version`` and ``migrations[v]``, the SQL statements (or a
    function of the connection) that take a store of version ``v`` to ``v + 1``."""

    version: int
    tables: tuple[Table, ...]
    migrations: dict[int, Callable[[sqlite3.Connection], None]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        missing = [v for v in range(1, self.version) if v not in self.migrations]
        if missing:
            raise ValueError(f"no migration from store version {missing[0]}")

    def ddl(self) -> list[str]:
        return [statement for table in (META, *self.tables) for statement in table.ddl()]

    @property
    def table_names(self) -> tuple[str, ...]:
        return ("meta", *(t.name for t in self.tables))

    def tables_of(self, version: int) -> tuple[str, ...]:
        """The tables a store of ``version`` has (tables added later are created by its migration)."""
        return ("meta", *(t.name for t in self.tables if t.since <= version))

    def migrate(self, conn: sqlite3.Connection, found: int) -> None:
        """Take a store of version ``found`` to :attr:`version`, inside the caller's write transaction."""
        for version in range(found, self.version):
            self.migrations[version](conn)
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(self.version),))


def add_missing_columns(table: Table, version: int) -> Callable[[sqlite3.Connection], None]:
    """A migration adding the columns of ``table`` that version ``version + 1`` introduced (each only if
    it is not there: some stores of the older version already had it)."""

    def migrate(conn: sqlite3.Connection) -> None:
        present = {row[1] for row in conn.execute(f"PRAGMA table_info({table.name})")}
        for col in table.columns:
            if col.since == version + 1 and col.name not in present:
                if not col.nullable and col.sql_default is None:
                    raise ValueError(f"column {col.name} cannot be added to existing rows without a default")
                conn.execute(f"ALTER TABLE {table.name} ADD COLUMN {col.ddl()}")

    return migrate


def read_rows(conn: sqlite3.Connection, table: Table, columns: tuple[str, ...], make: Callable[..., Any]) -> Iterator:
    """Every row of ``table`` in the order it was written, its JSON columns decoded, as ``make(**row)``;
    ``columns``: the ones to read (an older store lacks columns added later)."""
    decode = [name for name in columns if name in table.json_columns]
    for record in conn.execute(f"SELECT {', '.join(columns)} FROM {table.name} ORDER BY rowid"):
        data = dict(zip(columns, record))
        for name in decode:
            if data[name] is not None:
                data[name] = json.loads(data[name])
        yield make(**data)
