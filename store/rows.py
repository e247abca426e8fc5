"""Writing rows by column name, so that a row never depends on a table's column order."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

import duckdb


def _as_mapping(row) -> Mapping:
    return dataclasses.asdict(row) if dataclasses.is_dataclass(row) else row


def insert_rows(con: duckdb.DuckDBPyConnection, table: str, rows: Iterable, *, replace: bool = False) -> int:
    """Insert mappings (or dataclasses) whose keys are column names; columns left out get NULL.

    All rows must have the same keys. ``replace`` makes it ``INSERT OR REPLACE`` (tables with a
    primary key). Returns the number of rows written.

    >>> con = duckdb.connect()
    >>> _ = con.execute("CREATE TABLE t (a INTEGER, b VARCHAR, c DOUBLE)")
    >>> insert_rows(con, "t", [{"b": "x", "a": 1}, {"b": "y", "a": 2}])
    2
    >>> con.execute("SELECT * FROM t ORDER BY a").fetchall()
    [(1, 'x', None), (2, 'y', None)]
    """
    rows = [_as_mapping(r) for r in rows]
    if not rows:
        return 0
    columns = list(rows[0])
    for i, r in enumerate(rows):
        if list(r) != columns:
            raise ValueError(f"insert_rows({table}): row {i} has columns {list(r)}, expected {columns}")
    names = ", ".join(f'"{c}"' for c in columns)
    verb = "INSERT OR REPLACE" if replace else "INSERT"
    con.executemany(f"{verb} INTO {table} ({names}) VALUES ({', '.join('?' for _ in columns)})",
                    [[r[c] for c in columns] for r in rows])
    return len(rows)


def insert_row(con: duckdb.DuckDBPyConnection, table: str, row, *, replace: bool = False) -> None:
    """One row by column name (see ``insert_rows``)."""
    insert_rows(con, table, [row], replace=replace)
