"""``jcurate sql``: read-only SQL over the provenance store.

Two guards: only SELECT / EXPLAIN / PRAGMA statements are accepted (so ``COPY ... TO`` or
``ATTACH`` cannot write elsewhere either), and the database is opened read-only.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import subprocess
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import TextIO

import duckdb

from core.errors import JcurateError, first_line
from store import TABLE_ROWS
from store.connection import connect
from store.schema import TABLES, VIEWS

READ_ONLY_TYPES = {"SELECT", "EXPLAIN", "PRAGMA"}


def check_read_only(query: str) -> None:
    try:
        statements = duckdb.extract_statements(query)
    except duckdb.Error as e:
        raise JcurateError(f"SQL does not parse: {first_line(e)}") from None
    if not statements:
        raise JcurateError("empty query")
    for st in statements:
        kind = st.type.name
        if kind not in READ_ONLY_TYPES:
            raise JcurateError(
                f"jcurate sql is read-only: a statement of type {kind} is refused. The store is filled by "
                f"`jcurate run` / `jcurate subset`; to change it by hand, open it with the duckdb CLI or Python."
            )


def query_error(e: duckdb.Error) -> str:
    """DuckDB's message in one line: its first line and the hints it gives below it (``Did you mean "runs"?``,
    ``Candidate bindings: …``), which are what a user needs after a typo."""
    lines = [ln.strip() for ln in str(e).strip().splitlines()]
    hints = [ln for ln in lines[1:] if ln.startswith(("Did you mean", "Candidate bindings"))]
    return " ".join([first_line(e)] + hints)


# what the current schema defines: the tables and views a store gains on its next write, and the columns that
# ``ALTER TABLE ... ADD COLUMN IF NOT EXISTS`` adds to an older store's tables
_SCHEMA_OBJECTS = set(re.findall(r"CREATE (?:TABLE IF NOT EXISTS|OR REPLACE VIEW) (\w+)", TABLES + VIEWS))
_ADDED_COLUMNS = re.findall(r"ALTER TABLE (\w+) ADD COLUMN IF NOT EXISTS (\w+)", TABLES)


def older_store_note(con: duckdb.DuckDBPyConnection, message: str) -> str:
    """Where a query fails on a table, view or column that this jcurate's schema has and the store lacks (a
    store written by an older jcurate, opened read-only, so not brought up to date): what it lacks and how it
    gains it; else ''."""
    try:
        objects = {name for (name,) in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        columns = set(con.execute("SELECT table_name, column_name FROM information_schema.columns").fetchall())
    except duckdb.Error:
        return ""
    lacking = [name for name in sorted(_SCHEMA_OBJECTS - objects) if re.search(rf"\b{name}\b", message)]
    lacking += [f"{table}.{column}" for table, column in _ADDED_COLUMNS
                if table in objects and (table, column) not in columns and re.search(rf"\b{column}\b", message)]
    if not lacking:
        return ""
    return (f" (this store was written by an older jcurate and lacks {', '.join(lacking)}: the next command that "
            f"writes to it, such as `jcurate run`, `ingest`, `subset` or `eval`, adds what it lacks)")


def run_query(db: str | Path, query: str) -> tuple[list[str], list[tuple]]:
    rows: list[tuple] = []
    with open_query(db, query) as (columns, result):
        while batch := result.fetchmany(FETCH_ROWS):
            rows.extend(batch)
    return columns, rows


# rows fetched from DuckDB at a time: ``jcurate sql`` holds one batch (and, in a table, the rows it shows), so a
# query over a large table without LIMIT streams instead of holding every row in Python (300k records: 2 GB)
FETCH_ROWS = 10_000


@contextmanager
def open_query(db: str | Path, query: str) -> Iterator[tuple[list[str], duckdb.DuckDBPyConnection]]:
    """(column names, the result to fetch from) of the query's last statement, on a read-only connection
    closed on exit; a failing statement is a ``JcurateError`` in one line."""
    check_read_only(query)
    con = connect(db, read_only=True)
    try:
        result = None
        try:
            for st in duckdb.extract_statements(query):
                result = con.execute(st)
        except duckdb.Error as e:
            raise JcurateError(f"query failed: {query_error(e)}{older_store_note(con, str(e))}") from None
        columns = [d[0] for d in result.description] if result.description else []
        yield columns, _Fetching(result)
    finally:
        con.close()


class _Fetching:
    """A result whose fetch errors (a cast that fails on a later row) are one line too."""

    def __init__(self, result):
        self._result = result

    def fetchmany(self, n: int) -> list[tuple]:
        if self._result.description is None:
            return []
        try:
            return self._result.fetchmany(n)
        except duckdb.Error as e:
            raise JcurateError(f"query failed: {query_error(e)}") from None


def _plain(v):
    if isinstance(v, (datetime, date)):
        return v.isoformat()
    if isinstance(v, Decimal):
        return float(v)
    return v


def display_width(s: str) -> int:
    """Columns a terminal gives ``s``: two for a wide character (kanji, kana, full-width forms), none for a
    combining mark."""
    return sum(0 if unicodedata.combining(ch) else 2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in s)


def _cut(s: str, max_width: int) -> str:
    """``s`` cut to ``max_width`` terminal columns, ``…`` marking the cut."""
    if display_width(s) <= max_width:
        return s
    out, width = [], 0
    for ch in s:
        w = display_width(ch)
        if width + w > max_width - 1:
            break
        out.append(ch)
        width += w
    return "".join(out) + "…"


def _pad(s: str, width: int) -> str:
    return s + " " * (width - display_width(s))


def table_lines(columns: list[str], rows: list[tuple], max_width: int = 60) -> list[str]:
    """The header, the rule and the rows of a table, aligned in terminal columns (Japanese text included)."""
    def cell(v) -> str:
        return _cut("NULL" if v is None else str(_plain(v)).replace("\n", "⏎"), max_width)

    cells = [[cell(v) for v in r] for r in rows]
    widths = [max([display_width(c)] + [display_width(r[i]) for r in cells]) for i, c in enumerate(columns)]
    line = lambda vals: " | ".join(_pad(v, w) for v, w in zip(vals, widths))  # noqa: E731
    return [line(columns), "-+-".join("-" * w for w in widths)] + [line(r) for r in cells]


def _count(n: int) -> str:
    return f"({n} row{'s' if n != 1 else ''})"


def format_rows(columns: list[str], rows: list[tuple], fmt: str = "table", max_width: int = 60) -> str:
    if fmt == "json":
        return json.dumps([{c: _plain(v) for c, v in zip(columns, r)} for r in rows], ensure_ascii=False,
                          indent=1, default=str)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(columns)
        w.writerows([[_plain(v) for v in r] for r in rows])
        return buf.getvalue().rstrip("\n")
    return "\n".join(table_lines(columns, rows, max_width) + [_count(len(rows))])


def write_query(db: str | Path, query: str, out: TextIO, fmt: str = "table", max_rows: int | None = TABLE_ROWS) -> int:
    """Runs the query and writes its rows to ``out`` as ``format_rows`` would, a batch at a time: csv and json
    every row, a table its first ``max_rows`` (None: all) and the count of them all. Returns the row count."""
    n = 0
    with open_query(db, query) as (columns, result):
        if fmt == "csv":
            w = csv.writer(out, lineterminator="\n")
            w.writerow(columns)
            while batch := result.fetchmany(FETCH_ROWS):
                w.writerows([[_plain(v) for v in r] for r in batch])
                n += len(batch)
            return n
        if fmt == "json":
            while batch := result.fetchmany(FETCH_ROWS):
                for r in batch:
                    item = json.dumps({c: _plain(v) for c, v in zip(columns, r)}, ensure_ascii=False, indent=1,
                                      default=str)
                    out.write(("[\n " if n == 0 else ",\n ") + item.replace("\n", "\n "))
                    n += 1
            out.write("[]\n" if n == 0 else "\n]\n")
            return n
        shown: list[tuple] = []
        while batch := result.fetchmany(FETCH_ROWS):
            if max_rows is None or len(shown) < max_rows:
                shown.extend(batch if max_rows is None else batch[: max_rows - len(shown)])
            n += len(batch)
        lines = table_lines(columns, shown)
        if len(shown) < n:
            lines.append(f"({n} rows, the first {len(shown)} shown: add LIMIT, pass --max-rows N (0: all), or "
                         f"--format csv)")
        else:
            lines.append(_count(n))
        out.write("\n".join(lines) + "\n")
        return n


def interactive_shell(db: str | Path) -> int:
    exe = shutil.which("duckdb")
    if exe is None:
        raise JcurateError(
            f"the duckdb CLI is not installed: get the single binary from https://duckdb.org/docs/installation/ "
            f"and run `duckdb -readonly {db}`, or pass a query: jcurate sql \"SELECT * FROM runs\""
        )
    return subprocess.call([exe, "-readonly", str(db)])
