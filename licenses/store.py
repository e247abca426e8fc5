"""The DuckDB provenance store: every record, its source and license, and every decision.

Only the main process writes it, from the Parquet shards a run leaves behind, in one
transaction per run (workers never open DuckDB). Re-running adds a run; records are keyed
by ``record_id`` and updated in place, decisions are kept per run.
"""

from __future__ import annotations

import json
import platform
import subprocess
import time
import uuid
from dataclasses import asdict
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import duckdb

from curate.errors import JcurateError
from licenses.catalogue import Catalogue

DEFAULT_DB = "jcurate.duckdb"

SCHEMA = """
CREATE TABLE IF NOT EXISTS licenses (
    license_id VARCHAR PRIMARY KEY, name VARCHAR, url VARCHAR, kind VARCHAR, use VARCHAR,
    attribution BOOLEAN, share_alike BOOLEAN, no_derivatives BOOLEAN, notice_required BOOLEAN,
    restricts_training_other_models BOOLEAN, derivative_terms BOOLEAN, notes VARCHAR,
    attribution_template VARCHAR, hub_models VARCHAR[]);
CREATE TABLE IF NOT EXISTS runs (
    run_id VARCHAR PRIMARY KEY, started_at TIMESTAMPTZ, finished_at TIMESTAMPTZ, out_dir VARCHAR,
    sources_file VARCHAR, executor VARCHAR, workers INTEGER, config JSON, versions JSON, git_commit VARCHAR,
    n_read BIGINT, n_kept BIGINT, report JSON);
CREATE TABLE IF NOT EXISTS sources (
    run_id VARCHAR, source_id VARCHAR, name VARCHAR, path VARCHAR, format VARCHAR, url VARCHAR,
    license_id VARCHAR, generated_by_model VARCHAR, generated_by_license VARCHAR, attribution VARCHAR,
    fields JSON, PRIMARY KEY (run_id, source_id));
CREATE TABLE IF NOT EXISTS records (
    record_id VARCHAR PRIMARY KEY, source_id VARCHAR, file VARCHAR, "row" BIGINT, instruction VARCHAR,
    input VARCHAR, output VARCHAR, messages JSON, text VARCHAR, content_hash VARCHAR, generated_by VARCHAR,
    label DOUBLE, signals JSON, first_run_id VARCHAR, last_run_id VARCHAR);
CREATE TABLE IF NOT EXISTS decisions (
    run_id VARCHAR, record_id VARCHAR, stage VARCHAR, stage_order INTEGER, kept BOOLEAN, reason VARCHAR,
    value VARCHAR);
CREATE TABLE IF NOT EXISTS dup_clusters (
    run_id VARCHAR, cluster_id VARCHAR, record_id VARCHAR, stage VARCHAR, is_survivor BOOLEAN);
CREATE TABLE IF NOT EXISTS scores (
    record_id VARCHAR, content_hash VARCHAR, scorer VARCHAR, model VARCHAR, prompt_version VARCHAR,
    score DOUBLE, raw JSON, run_id VARCHAR, created_at TIMESTAMPTZ);
CREATE TABLE IF NOT EXISTS embeddings (content_hash VARCHAR, model VARCHAR, vector FLOAT[]);
CREATE TABLE IF NOT EXISTS classifier_models (
    model_id VARCHAR PRIMARY KEY, path VARCHAR, trained_at TIMESTAMPTZ, label_scorer VARCHAR,
    train_data_hash VARCHAR, metrics JSON, params JSON);
CREATE TABLE IF NOT EXISTS train_runs (
    train_run_id VARCHAR PRIMARY KEY, subset VARCHAR, base_model VARCHAR, base_revision VARCHAR, method VARCHAR,
    config_hash VARCHAR, config JSON, git_commit VARCHAR, metrics JSON, output_path VARCHAR,
    started_at TIMESTAMPTZ, finished_at TIMESTAMPTZ);
CREATE TABLE IF NOT EXISTS eval_results (
    eval_run_id VARCHAR, train_run_id VARCHAR, item_id VARCHAR, category VARCHAR, answer VARCHAR,
    score DOUBLE, judge_model VARCHAR, rationale VARCHAR, created_at TIMESTAMPTZ);
CREATE TABLE IF NOT EXISTS eval_runs (
    eval_run_id VARCHAR PRIMARY KEY, train_run_id VARCHAR, model VARCHAR, adapter VARCHAR, eval_files JSON,
    judge_model VARCHAR, config JSON, decont_overlap INTEGER, mean_score DOUBLE, created_at TIMESTAMPTZ);
CREATE TABLE IF NOT EXISTS judge_cache (
    prompt_hash VARCHAR, model VARCHAR, prompt_version VARCHAR, score DOUBLE, raw JSON);
CREATE TABLE IF NOT EXISTS subsets (
    name VARCHAR PRIMARY KEY, run_id VARCHAR, created_at TIMESTAMPTZ, criteria JSON, n_records BIGINT,
    export_path VARCHAR);
CREATE TABLE IF NOT EXISTS subset_members (subset VARCHAR, record_id VARCHAR, rank INTEGER, score DOUBLE);
-- the SQL twin of licenses.rules.restrictiveness / effective_license
CREATE OR REPLACE VIEW license_rank AS
    SELECT license_id, use,
           (CASE use WHEN 'commercial' THEN 0 WHEN 'non-commercial' THEN 1 WHEN 'academic-only' THEN 2 ELSE 3 END) * 100
           + no_derivatives::INT * 16 + share_alike::INT * 8 + restricts_training_other_models::INT * 4
           + derivative_terms::INT * 2 + notice_required::INT AS restrictiveness
    FROM licenses;
-- each source as the latest run that read it declared it
CREATE OR REPLACE VIEW current_sources AS
    SELECT s.* FROM sources s JOIN runs r USING (run_id)
    QUALIFY row_number() OVER (PARTITION BY s.source_id ORDER BY r.finished_at DESC) = 1;
CREATE OR REPLACE VIEW record_license AS
    SELECT rec.record_id, rec.source_id, s.license_id AS source_license, s.generated_by_model,
           s.generated_by_license AS model_license,
           CASE WHEN lm.restrictiveness > ls.restrictiveness THEN s.generated_by_license ELSE s.license_id END
               AS license
    FROM records rec
    JOIN current_sources s USING (source_id)
    JOIN license_rank ls ON ls.license_id = s.license_id
    LEFT JOIN license_rank lm ON lm.license_id = s.generated_by_license;
CREATE OR REPLACE VIEW latest_run AS
    SELECT * FROM runs ORDER BY finished_at DESC LIMIT 1;
CREATE OR REPLACE VIEW record_fate AS
    SELECT run_id, record_id,
           bool_and(kept) AS kept,
           max(stage) FILTER (WHERE NOT kept) AS dropped_at,
           max(reason) FILTER (WHERE NOT kept) AS reason,
           max(value) FILTER (WHERE NOT kept) AS value
    FROM decisions GROUP BY run_id, record_id;
"""


