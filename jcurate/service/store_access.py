"""How the service opens the store: one read-only DuckDB connection per request.

Read-only is the connection's own mode, not a keyword filter: DuckDB refuses CREATE,
INSERT, UPDATE, DELETE, ... on it. External access is off as well, so ``COPY ... TO``,
``ATTACH``, ``read_csv('/etc/passwd')`` and extension installs are refused too. A fresh
connection per request sees runs that landed since the server started, and lets
``jcurate run`` take the write lock between requests (a request during a write gets 503).
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from pathlib import Path

import duckdb

from jcurate.service.provenance import jsonable
from store.connection import is_lock_conflict

CONNECTION_CONFIG = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "threads": 2,
    "memory_limit": "2GB",
}


class StoreBusy(Exception):
    """The store is locked by a writer (a running ``jcurate run`` or ``jcurate subset``)."""


class QueryError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@contextmanager
def read_only(db: str | Path):
    try:
        con = duckdb.connect(str(db), read_only=True, config=CONNECTION_CONFIG)
    except duckdb.IOException as e:
        if is_lock_conflict(e):
            raise StoreBusy(f"the store {db} is being written by another process; retry when it finishes") from None
        raise
    try:
        yield con
    finally:
        con.close()


def run_sql(db: str | Path, query: str, max_rows: int, time_limit: float) -> dict:
    """Run read-only SQL with a row cap and a time limit; QueryError carries the HTTP status."""
    if not query.strip():
        raise QueryError(422, "empty query")
    with read_only(db) as con:
        timer = threading.Timer(time_limit, con.interrupt)
        start = time.perf_counter()
        timer.start()
        try:
            statements = duckdb.extract_statements(query)
            if not statements:
                raise QueryError(422, "empty query")
            cur = None
            for st in statements:
                cur = con.execute(st)
            columns = [d[0] for d in cur.description] if cur.description else []
            rows = cur.fetchmany(max_rows + 1) if columns else []
        except duckdb.InterruptException:
            raise QueryError(408, f"query stopped after the time limit of {time_limit:g} s (serve --sql-timeout)") from None
        except duckdb.Error as e:
            # the read-only connection itself refuses writes, and file or network access
            if isinstance(e, duckdb.PermissionException) or "read-only mode" in str(e):
                raise QueryError(403, f"refused, the store is read-only here: {first_line(e)}") from None
            raise QueryError(400, f"query failed: {first_line(e)}") from None
        finally:
            timer.cancel()
    truncated = len(rows) > max_rows
    return {
        "columns": columns,
        "rows": [[jsonable(v) for v in r] for r in rows[:max_rows]],
        "row_count": min(len(rows), max_rows),
        "truncated": truncated,
        "max_rows": max_rows,
        "elapsed_ms": round((time.perf_counter() - start) * 1000, 1),
    }


def first_line(e: Exception) -> str:
    return str(e).splitlines()[0] if str(e) else type(e).__name__
