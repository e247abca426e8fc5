"""The store's connections and schema: row groups every writer shares, connections of one process
sharing the file, and an older store's per-stage decisions table migrated to the decisions view."""

from __future__ import annotations

import subprocess
import sys

import duckdb

from store.connection import ROW_GROUP_ROWS, connect

STAGES = ("read", "quality", "language", "exact_dedup", "near_dedup", "decontamination")


def _old_store(path, rows: list[tuple]) -> None:
    """A store as the versions before the decisions view wrote it: a row per stage in a table."""
    con = duckdb.connect(str(path))
    con.execute("""CREATE TABLE decisions (run_id VARCHAR, record_id VARCHAR, stage VARCHAR, stage_order INTEGER,
                                           kept BOOLEAN, reason VARCHAR, value VARCHAR)""")
    con.executemany("INSERT INTO decisions VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    con.execute("""CREATE VIEW record_fate AS SELECT run_id, record_id, bool_and(kept) AS kept,
                   max(stage) FILTER (WHERE NOT kept) AS dropped_at, max(reason) FILTER (WHERE NOT kept) AS reason,
                   max(value) FILTER (WHERE NOT kept) AS value FROM decisions GROUP BY run_id, record_id""")
    con.close()


def _per_stage(run: str, record: str, dropped_at: str | None, reason=None, value=None) -> list[tuple]:
    """The rows the ingest wrote: kept ('passed') up to the stage that dropped the record."""
    rows = []
    for order, stage in enumerate(STAGES):
        if stage == dropped_at:
            rows.append((run, record, stage, order, False, reason, value))
            break
        rows.append((run, record, stage, order, True, "passed", None))
    return rows


def _read(con, sql: str) -> list[tuple]:
    return sorted(con.execute(sql).fetchall(), key=repr)


def test_an_older_stores_decisions_table_becomes_the_view_with_the_same_rows(tmp_path):
    db = tmp_path / "old.duckdb"
    rows = (_per_stage("run-1", "s:kept", None) + _per_stage("run-1", "s:short", "quality", "empty_output", "0")
            + _per_stage("run-1", "s:dup", "near_dedup", "near_duplicate", "s:kept")
            + _per_stage("run-2", "s:kept", None) + _per_stage("run-2", "s:leak", "decontamination", "contaminated", "x"))
    _old_store(db, rows)
    old = duckdb.connect(str(db), read_only=True)
    fates = _read(old, "SELECT * FROM record_fate")
    old.close()

    con = connect(db)
    kinds = dict(con.execute("SELECT table_name, table_type FROM information_schema.tables WHERE table_name IN "
                             "('decisions', 'record_outcomes', 'run_stages', 'decisions_legacy')").fetchall())
    assert kinds == {"decisions": "VIEW", "record_outcomes": "BASE TABLE", "run_stages": "BASE TABLE"}
    assert _read(con, "SELECT run_id, record_id, stage, stage_order, kept, reason, value FROM decisions") == sorted(
        rows, key=repr)
    assert _read(con, "SELECT * FROM record_fate") == fates
    assert con.execute("SELECT count(*) FROM record_outcomes").fetchone()[0] == 5  # a row per record and run
    con.close()
    again = connect(db)  # migrated once: the next connection finds the view
    assert again.execute("SELECT count(*) FROM decisions").fetchone()[0] == len(rows)
    again.close()


def test_rows_the_view_would_not_give_back_stay_in_a_legacy_table(tmp_path, capsys):
    db = tmp_path / "odd.duckdb"
    rows = _per_stage("run-1", "s:a", "quality", "empty_output", "0")
    rows[0] = ("run-1", "s:a", "read", 0, True, "read fine", None)  # not what the view says of a passed stage
    _old_store(db, rows)
    con = connect(db)
    assert _read(con, "SELECT * FROM decisions_legacy") == sorted(rows, key=repr)
    assert con.execute("SELECT dropped_at, reason FROM record_fate").fetchall() == [("quality", "empty_output")]
    con.close()
    assert "decisions_legacy" in capsys.readouterr().err


def test_writers_share_the_row_groups_and_the_file_is_released_after_the_last_close(tmp_path):
    db = tmp_path / "store.duckdb"
    first, second = connect(db), connect(db)  # one process: one database, as duckdb.connect(path) gives
    first.execute("CREATE TABLE t (x INTEGER)")
    first.execute(f"INSERT INTO t SELECT range FROM range({3 * ROW_GROUP_ROWS})")
    assert second.execute("SELECT count(*) FROM t").fetchone()[0] == 3 * ROW_GROUP_ROWS
    first.close()
    second.execute("CREATE OR REPLACE VIEW v AS SELECT 1")  # a later write: its checkpoint keeps the row groups
    second.close()
    groups = subprocess.run(
        [sys.executable, "-c", "import duckdb, sys; print(duckdb.connect(sys.argv[1]).execute("
         "\"SELECT count(DISTINCT row_group_id) FROM pragma_storage_info('t')\").fetchone()[0])", str(db)],
        capture_output=True, text=True, check=True).stdout  # another process opens it: released
    assert int(groups) == 3
