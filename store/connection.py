"""Opening the store: one place for DuckDB's locking rules, and one transaction helper."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from core.errors import JcurateError, first_line
from store.schema import SCHEMA

DEFAULT_DB = "jcurate.duckdb"
LOCK_WAIT_S = 30.0


def is_lock_conflict(e: Exception) -> bool:
    return isinstance(e, duckdb.IOException) and "lock" in str(e).lower()


class StoreLocked(JcurateError):
    """Another process held the store for longer than the caller would wait."""


def connect(db: str | Path, read_only: bool = False, lock_wait: float = LOCK_WAIT_S,
            config: dict | None = None) -> duckdb.DuckDBPyConnection:
    """Open the store. DuckDB lets one process write or several read; a store held by another
    process (a ``jcurate serve`` request, a running ``jcurate run``) is retried for ``lock_wait``
    seconds before giving up with ``StoreLocked``, a message that says so. ``config`` is DuckDB's
    connection configuration (the service passes its own)."""
    if read_only and not Path(db).is_file():
        raise JcurateError(f"no store at {db}: run `jcurate run` first (or pass --db)")
    deadline = time.monotonic() + lock_wait
    while True:
        try:
            con = duckdb.connect(str(db), read_only=read_only, config=config or {})
            break
        except duckdb.IOException as e:
            if not is_lock_conflict(e):
                raise
            if time.monotonic() >= deadline:
                raise StoreLocked(f"the store {db} is locked by another process (waited {lock_wait:.0f} s): "
                                  f"{first_line(e)}") from None
            time.sleep(0.1)
    if not read_only:
        con.execute(SCHEMA)
    return con


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """``BEGIN`` … ``COMMIT``, or ``ROLLBACK`` and re-raise on any error."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")
