"""``jcurate sql``: read-only SQL over the provenance store.

Two guards: only SELECT / EXPLAIN / PRAGMA statements are accepted (so ``COPY ... TO`` or
``ATTACH`` cannot write elsewhere either), and the database is opened read-only.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import duckdb

from core.errors import JcurateError, first_line
from store.connection import connect

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


def run_query(db: str | Path, query: str) -> tuple[list[str], list[tuple]]:
    check_read_only(query)
    con = connect(db, read_only=True)
    try:
        result = None
        for st in duckdb.extract_statements(query):
            result = con.execute(st)
        columns = [d[0] for d in result.description] if result.description else []
        return columns, result.fetchall()
    except duckdb.Error as e:
        raise JcurateError(f"query failed: {first_line(e)}") from None
    finally:
        con.close()


def _plain(v):
    if isinstance(v, (datetime, date)):
        return v.isoformat()
    if isinstance(v, Decimal):
        return float(v)
    return v


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

    def cell(v) -> str:
        s = "NULL" if v is None else str(_plain(v)).replace("\n", "⏎")
        return s if len(s) <= max_width else s[: max_width - 1] + "…"

    cells = [[cell(v) for v in r] for r in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    line = lambda vals: " | ".join(v.ljust(w) for v, w in zip(vals, widths))  # noqa: E731
    out = [line(columns), "-+-".join("-" * w for w in widths)] + [line(r) for r in cells]
    out.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(out)


def interactive_shell(db: str | Path) -> int:
    exe = shutil.which("duckdb")
    if exe is None:
        raise JcurateError(
            f"the duckdb CLI is not installed: get the single binary from https://duckdb.org/docs/installation/ "
            f"and run `duckdb -readonly {db}`, or pass a query: jcurate sql \"SELECT * FROM runs\""
        )
    return subprocess.call([exe, "-readonly", str(db)])
