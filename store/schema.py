"""The provenance store's schema: every table and view of the project, in one place.

Tables are created if missing, so an older store gains new tables on its next write;
rows are always written by column name (``store.rows``), so adding a column never
breaks a writer.
"""

# a record's decisions: one row per stage it went through in a run, kept up to the stage that dropped it
# ('passed' where kept)
DECISIONS_OF_OUTCOMES = """SELECT o.run_id, o.record_id, s.stage, s.stage_order,
           o.dropped_at IS NULL OR s.stage <> o.dropped_at AS kept,
           CASE WHEN s.stage = o.dropped_at THEN o.reason ELSE 'passed' END AS reason,
           CASE WHEN s.stage = o.dropped_at THEN o.value END AS value
    FROM record_outcomes o JOIN run_stages s
      ON s.run_id = o.run_id AND (o.dropped_at IS NULL OR s.stage_order <= o.dropped_order)"""

TABLES = """
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
-- the long texts compressed with zstd: DuckDB's default (dictionary + FSST) was most of a run's store time
-- (the checkpoint of a 60k-record run 1.1 vs 0.3 s) and a larger file (real records 5.3 vs 4.2 MB per 10k)
CREATE TABLE IF NOT EXISTS records (
    record_id VARCHAR PRIMARY KEY, source_id VARCHAR, file VARCHAR, "row" BIGINT,
    instruction VARCHAR USING COMPRESSION zstd, input VARCHAR USING COMPRESSION zstd,
    output VARCHAR USING COMPRESSION zstd, messages JSON USING COMPRESSION zstd, text VARCHAR USING COMPRESSION zstd,
    content_hash VARCHAR, generated_by VARCHAR, label DOUBLE, signals JSON USING COMPRESSION zstd,
    first_run_id VARCHAR, last_run_id VARCHAR);
-- what became of each record in a run, one row per record and run (dropped_at NULL: kept), and the stages each
-- run had, in order: the ``decisions`` view below makes them a row per stage a record went through (stored,
-- those rows were five times as many, most of a run's store rows and a quarter of its store time)
CREATE TABLE IF NOT EXISTS run_stages (run_id VARCHAR, stage VARCHAR, stage_order INTEGER);
CREATE TABLE IF NOT EXISTS record_outcomes (
    run_id VARCHAR, record_id VARCHAR, dropped_at VARCHAR, dropped_order INTEGER, reason VARCHAR, value VARCHAR);
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
-- hub datasets: the id and the commit sha a source resolved to; older stores gain the columns
ALTER TABLE sources ADD COLUMN IF NOT EXISTS hub_id VARCHAR;
ALTER TABLE sources ADD COLUMN IF NOT EXISTS hub_revision VARCHAR;
-- a run that changed a stored source's declaration (`jcurate run --relicense`): the run whose declaration it
-- replaced; the earlier runs' rows stay, the source's license history
ALTER TABLE sources ADD COLUMN IF NOT EXISTS relicensed_from_run VARCHAR;
-- the judge-free metric (eval/likelihood.py): mean per-token NLL of the reference answer; older stores gain it
ALTER TABLE eval_results ADD COLUMN IF NOT EXISTS ref_nll DOUBLE;
ALTER TABLE eval_results ADD COLUMN IF NOT EXISTS ref_tokens INTEGER;
ALTER TABLE eval_runs ADD COLUMN IF NOT EXISTS mean_ref_nll DOUBLE;
-- the judge's mean per scale: ELYZA-shape answers are graded 1-5, MT-Bench turns 1-10, so mean_score (kept for
-- older readers) mixes two scales; older stores gain the columns
ALTER TABLE eval_runs ADD COLUMN IF NOT EXISTS mean_score_elyza DOUBLE;
ALTER TABLE eval_runs ADD COLUMN IF NOT EXISTS mean_score_mt_bench DOUBLE;
-- each result's shape, so its judge's scale ('elyza': 1-5, 'mt-bench': 1-10), which `jcurate compare` compares
-- apart; older stores gain the column (their rows' shapes are read again from the run's eval files)
ALTER TABLE eval_results ADD COLUMN IF NOT EXISTS shape VARCHAR;
-- the one judge cache (store.cache): prompt_hash is a record's content_hash (record judging) or the
-- sha256 of a grading prompt (evaluation)
CREATE TABLE IF NOT EXISTS judge_cache (
    prompt_hash VARCHAR, model VARCHAR, prompt_version VARCHAR, score DOUBLE, raw JSON);
CREATE TABLE IF NOT EXISTS subsets (
    name VARCHAR PRIMARY KEY, run_id VARCHAR, created_at TIMESTAMPTZ, criteria JSON, n_records BIGINT,
    export_path VARCHAR);
CREATE TABLE IF NOT EXISTS subset_members (subset VARCHAR, record_id VARCHAR, rank INTEGER, score DOUBLE);
-- the id the run's folder was given when the run started (work/run.json): a folder is stored once; older
-- stores gain the column
ALTER TABLE runs ADD COLUMN IF NOT EXISTS run_folder_id VARCHAR;
-- why a subset has fewer records than the k it asked for (NULL: it has them); older stores gain the column
ALTER TABLE subsets ADD COLUMN IF NOT EXISTS size_note VARCHAR;
"""

