"""`jcurate sql` as a user runs it on a real store: Japanese text in a table, a typo in a query, a query
over a large table without LIMIT, csv and json of every row, an empty query."""

from __future__ import annotations

import json

import pytest

from store.query import display_width, format_rows, run_query
from tests.conftest import run_cli


@pytest.fixture(scope="module")
def db(default_run):
    return str(default_run[1])


def sql(capsys, db, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = run_cli("sql", *args, "--db", db)
    out, err = capsys.readouterr()
    return code, out, err


def test_a_table_of_japanese_text_stays_aligned(capsys, db):
    code, out, _ = sql(capsys, db, "SELECT record_id, instruction, source_id FROM records "
                                   "WHERE source_id = 'jcurate-labelled' ORDER BY record_id LIMIT 20")
    assert code == 0
    lines = out.splitlines()[:-1]  # the last line counts the rows
    assert any(display_width(line) != len(line) for line in lines)  # wide characters are there
    # every row's column separators sit in the header's terminal columns
    seps = [[display_width(line[:i]) for i, ch in enumerate(line) if ch == "|"] for line in lines[2:]]
    header = [i for i, ch in enumerate(lines[0]) if ch == "|"]
    assert seps and all(s == header for s in seps)
    assert all(display_width(line) == display_width(lines[1]) for line in lines)


def test_a_typo_in_a_table_name_gets_duckdbs_suggestion_in_one_line(capsys, db):
    code, out, err = sql(capsys, db, "SELECT * FROM run")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and 'Did you mean "runs"?' in err
    code, _, err = sql(capsys, db, "SELECT record_i FROM records")
    assert code == 2 and err.count("\n") == 1 and '"record_id"' in err


def test_a_large_result_shows_its_first_rows_in_a_table_and_counts_them_all(capsys, db):
    (total,), = run_query(db, "SELECT count(*) FROM decisions")[1]
    code, out, _ = sql(capsys, db, "SELECT * FROM decisions", "--max-rows", "5")
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 2 + 5 + 1
    assert lines[-1].startswith(f"({total} rows, the first 5 shown")
    code, out, _ = sql(capsys, db, "SELECT run_id, record_id, stage FROM decisions", "--max-rows", "0")
    assert out.splitlines()[-1] == f"({total} rows)" and len(out.splitlines()) == total + 3


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_csv_and_json_hold_every_row_as_format_rows_writes_them(capsys, db, fmt):
    query = "SELECT * FROM record_fate ORDER BY run_id, record_id"
    columns, rows = run_query(db, query)
    assert len(rows) > 1000  # more than a table shows
    code, out, _ = sql(capsys, db, query, "--format", fmt)
    assert code == 0
    assert out == format_rows(columns, rows, fmt) + "\n"
    if fmt == "json":
        assert len(json.loads(out)) == len(rows)
    code, out, _ = sql(capsys, db, "SELECT * FROM runs WHERE false", "--format", fmt)
    assert out == format_rows(run_query(db, "SELECT * FROM runs")[0], [], fmt) + "\n"


def test_a_negative_max_rows_is_refused(capsys, db):
    with pytest.raises(SystemExit) as e:
        run_cli("sql", "SELECT 1", "--max-rows", "-5", "--db", db)
    assert e.value.code == 2 and "0 (all) or more, got -5" in capsys.readouterr().err


def test_an_empty_query_is_refused_in_one_line(capsys, db):
    code, out, err = sql(capsys, db, "")
    assert code == 2 and out == "" and err == "jcurate: error: empty query\n"


@pytest.mark.parametrize("command", [["sql", "SELECT * FROM runs"], ["licenses", "check", "--subset", "x"],
                                     ["subset", "--name", "x", "--random", "3"], ["classifier", "score"]])
@pytest.mark.parametrize("wrong", ["report.json", "empty.duckdb"])
def test_a_db_that_is_not_a_store_is_said_in_one_line_and_left_as_it_was(default_run, tmp_path, capsys, command,
                                                                          wrong):
    """`--db out/report.json`: DuckDB would open the JSON file as an empty database in memory (a write vanishing
    with the process, a read failing on a missing table, in a traceback)."""
    db = tmp_path / wrong
    if wrong == "report.json":
        db.write_bytes((default_run[0] / "report.json").read_bytes())
    else:
        db.touch()
    before = db.read_bytes()
    capsys.readouterr()
    assert run_cli(*command, "--db", str(db)) == 2
    what = "an empty file" if wrong == "empty.duckdb" else "not a DuckDB database file"
    assert capsys.readouterr().err == (f"jcurate: error: {db} is {what}, not a store: pass the store's path with "
                                       f"--db (`jcurate run` makes one)\n")
    assert db.read_bytes() == before


def test_a_store_written_before_a_column_or_view_says_what_it_lacks_and_how_it_gains_it(capsys, tmp_path):
    """``jcurate sql`` opens a store read-only, so an older store is not brought up to date: a query on what it
    lacks says so, and the next write adds it."""
    import duckdb

    from store.connection import connect

    path = tmp_path / "older.duckdb"
    connect(path).close()
    con = duckdb.connect(str(path))  # as an older jcurate left it: no per-scale means, no record_fate view
    con.execute("ALTER TABLE eval_runs DROP COLUMN mean_score_elyza")
    con.execute("DROP VIEW record_fate")
    con.close()
    for query, lacking in (("SELECT eval_run_id, mean_score_elyza FROM eval_runs", "eval_runs.mean_score_elyza"),
                           ("SELECT count(*) FROM record_fate", "record_fate")):
        code, out, err = sql(capsys, str(path), query)
        assert code != 0 and out == ""
        assert len(err.strip().splitlines()) == 1
        assert f"older jcurate and lacks {lacking}:" in err and "the next command that writes" in err
    # a typo in a store that lacks nothing the query names keeps DuckDB's own message alone
    code, _, err = sql(capsys, str(path), "SELECT * FROM eval_runz")
    assert code != 0 and "older jcurate" not in err and 'Did you mean "eval_runs"' in err
    connect(path).close()  # a write brings it up to date
    assert run_query(str(path), "SELECT mean_score_elyza FROM eval_runs")[0] == ["mean_score_elyza"]
    assert run_query(str(path), "SELECT count(*) FROM record_fate")[1] == [(0,)]