LOCK_WAIT_S = 30.0


def is_lock_conflict(e: Exception) -> bool:
    return isinstance(e, duckdb.IOException) and "lock" in str(e).lower()


def connect(db: str | Path, read_only: bool = False, lock_wait: float = LOCK_WAIT_S) -> duckdb.DuckDBPyConnection:
    """Open the store. DuckDB lets one process write or several read; a store held by another
    process (a ``jcurate serve`` request, a running ``jcurate run``) is retried for ``lock_wait``
    seconds before giving up with a message that says so."""
    if read_only and not Path(db).is_file():
        raise JcurateError(f"no store at {db}: run `jcurate run` first (or pass --db)")
    deadline = time.monotonic() + lock_wait
    while True:
        try:
            con = duckdb.connect(str(db), read_only=read_only)
            break
        except duckdb.IOException as e:
            if not is_lock_conflict(e):
                raise
            if time.monotonic() >= deadline:
                raise JcurateError(f"the store {db} is locked by another process (waited {lock_wait:.0f} s): "
                                   f"{str(e).splitlines()[0]}") from None
            time.sleep(0.1)
    if not read_only:
        con.execute(SCHEMA)
    return con


def latest_run_id(con) -> str | None:
    row = con.execute("SELECT run_id FROM latest_run").fetchone()
    return row[0] if row else None


def resolve_run(con, run_id: str | None = None) -> str:
    """The named run, checked to exist, or the latest run."""
    if run_id is None:
        latest = latest_run_id(con)
        if latest is None:
            raise JcurateError("the store has no runs yet: run `jcurate run` first")
        return latest
    if not con.execute("SELECT 1 FROM runs WHERE run_id = ?", [run_id]).fetchone():
        raise JcurateError(f"no run {run_id!r} in the store")
    return run_id


def _versions() -> dict:
    out = {"python": platform.python_version()}
    for pkg in ("jcurate", "datatrove", "duckdb", "fugashi"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def git_commit() -> str | None:
    try:
        res = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).parent)
        return res.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _sync_licenses(con, catalogue: Catalogue) -> None:
    for lic in catalogue.licenses.values():
        d = asdict(lic)
        con.execute(
            "INSERT OR REPLACE INTO licenses VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            [d["id"], d["name"], d["url"], d["kind"], d["use"], d["attribution"], d["share_alike"],
             d["no_derivatives"], d["notice_required"], d["restricts_training_other_models"],
             d["derivative_terms"], d["notes"], d["attribution_template"], list(d["hub_models"])],
        )


