"""The store's connections and schema: row groups every writer shares, connections of one process
sharing the file, an older store's per-stage decisions table migrated to the decisions view, and a store
file this user may not read or write, or whose folder it may not write, said to be so."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import duckdb
import pytest

from store.connection import ROW_GROUP_ROWS, connect
from tests.conftest import ROOT

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


def what_each_says(commands: list[list[str]], new_store: str) -> list:
    """(exit code, stderr, stdout) of each CLI command, then what connect says writing a store at ``new_store``."""
    import contextlib
    import io

    from core.errors import JcurateError
    from jcurate.cli import main

    said = []
    for argv in commands:
        err, out = io.StringIO(), io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            said.append([main(argv), err.getvalue(), out.getvalue()])
    try:
        connect(new_store).close()
        said.append("opened")
    except JcurateError as e:
        said.append(str(e))
    return said


@pytest.fixture
def as_a_user_file_modes_stop(tmp_path):
    """(a folder, ``what_each_says`` as a user whom file modes stop): this user in this process; where the tests
    run as root, whom no mode stops from reading, nobody (uid 65534) in a child process, on a folder in the temp
    dir (pytest's tmp_path is under a folder only its owner enters)."""
    if os.geteuid() != 0:
        yield tmp_path, what_each_says
        return
    folder = Path(tempfile.mkdtemp(prefix="jcurate-permissions-"))
    folder.chmod(0o755)

    def as_nobody(commands, new_store):
        code = ("import json, sys; from tests.runs.test_store import what_each_says as w; "
                "print(json.dumps(w(*json.loads(sys.argv[1]))))")
        child = subprocess.run([sys.executable, "-c", code, json.dumps([commands, new_store])], cwd=ROOT,
                               capture_output=True, text=True, user=65534, group=65534, extra_groups=[])
        assert child.returncode == 0, child.stderr
        return json.loads(child.stdout)

    try:
        subprocess.run([sys.executable, "-c", "import jcurate.cli"], cwd=ROOT, capture_output=True, check=True,
                       user=65534, group=65534, extra_groups=[])
    except (OSError, subprocess.CalledProcessError) as e:
        shutil.rmtree(folder)
        pytest.skip(f"running as root, where chmod does not stop reading, and nobody (uid 65534) cannot run this "
                    f"interpreter on the project ({e}): run the tests as another user to check permission errors")
    yield folder, as_nobody
    shutil.rmtree(folder)


def test_a_store_file_this_user_may_not_read_or_write_is_said_so_naming_it(as_a_user_file_modes_stop):
    """A permission error is not a file that is not a store: the message names the file and the permission,
    and does not send the user to --db."""
    folder, say = as_a_user_file_modes_stop
    unreadable, read_only, closed = folder / "unreadable.duckdb", folder / "read-only.duckdb", folder / "closed"
    for db in (unreadable, read_only):
        connect(db).close()
    unreadable.chmod(0o000)
    read_only.chmod(0o444)
    closed.mkdir()
    closed.chmod(0o555)
    before = read_only.read_bytes()
    subset = ["subset", "--name", "x", "--random", "3", "--db"]
    (sql_code, sql_err, _), (subset_code, subset_err, _), (write_code, write_err, _), created = say(
        [["sql", "SELECT 1", "--db", str(unreadable)], subset + [str(unreadable)], subset + [str(read_only)]],
        str(closed / "new.duckdb"))
    assert sql_code == subset_code == write_code == 2
    cannot_read = f"jcurate: error: {unreadable} cannot be read: permission denied"
    assert sql_err.startswith(cannot_read) and subset_err.startswith(cannot_read), (sql_err, subset_err)
    assert write_err.startswith(f"jcurate: error: {read_only} cannot be written: permission denied"), write_err
    assert created.startswith(f"{closed / 'new.duckdb'} cannot be created: permission denied in its folder {closed}")
    for said in (sql_err, subset_err, write_err, created):
        assert "not a store" not in said and "--db" not in said and "DuckDB store" not in said, said
        assert said.count("\n") <= 1, "one line"
    assert read_only.read_bytes() == before and not (closed / "new.duckdb").exists()


def test_a_store_in_a_folder_this_user_may_not_write_is_said_so_naming_the_folder(as_a_user_file_modes_stop):
    """A store file this user may write, in a folder it may not: DuckDB opens it, then fails creating its log
    (``.wal``) beside it at the first write, with a traceback. A command that writes stops first with one line
    naming the folder; one that only reads (``jcurate sql``) still reads it."""
    folder, say = as_a_user_file_modes_stop
    closed = folder / "closed"
    closed.mkdir()
    db = closed / "store.duckdb"
    connect(db).close()
    db.chmod(0o666)  # the file is writable: only its folder is not
    closed.chmod(0o555)
    before = db.read_bytes()
    try:
        (subset_code, subset_err, _), (sql_code, sql_err, sql_out), connected = say(
            [["subset", "--name", "x", "--random", "3", "--db", str(db)],
             ["sql", "SELECT count(*) AS n FROM runs", "--db", str(db), "--format", "csv"]], str(db))
    finally:
        closed.chmod(0o755)
    expected = f"{db} cannot be written: permission denied in its folder {closed} (DuckDB writes its log store.duckdb.wal"
    assert subset_code == 2 and subset_err.startswith(f"jcurate: error: {expected}"), subset_err
    assert connected.startswith(expected), connected
    for said in (subset_err, connected):
        assert "Traceback" not in said and "TransactionException" not in said and "not a store" not in said, said
        assert said.count("\n") <= 1, "one line"
    assert sql_code == 0 and sql_out.split() == ["n", "0"], f"reading needs no write in the folder: {sql_err}{sql_out}"
    assert db.read_bytes() == before and not (closed / "store.duckdb.wal").exists()
