"""The ingest: the record upsert (new records inserted, records an earlier run stored updated in place), and
the records loaded while the later stages run (``EarlyRecords``)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from core.errors import JcurateError
from curate.handover.ingest import RECORD_FIELDS, EarlyRecords, ingest_run, insert_records
from curate.running.pipeline import FILTER_STAGE_DROPS, LAST_STAGE, RUN_STATE
from store.connection import connect
from store.query import run_query
from tests.conftest import ROOT, run_cli


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


TABLES = {
    "records": "SELECT * EXCLUDE (first_run_id, last_run_id) FROM records ORDER BY record_id",
    "decisions": "SELECT record_id, stage, stage_order, kept, reason, value FROM decisions ORDER BY ALL",
    "record_fate": "SELECT * EXCLUDE (run_id) FROM record_fate ORDER BY record_id",
    "scores": "SELECT record_id, scorer, model, score FROM scores ORDER BY ALL",
    "dup_clusters": "SELECT cluster_id, record_id, stage, is_survivor FROM dup_clusters ORDER BY ALL",
}


def _ingest(out, db, early=None) -> str:
    from curate.config import load_config
    from curate.reading.manifest import load_manifest
    from curate.running.pipeline import STAGES
    from curate.running.report import build_report
    from licenses.catalogue import load_catalogue

    catalogue = load_catalogue()
    return ingest_run(db, out, load_manifest("data/sources.yaml", catalogue), catalogue,
                      config=load_config(None).to_dict(), report=build_report(out, {}), sources_file="data/sources.yaml",
                      stages=STAGES, early=early)


def _tables(db) -> dict[str, list]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return {name: con.execute(query).fetchall() for name, query in TABLES.items()}
    finally:
        con.close()


def test_records_loaded_during_the_later_stages_store_the_same_run(default_run, tmp_path):
    """The early load reads the filtered shards and the filter stage's drops; the ingest after it the kept
    and dropped shards: the same records, and the run stored as one."""
    out, _ = default_run
    _ingest(out, tmp_path / "whole.duckdb")
    early = EarlyRecords(tmp_path / "early.duckdb", out, FILTER_STAGE_DROPS)
    assert len(early.files()) < len(list(out.glob("kept/*.parquet")) + list(out.glob("dropped/*/*.parquet")))
    early.start()
    run_id = _ingest(out, tmp_path / "early.duckdb", early)
    assert run_id == early.run_id
    whole, loaded = _tables(tmp_path / "whole.duckdb"), _tables(tmp_path / "early.duckdb")
    assert len(whole["records"]) == 1046 and whole == loaded


def test_an_aborted_early_load_leaves_the_store_without_the_run_and_unlocked(default_run, tmp_path):
    out, _ = default_run
    db = tmp_path / "store.duckdb"
    early = EarlyRecords(db, out, FILTER_STAGE_DROPS)
    early.start()
    early.abort()  # a later stage failed
    # another process can open the store: the load's connection is closed, and nothing of it was kept
    probe = ("import duckdb, sys; c = duckdb.connect(sys.argv[1], read_only=True); "
             "print(c.execute('SELECT count(*) FROM records').fetchone()[0])")
    done = subprocess.run([sys.executable, "-c", probe, str(db)], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "0"


def test_an_early_load_error_is_raised_by_the_ingest(default_run, tmp_path):
    out, _ = default_run
    early = EarlyRecords(tmp_path / "store.duckdb", out, FILTER_STAGE_DROPS)
    early.files = lambda: [str(p) for p in sorted(out.glob("work/filtered/*.parquet"))] * 2  # every record twice
    early.start()
    with pytest.raises(JcurateError, match="record ids are not unique"):
        _ingest(out, tmp_path / "store.duckdb", early)
    con = duckdb.connect(str(tmp_path / "store.duckdb"), read_only=True)
    assert con.execute("SELECT count(*) FROM records").fetchone()[0] == 0
    con.close()


def test_a_run_whose_later_stage_fails_stores_nothing(tmp_path, monkeypatch):
    """The records load started after the filter stage is rolled back when the dedup plan fails."""
    from curate.dedup.plan import DedupPlan
    from tests.conftest import run_cli

    def fail(self, data=None, rank=0, world_size=1):
        raise JcurateError("the plan failed on purpose")

    monkeypatch.setattr(DedupPlan, "run", fail)  # one worker: the stages run in this process
    db = tmp_path / "store.duckdb"
    assert run_cli("run", "--out", str(tmp_path / "out"), "--db", str(db), "--workers", "1") == 2
    con = duckdb.connect(str(db), read_only=True)  # not locked: the load's connection is closed
    assert con.execute("SELECT (SELECT count(*) FROM records), (SELECT count(*) FROM runs)").fetchone() == (0, 0)
    con.close()


def _copy_run(default_run, tmp_path, finished: bool = True) -> Path:
    """A copy of the default run's folder; ``finished=False``: as a Slurm run leaves it before ``jcurate ingest``."""
    out = tmp_path / "out"
    shutil.copytree(default_run[0], out)
    state = out / RUN_STATE
    state.write_text(json.dumps({**json.loads(state.read_text(encoding="utf-8")), "finished": finished}),
                     encoding="utf-8")
    return out


