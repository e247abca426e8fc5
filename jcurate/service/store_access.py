"""How the service opens the store: one read-only DuckDB connection per request.

Read-only is the connection's own mode, not a keyword filter: DuckDB refuses CREATE,
INSERT, UPDATE, DELETE, ... on it. External access is off as well, so ``COPY ... TO``,
``ATTACH``, ``read_csv('/etc/passwd')`` and extension installs are refused too. A fresh
connection per request sees runs that landed since the server started, and lets
``jcurate run`` take the write lock between requests (a request during a write gets 503).
"""

from __future__ import annotations

import json
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import duckdb

from core.errors import first_line
from jcurate.service.provenance import jsonable
from store.connection import StoreLocked, connect

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
def read_only(db: str | Path, wait: float = 0.0):
    """A read-only connection with the service's one configuration: every connection the service
    opens (requests, start-up, the background check for a newer run) goes through here, because
    DuckDB refuses a second connection to a file with another configuration in the same process.
    A store locked by a writer raises ``StoreBusy``, after retrying for ``wait`` seconds."""
    try:
        con = connect(db, read_only=True, lock_wait=wait, config=CONNECTION_CONFIG)
    except StoreLocked:
        raise StoreBusy(f"the store {db} is being written by another process; retry when it finishes") from None
    try:
        yield con
    finally:
        con.close()


SQL_STATEMENTS = {"SELECT", "EXPLAIN"}
SQL_MAX_BYTES = 20 * 1024 * 1024  # the answer's rows, as JSON
_FETCH = 1000


def run_sql(db: str | Path, query: str, max_rows: int, time_limit: float, max_bytes: int = SQL_MAX_BYTES) -> dict:
    """Run one read-only SELECT with a row cap, a byte cap and a time limit; QueryError carries the HTTP status.

    One statement, and only a SELECT or EXPLAIN: a client cannot change the connection's settings
    (``SET memory_limit``, ``SET threads``) or make temp tables; the configuration is locked as well."""
    if not query.strip():
        raise QueryError(422, "empty query")
    try:
        statements = duckdb.extract_statements(query)
    except duckdb.Error as e:
        raise QueryError(400, f"query failed: {first_line(e)}") from None
    if len(statements) != 1:
        raise QueryError(422, f"one statement per request, got {len(statements)}" if statements else "empty query")
    kind = statements[0].type.name
    if kind not in SQL_STATEMENTS:
        raise QueryError(403, f"refused: only a SELECT (or EXPLAIN) runs here, not {kind}; the store is read-only "
                              f"and the server's settings are its own")
    with read_only(db) as con:
        con.execute("SET lock_configuration = true")
        timer = threading.Timer(time_limit, con.interrupt)
        start = time.perf_counter()
        timer.start()
        rows: list[list] = []
        size, truncated_by = 0, None
        try:
            cur = con.execute(statements[0])
            columns = [d[0] for d in cur.description] if cur.description else []
            while columns and truncated_by is None:
                # rows are fetched in batches sized to what the byte cap leaves (a first small batch
                # measures them): 1,000 rows of 100 kB would be 100 MB in memory at once
                per_row = size / len(rows) if rows else None
                room = _FETCH if per_row is None and not size else int((max_bytes - size) / max(per_row or 1, 1)) + 1
                batch = cur.fetchmany(max(1, min(_FETCH if rows else 16, room, max_rows + 1 - len(rows))))
                if not batch:
                    break
                for r in batch:
                    row = [jsonable(v) for v in r]
                    size += len(json.dumps(row, ensure_ascii=False, default=str))
                    if len(rows) == max_rows:
                        truncated_by = "rows"
                        break
                    if size > max_bytes:
                        truncated_by = "bytes"
                        break
                    rows.append(row)
                if time.perf_counter() - start > time_limit:
                    raise duckdb.InterruptException("time limit")
        except duckdb.InterruptException:
            raise QueryError(408, f"query stopped after the time limit of {time_limit:g} s (serve --sql-timeout)") from None
        except duckdb.Error as e:
            # the read-only connection itself refuses writes, and file or network access
            if isinstance(e, duckdb.PermissionException) or "read-only mode" in str(e):
                raise QueryError(403, f"refused, the store is read-only here: {first_line(e)}") from None
            raise QueryError(400, f"query failed: {first_line(e)}") from None
        finally:
            timer.cancel()
    return {
        "columns": columns,
        "rows": rows,
        "row_count": len(rows),
        "truncated": truncated_by is not None,
        "truncated_by": truncated_by,
        "max_rows": max_rows,
        "max_bytes": max_bytes,
        "elapsed_ms": round((time.perf_counter() - start) * 1000, 1),
    }
