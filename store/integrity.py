"""Is the store readable? A check before a run does any work, so a damaged file is found at the start, not
after an hour of curation, in the ingest.

DuckDB verifies a block's checksum when it reads the block, and ``count(*)`` answers from metadata: only a
scan that reads every column of every row finds a damaged block. ``damage`` hashes every row of every
table (a few seconds per GB of store, against minutes of curation per GB of input).
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from core.errors import first_line


def damage(db: str | Path) -> str | None:
    """Why the store at ``db`` cannot be read (DuckDB's message, one line), or None when every block of
    every table reads back (or there is no store yet)."""
    if not Path(db).is_file():
        return None
    try:
        con = duckdb.connect(str(db), read_only=True)
    except duckdb.IOException as e:
        if "lock" in str(e).lower():
            return None  # held by another process: not damage (the run waits for it, or says so)
        return first_line(e, 300)
    except duckdb.Error as e:
        return first_line(e, 300)
    try:
        tables = [r[0] for r in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE NOT internal AND database_name = current_database()"
        ).fetchall()]
        for table in tables:
            con.execute(f'SELECT sum(hash(t)) FROM "{table}" AS t').fetchone()
    except duckdb.Error as e:
        return first_line(e, 300)
    finally:
        con.close()
    return None