def _error_lines(capsys) -> list[str]:
    return capsys.readouterr().err.strip().splitlines()


def test_ingest_refuses_a_run_whose_last_stage_did_not_finish_and_stores_nothing(default_run, tmp_path, capsys):
    out = _copy_run(default_run, tmp_path, finished=False)
    completions = sorted((out / "work/logs" / LAST_STAGE / "completions").iterdir())
    completions[-1].unlink()  # one task of the last stage was cut off
    db = tmp_path / "store.duckdb"
    capsys.readouterr()
    assert run_cli("ingest", "--out", str(out), "--db", str(db)) == 2
    err = _error_lines(capsys)
    assert err == [f"jcurate: error: the run in {out} did not finish (its last stage {LAST_STAGE} has "
                   f"{len(completions) - 1} of {len(completions)} task(s) completed); the same `jcurate run` command "
                   f"resumes it; nothing was stored"]
    assert not db.exists()


def test_ingest_refuses_a_folder_that_holds_no_run(default_run, tmp_path, capsys):
    out = _copy_run(default_run, tmp_path)
    (out / RUN_STATE).unlink()
    db = tmp_path / "store.duckdb"
    capsys.readouterr()
    assert run_cli("ingest", "--out", str(out), "--db", str(db)) == 2
    assert _error_lines(capsys) == [f"jcurate: error: {out} is not a jcurate run folder (no readable {RUN_STATE}); "
                                    f"nothing was stored"]
    assert not db.exists()


def test_ingest_stores_a_slurm_run_whose_stages_all_completed(default_run, tmp_path):
    """Slurm: the stages ran, nothing marked the run finished yet; the ingest stores it and marks it."""
    out = _copy_run(default_run, tmp_path, finished=False)
    db = tmp_path / "store.duckdb"
    assert run_cli("ingest", "--out", str(out), "--db", str(db)) == 0
    ingested, run = _tables(db), _tables(default_run[1])  # the run's store also holds its classifier's scores
    assert {k: v for k, v in ingested.items() if k != "scores"} == {k: v for k, v in run.items() if k != "scores"}
    assert json.loads((out / RUN_STATE).read_text(encoding="utf-8"))["finished"] is True


def test_ingest_refuses_a_manifest_that_lacks_a_source_the_shards_hold(default_run, tmp_path, capsys):
    """Those records would be stored without a license: the refusal names the missing ids and the manifest."""
    out = _copy_run(default_run, tmp_path)
    text = (ROOT / "data/sources.yaml").read_text(encoding="utf-8")
    first, *others = text.split("\n  - id: ")
    manifest = tmp_path / "one.yaml"
    manifest.write_text(first + "\n  - id: " + others[0], encoding="utf-8")
    missing = sorted(entry.split("\n")[0].strip() for entry in others[1:])
    db = tmp_path / "store.duckdb"
    capsys.readouterr()
    assert run_cli("ingest", "--out", str(out), "--sources", str(manifest), "--db", str(db)) == 2
    assert _error_lines(capsys) == [
        f"jcurate: error: {out}: its shards hold source(s) {', '.join(map(repr, missing))} that the manifest "
        f"{manifest} lacks; nothing was stored. Pass the run's own manifest with --sources"]
    assert not db.exists()


def _runs(db) -> list[tuple]:
    return run_query(db, "SELECT run_id, run_folder_id FROM runs ORDER BY run_id")[1]


def test_a_run_folder_is_stored_once(default_run, tmp_path, capsys):
    """After `jcurate run` into the store, and after an ingest: the same folder again is refused, nothing added."""
    out = _copy_run(default_run, tmp_path)
    db = tmp_path / "run.duckdb"
    shutil.copy(default_run[1], db)
    (stored,) = _runs(db)
    assert stored[1] == json.loads((out / RUN_STATE).read_text(encoding="utf-8"))["run_folder_id"]
    capsys.readouterr()
    assert run_cli("ingest", "--out", str(out), "--db", str(db)) == 2
    assert _error_lines(capsys) == [f"jcurate: error: run folder {out} was ingested already as run {stored[0]} in "
                                    f"this store; nothing done"]
    assert _runs(db) == [stored]

    other = tmp_path / "ingest.duckdb"
    assert run_cli("ingest", "--out", str(out), "--db", str(other)) == 0
    before = _tables(other)
    (first,) = _runs(other)
    assert run_cli("ingest", "--out", str(out), "--db", str(other)) == 2
    assert f"was ingested already as run {first[0]} in this store" in capsys.readouterr().err
    assert _runs(other) == [first] and _tables(other) == before


def test_a_store_from_before_folder_ids_gains_the_column(default_run, tmp_path):
    db = tmp_path / "old.duckdb"
    con = connect(db)
    con.execute("ALTER TABLE runs DROP COLUMN run_folder_id")
    con.close()
    assert run_cli("ingest", "--out", str(_copy_run(default_run, tmp_path)), "--db", str(db)) == 0
    assert _runs(db)[0][1].startswith("folder-")