def ingest_run(db: str | Path, out: Path, sources, catalogue: Catalogue, *, config: dict, report: dict,
               sources_file: str, executor: str = "local", workers: int = 1, started_at: datetime | None = None,
               stages: tuple[str, ...] = ()) -> str:
    """Loads one finished run (``out/kept``, ``out/dropped``, the dedup plan) in one transaction."""
    kept = sorted(out.glob("kept/*.parquet"))
    dropped = sorted(out.glob("dropped/*/*.parquet"))
    files = [str(p) for p in kept + dropped]
    if not files:
        raise JcurateError(f"{out}: no kept or dropped shards to ingest")
    run_id = f"run-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    con = connect(db)
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(f"CREATE TEMP TABLE shard AS SELECT * FROM read_parquet({json.dumps(files)}, union_by_name=true)")
        dups = con.execute(
            "SELECT record_id, count(*) FROM shard GROUP BY record_id HAVING count(*) > 1 LIMIT 3").fetchall()
        if dups:
            raise JcurateError(
                f"record ids are not unique (e.g. {', '.join(d[0] for d in dups)}): check the sources' id_field")
        _sync_licenses(con, catalogue)
        now = datetime.now(timezone.utc)
        con.execute(
            "INSERT INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            [run_id, started_at or now, now, str(out), sources_file, executor, workers, json.dumps(config),
             json.dumps(_versions()), git_commit(), report["read"], report["kept"], json.dumps(report)],
        )
        for s in sources:
            con.execute(
                "INSERT INTO sources VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                [run_id, s.id, s.name, s.path, s.format, s.url, s.license,
                 s.generated_by.model if s.generated_by else None, s.generated_by.license if s.generated_by else None,
                 s.attribution, json.dumps(s.fields)],
            )
        con.execute(
            """INSERT INTO records BY NAME
               SELECT record_id, source_id, file, "row", instruction, input, output, messages, text, content_hash,
                      generated_by, label, signals, $run AS first_run_id, $run AS last_run_id FROM shard
               ON CONFLICT (record_id) DO UPDATE SET
                   source_id = excluded.source_id, file = excluded.file, "row" = excluded."row",
                   instruction = excluded.instruction, input = excluded.input, output = excluded.output,
                   messages = excluded.messages, text = excluded.text, content_hash = excluded.content_hash,
                   generated_by = excluded.generated_by, label = excluded.label, signals = excluded.signals,
                   last_run_id = excluded.last_run_id""",
            {"run": run_id},
        )
        # one row per stage a record went through: kept=true up to the stage that dropped it
        con.execute("CREATE TEMP TABLE stage_list (stage VARCHAR, stage_order INTEGER)")
        con.executemany("INSERT INTO stage_list VALUES (?, ?)", [(s, i) for i, s in enumerate(stages)])
        con.execute(
            """INSERT INTO decisions
               SELECT $run, s.record_id, l.stage, l.stage_order,
                      s.stage IS NULL OR l.stage <> s.stage AS kept,
                      CASE WHEN l.stage = s.stage THEN s.reason ELSE 'passed' END,
                      CASE WHEN l.stage = s.stage THEN s.value END
               FROM shard s JOIN stage_list l
                 ON s.stage IS NULL OR l.stage_order <= (SELECT stage_order FROM stage_list WHERE stage = s.stage)""",
            {"run": run_id},
        )
        # quality labels a source ships are scores like any other (scorer 'label'), latest run wins
        con.execute("DELETE FROM scores WHERE scorer = 'label' AND record_id IN (SELECT record_id FROM shard)")
        con.execute(
            """INSERT INTO scores
               SELECT record_id, content_hash, 'label', 'source:' || source_id, NULL, label, NULL, $run, $now
               FROM shard WHERE label IS NOT NULL""",
            {"run": run_id, "now": now},
        )
        plan = out / "work/dedup_plan.parquet"
        if plan.is_file():
            con.execute(
                f"""INSERT INTO dup_clusters
                    SELECT $run, cluster_id, record_id, stage, false FROM read_parquet('{plan}')
                    UNION ALL
                    SELECT DISTINCT $run, cluster_id, cluster_id, 'survivor', true FROM read_parquet('{plan}')""",
                {"run": run_id},
            )
        con.execute("DROP TABLE shard")
        con.execute("DROP TABLE stage_list")
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
    finally:
        con.close()
    return run_id