VIEWS = """
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
CREATE OR REPLACE VIEW decisions AS DECISIONS_OF_OUTCOMES;
-- each record's final fate in a run (a record dropped at a stage its run did not have has no decisions, no fate)
CREATE OR REPLACE VIEW record_fate AS
    SELECT run_id, record_id, dropped_at IS NULL AS kept, dropped_at, reason, value
    FROM record_outcomes WHERE dropped_at IS NULL OR dropped_order IS NOT NULL;
""".replace("DECISIONS_OF_OUTCOMES", DECISIONS_OF_OUTCOMES)

SCHEMA = TABLES + VIEWS


# an older store's per-stage decisions table, as the outcomes and stages above
_OUTCOMES_OF_DECISIONS = """
INSERT INTO run_stages SELECT DISTINCT run_id, stage, stage_order FROM decisions;
INSERT INTO record_outcomes
    SELECT run_id, record_id, max(stage) FILTER (WHERE NOT kept), max(stage_order) FILTER (WHERE NOT kept),
           max(reason) FILTER (WHERE NOT kept), max(value) FILTER (WHERE NOT kept)
    FROM decisions GROUP BY run_id, record_id;
"""
_STORED = "SELECT run_id, record_id, stage, stage_order, kept, reason, value FROM decisions"


def migrate_decisions(con) -> str | None:
    """An older store keeps a row per stage in a ``decisions`` table: its rows become ``run_stages`` and
    ``record_outcomes`` (``TABLES`` created them), so that ``decisions`` can be the view; in the caller's
    transaction. The table is dropped only where the view gives back exactly its rows; otherwise it is
    kept, renamed ``decisions_legacy``. Returns what was done; None for a store without that table (new,
    or migrated already)."""
    kind = con.execute("SELECT table_type FROM information_schema.tables WHERE table_name = 'decisions' "
                       "AND table_schema = 'main' AND table_catalog = current_database()").fetchone()
    if not kind or kind[0] != "BASE TABLE":
        return None
    con.execute("DROP VIEW IF EXISTS record_fate")  # it reads the table
    con.execute(_OUTCOMES_OF_DECISIONS)
    differ = con.execute(f"SELECT count(*) FROM (({_STORED}) EXCEPT ALL ({DECISIONS_OF_OUTCOMES})) UNION ALL "
                         f"SELECT count(*) FROM (({DECISIONS_OF_OUTCOMES}) EXCEPT ALL ({_STORED}))").fetchall()
    if any(n for (n,) in differ):
        con.execute("ALTER TABLE decisions RENAME TO decisions_legacy")
        return "renamed: its rows are not all rows of the view (kept as decisions_legacy)"
    con.execute("DROP TABLE decisions")
    return "migrated"
