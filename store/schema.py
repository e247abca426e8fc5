"""The provenance store's schema: every table and view of the project, in one place.

Tables are created if missing, so an older store gains new tables on its next write;
rows are always written by column name (``store.rows``), so adding a column never
breaks a writer.
"""

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
-- the long texts compressed with zstd: DuckDB's default (dictionary + FSST) was most of a run's store time
-- (the checkpoint of a 60k-record run 1.1 vs 0.3 s) and a larger file (real records 5.3 vs 4.2 MB per 10k)
CREATE TABLE IF NOT EXISTS records (
    record_id VARCHAR PRIMARY KEY, source_id VARCHAR, file VARCHAR, "row" BIGINT,
    instruction VARCHAR USING COMPRESSION zstd, input VARCHAR USING COMPRESSION zstd,
    output VARCHAR USING COMPRESSION zstd, messages JSON USING COMPRESSION zstd, text VARCHAR USING COMPRESSION zstd,
    content_hash VARCHAR, generated_by VARCHAR, label DOUBLE, signals JSON USING COMPRESSION zstd,
    first_run_id VARCHAR, last_run_id VARCHAR);
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
-- hub datasets: the id and the commit sha a source resolved to; older stores gain the columns
ALTER TABLE sources ADD COLUMN IF NOT EXISTS hub_id VARCHAR;
ALTER TABLE sources ADD COLUMN IF NOT EXISTS hub_revision VARCHAR;
-- the judge-free metric (eval/likelihood.py): mean per-token NLL of the reference answer; older stores gain it
ALTER TABLE eval_results ADD COLUMN IF NOT EXISTS ref_nll DOUBLE;
ALTER TABLE eval_results ADD COLUMN IF NOT EXISTS ref_tokens INTEGER;
ALTER TABLE eval_runs ADD COLUMN IF NOT EXISTS mean_ref_nll DOUBLE;
-- the one judge cache (store.cache): prompt_hash is a record's content_hash (record judging) or the
-- sha256 of a grading prompt (evaluation)
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
