"""Re-runs, parallel workers, the Ray executor, and the DuckDB store a run fills."""

from __future__ import annotations

import importlib.util

import duckdb
import pytest

from tests.conftest import run_cli


def _kept(out):
    con = duckdb.connect()
    return con.execute(
        f"SELECT record_id, content_hash, text FROM read_parquet('{out}/kept/*.parquet') ORDER BY record_id"
    ).fetchall()


def _dropped(out):
    con = duckdb.connect()
    return con.execute(
        f"SELECT record_id, stage, reason, value FROM read_parquet('{out}/dropped/*/*.parquet') ORDER BY record_id"
    ).fetchall()


def test_same_input_same_output_and_rerun_adds_a_run(default_run, tmp_path):
    out, db = default_run
    db2 = tmp_path / "store.duckdb"
    assert run_cli("run", "--out", str(tmp_path / "a"), "--db", str(db2)) == 0
    assert run_cli("run", "--out", str(tmp_path / "b"), "--db", str(db2)) == 0
    assert _kept(tmp_path / "a") == _kept(tmp_path / "b") == _kept(out)
    assert _dropped(tmp_path / "a") == _dropped(tmp_path / "b") == _dropped(out)
    con = duckdb.connect(str(db2), read_only=True)
    assert con.execute("SELECT count(*) FROM runs").fetchone()[0] == 2
    n_records = con.execute("SELECT count(*) FROM records").fetchone()[0]
    assert n_records == len(_kept(out)) + len(_dropped(out)), "a re-run does not duplicate records"
    per_run = con.execute("SELECT run_id, count(DISTINCT record_id) FROM decisions GROUP BY run_id").fetchall()
    assert [n for _, n in per_run] == [n_records, n_records]


def test_store_answers_why_a_record_was_dropped(default_run):
    _, db = default_run
    con = duckdb.connect(str(db), read_only=True)
    rows = con.execute(
        """SELECT stage, kept, reason, value FROM decisions
           WHERE record_id = 'jcurate-labelled:punct-0' ORDER BY stage_order"""
    ).fetchall()
    assert [r[0] for r in rows] == ["read", "quality", "language", "exact_dedup", "near_dedup"]
    assert all(r[1] for r in rows[:-1]) and rows[-1][1] is False
    assert rows[-1][2] == "near_duplicate" and rows[-1][3].startswith("jcurate-alpaca:")
    fate = con.execute("SELECT kept, dropped_at FROM record_fate WHERE record_id = 'jcurate-alpaca:en-00'").fetchone()
    assert fate == (False, "language")
    # every record has exactly one final fate, and kept ones passed every stage
    assert con.execute("SELECT count(*) FROM record_fate").fetchone()[0] == con.execute(
        "SELECT count(*) FROM records").fetchone()[0]
    cluster = con.execute(
        """SELECT count(*) FROM dup_clusters c JOIN decisions d USING (record_id)
           WHERE c.is_survivor AND d.stage = 'near_dedup' AND d.kept = false""").fetchone()[0]
    assert cluster == 0, "a cluster survivor is never dropped as a duplicate"


def test_store_records_sources_with_their_license(default_run):
    _, db = default_run
    con = duckdb.connect(str(db), read_only=True)
    rows = dict(con.execute("SELECT source_id, license_id FROM sources").fetchall())
    assert rows == {"jcurate-alpaca": "CC-BY-4.0", "jcurate-labelled": "CC-BY-SA-4.0",
                    "jcurate-chat": "CC-BY-NC-SA-4.0", "jcurate-code": "Apache-2.0",
                    "jcurate-synthetic": "CC-BY-4.0"}
    gen = con.execute("SELECT generated_by_model, generated_by_license FROM sources WHERE source_id='jcurate-synthetic'")
    assert gen.fetchone() == ("google/gemma-3-270m", "Gemma")
    run = con.execute("SELECT n_read, n_kept, config, versions FROM runs").fetchone()
    assert run[0] > run[1] > 0 and "near_dedup" in run[2] and "datatrove" in run[3]
    labels = con.execute("SELECT count(*) FROM records WHERE label BETWEEN 1 AND 5").fetchone()[0]
    assert labels > 300


def test_two_workers_give_the_same_result(default_run, tmp_path):
    """forkserver workers re-import the modules and unpickle the steps."""
    out, _ = default_run
    assert run_cli("run", "--out", str(tmp_path / "w2"), "--db", str(tmp_path / "w2.duckdb"), "--workers", "2") == 0
    assert _kept(tmp_path / "w2") == _kept(out)
    assert [r[:3] for r in _dropped(tmp_path / "w2")] == [r[:3] for r in _dropped(out)]


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="Ray is an optional extra: uv sync --extra ray")
def test_ray_executor_on_a_local_instance(tmp_path):
    src = tmp_path / "mini.jsonl"
    import json

    rows = [{"instruction": "日本の首都はどこですか？", "output": "日本の首都は東京です。"},
            {"instruction": "日本の首都はどこですか？", "output": "日本の首都は東京です。"},
            {"instruction": "What is the capital of Japan?", "output": "Tokyo is the capital of Japan."},
            {"instruction": "富士山の高さは？", "output": "富士山の高さは3776メートルで、日本で一番高い山です。"}]
    src.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    manifest = tmp_path / "sources.yaml"
    manifest.write_text(f"sources:\n  - id: mini\n    path: {src}\n    format: jsonl\n    license: CC0-1.0\n"
                        "    fields: {instruction: instruction, output: output}\n", encoding="utf-8")
    config = tmp_path / "config.yaml"
    config.write_text("near_dedup: {num_buckets: 2, hashes_per_bucket: 8}\n", encoding="utf-8")
    out = tmp_path / "out"
    assert run_cli("run", "--sources", str(manifest), "--config", str(config), "--out", str(out),
                   "--db", str(tmp_path / "ray.duckdb"), "--executor", "ray", "--workers", "2") == 0
    assert [r[0] for r in _kept(out)] == ["mini:0", "mini:3"]
    assert {(r[0], r[1]) for r in _dropped(out)} == {("mini:1", "exact_dedup"), ("mini:2", "language")}


def test_datatrove_logs_go_to_stage_log_files(default_run):
    out, _ = default_run
    log = (out / "work/logs/datatrove.log").read_text(encoding="utf-8")
    filter_part = log.split("===== jcurate stage: filter =====")[1].split("===== jcurate stage:")[0]
    assert "reading source 'jcurate-alpaca' (jsonl), file 1 of 5" in filter_part
    assert "malformed row in source 'jcurate-alpaca'" in filter_part
    assert "===== jcurate stage: dedup-decont =====" in log
