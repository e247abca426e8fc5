"""Opening the store: one place for DuckDB's locking rules, and one transaction helper."""

from __future__ import annotations

import hashlib
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from core.errors import JcurateError, first_line
from store import DEFAULT_DB  # noqa: F401 (also importable from here)
from store.schema import TABLES, VIEWS, migrate_decisions

LOCK_WAIT_S = 30.0


def is_lock_conflict(e: Exception) -> bool:
    return isinstance(e, duckdb.IOException) and "lock" in str(e).lower()


class StoreLocked(JcurateError):
    """Another process held the store for longer than the caller would wait."""


# rows per row group of the store's tables. DuckDB writes each full row group of an insert straight to the
# file, compressed on every core, instead of logging the rows to the WAL and compressing them in the commit's
# checkpoint: with its default (122,880 rows) a 60k-record run's ingest filled none, and its insert and commit
# took 0.8-1.2 s (0.4-0.5 s with this). A setting of the connection, not of the file: every writing
# connection must use the same, or its checkpoint merges the row groups (0.45 s for those 60k records, once).
ROW_GROUP_ROWS = 16_384


def _open(db: str | Path, read_only: bool, config: dict | None) -> duckdb.DuckDBPyConnection:
    """A read-only connection to the file, or a writing one: the file attached with ``ROW_GROUP_ROWS`` to
    an in-memory database named after the file's path, so that, as with ``duckdb.connect(path)``, the
    connections of one process share one database (a file is open once per process) and the file is
    released when the last of them closes."""
    if read_only:
        return duckdb.connect(str(db), read_only=True, config=config or {})
    home = "jcurate-store-" + hashlib.sha1(str(Path(db).resolve()).encode()).hexdigest()[:16]
    con = duckdb.connect(f":memory:{home}", config=config or {})
    try:
        path = str(db).replace("'", "''")
        con.execute(f"ATTACH IF NOT EXISTS '{path}' AS store (ROW_GROUP_SIZE {ROW_GROUP_ROWS})")
        con.execute("USE store")
    except BaseException:
        con.close()  # a lock another process holds included: connect waits and retries
        raise
    return con


class NotAStore(JcurateError):
    """A --db that names a file DuckDB cannot open as a database, or one that is not a DuckDB file."""


class StorePermission(JcurateError):
    """A --db this user may not read, write, or create in its folder: a store, or not, it cannot be told."""


def permission_denied(db: str | Path) -> StorePermission:
    """What this user may not do to the store ``db``, named: read it, write it, or create it in its folder."""
    path = Path(db)
    if not path.exists():
        return StorePermission(f"{db} cannot be created: permission denied in its folder {path.parent}")
    if not os.access(path, os.R_OK):
        return StorePermission(f"{db} cannot be read: permission denied (its mode or owner keeps this user out)")
    return StorePermission(f"{db} cannot be written: permission denied (its mode or owner keeps this user out; "
                           f"commands that only read it, such as `jcurate sql`, can)")


def check_folder_writable(db: str | Path) -> None:
    """Refuses to write a store whose folder this user may not write: DuckDB opens the file, then fails
    creating its write-ahead log (``<store>.wal``) beside it at the first write, with a traceback. A store
    not there yet is left to ``connect``, whose error says it cannot be created in its folder."""
    path = Path(db)
    folder = Path(os.path.abspath(path)).parent
    if path.exists() and not os.access(folder, os.W_OK | os.X_OK):
        raise StorePermission(f"{db} cannot be written: permission denied in its folder {folder} (DuckDB writes its "
                              f"log {path.name}.wal beside the store; commands that only read it, such as "
                              f"`jcurate sql`, can)")


# a DuckDB database file carries these bytes at offset 8 of its header
DUCKDB_MAGIC = b"DUCK"


def check_is_a_store(db: str | Path) -> None:
    """Refuses a file that is not a DuckDB database (an empty file included). DuckDB opens a JSON, CSV or Parquet
    file given as a database as an empty database in memory (``--db out/report.json``): a read would fail on
    tables it does not find, a write would vanish with the process."""
    path = Path(db)
    if not path.is_file():
        return
    try:
        with open(path, "rb") as f:
            head = f.read(12)
    except PermissionError:
        raise permission_denied(db) from None
    if head[8:12] != DUCKDB_MAGIC:
        what = "an empty file" if not head else "not a DuckDB database file"
        raise NotAStore(f"{db} is {what}, not a store: pass the store's path with --db (`jcurate run` makes one)")


def connect(db: str | Path, read_only: bool = False, lock_wait: float = LOCK_WAIT_S,
            config: dict | None = None) -> duckdb.DuckDBPyConnection:
    """Open the store. DuckDB lets one process write or several read; a store held by another
    process (a ``jcurate serve`` request, a running ``jcurate run``) is retried for ``lock_wait``
    seconds before giving up with ``StoreLocked``, a message that says so. ``config`` is DuckDB's
    connection configuration (the service passes its own)."""
    if read_only and not Path(db).is_file():
        raise JcurateError(f"no store at {db}: run `jcurate run` first (or pass --db)")
    check_is_a_store(db)
    if not read_only:
        check_folder_writable(db)
    deadline = time.monotonic() + lock_wait
    while True:
        try:
            con = _open(db, read_only, config)
            break
        except duckdb.IOException as e:
            if not is_lock_conflict(e):
                if "permission denied" in str(e).lower():  # DuckDB's text of EACCES: no sign of a file that is no store
                    raise permission_denied(db) from None
                raise NotAStore(f"{db} cannot be opened as a DuckDB store ({first_line(e)}): pass the store's "
                                f"path with --db") from None
            if time.monotonic() >= deadline:
                raise StoreLocked(f"the store {db} is locked by another process (waited {lock_wait:.0f} s): "
                                  f"{first_line(e)}") from None
            time.sleep(0.1)
    if not read_only:
        con.execute(TABLES)
        with transaction(con):
            if (done := migrate_decisions(con)) and done != "migrated":
                print(f"note: {db}: the per-stage decisions table was {done}", file=sys.stderr)
        con.execute(VIEWS)
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
