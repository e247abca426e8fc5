"""The ingest's record upsert: new records inserted, records an earlier run stored updated in place."""

from __future__ import annotations

import pyarrow as pa

from curate.ingest import RECORD_FIELDS, insert_records
from store.connection import connect


def _shard(con, rows: list[dict]) -> None:
    columns = {"record_id": [r["record_id"] for r in rows]}
    for name in RECORD_FIELDS:
        columns[name] = [r.get(name) for r in rows]
    con.register("shard_rows", pa.table(columns))
    con.execute("CREATE OR REPLACE TEMP VIEW shard AS SELECT * FROM shard_rows")


def test_a_first_run_inserts_and_a_later_run_updates_stored_records_in_place(tmp_path):
    con = connect(tmp_path / "store.duckdb")
    _shard(con, [{"record_id": "s:a", "source_id": "s", "row": 0, "text": "一"},
                 {"record_id": "s:b", "source_id": "s", "row": 1, "text": "二"}])
    insert_records(con, "run-1")
    # a later run: one record stored (its text changed), one new
    _shard(con, [{"record_id": "s:b", "source_id": "s", "row": 1, "text": "二です"},
                 {"record_id": "s:c", "source_id": "s", "row": 2, "text": "三"}])
    insert_records(con, "run-2")
    rows = con.execute("SELECT record_id, text, first_run_id, last_run_id FROM records ORDER BY record_id").fetchall()
    assert rows == [("s:a", "一", "run-1", "run-1"), ("s:b", "二です", "run-1", "run-2"), ("s:c", "三", "run-2", "run-2")]
    con.close()
