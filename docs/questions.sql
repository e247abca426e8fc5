-- Five questions a user asks of the provenance store, answered in plain SQL.
-- Run one with: uv run jcurate sql "$(sed -n '/^-- Q1/,/;$/p' docs/questions.sql)"

-- Q1: which sources, under which licenses, make up subset S, and what do they oblige?
SELECT rl.source_id, rl.source_license, rl.model_license, rl.license AS effective_license, count(*) AS records,
       l.use, sl.attribution OR coalesce(ml.attribution, false) AS attribution,
       sl.share_alike OR coalesce(ml.share_alike, false) AS share_alike,
       coalesce(ml.restricts_training_other_models, false) AS restricts_training
FROM subset_members m
JOIN record_license rl USING (record_id)
JOIN licenses l ON l.license_id = rl.license
JOIN licenses sl ON sl.license_id = rl.source_license
LEFT JOIN licenses ml ON ml.license_id = rl.model_license
WHERE m.subset = 'commercial-top100'
GROUP BY ALL ORDER BY records DESC;

-- Q2: why was record R dropped, by which stage, with which value?
SELECT run_id, stage, reason, value
FROM decisions
WHERE record_id = 'jcurate-labelled:punct-0' AND NOT kept;

-- Q3: score distribution per source and scorer, over the latest run (each record's latest score by each scorer)
SELECT r.source_id, sc.scorer, count(*) AS n, round(avg(sc.score), 2) AS mean,
       round(min(sc.score), 2) AS min, round(max(sc.score), 2) AS max
FROM (SELECT record_id, scorer, arg_max(score, created_at) AS score FROM scores
      WHERE run_id = (SELECT run_id FROM latest_run) GROUP BY ALL) sc
JOIN records r USING (record_id)
GROUP BY ALL ORDER BY r.source_id, sc.scorer;

-- Q4: records derived from model-generated data, their effective license and fate
SELECT rl.source_id, rl.generated_by_model, rl.model_license, rl.license AS effective_license,
       f.kept, count(*) AS records
FROM record_license rl JOIN record_fate f USING (record_id)
WHERE rl.generated_by_model IS NOT NULL AND f.run_id = (SELECT run_id FROM latest_run)
GROUP BY ALL ORDER BY f.kept DESC;

-- Q5: which train run used which subset, from which base, and how did it score?
-- (one row per evaluation, with the judge's mean on each scale, ELYZA shape 1-5 and MT-Bench shape 1-10, and the reference NLL)
SELECT t.train_run_id, t.subset, sub.n_records, t.base_model, t.method, e.eval_run_id,
       e.mean_score_elyza, e.mean_score_mt_bench, e.mean_ref_nll, t.metrics
FROM train_runs t
JOIN subsets sub ON sub.name = t.subset
LEFT JOIN eval_runs e USING (train_run_id)
ORDER BY t.train_run_id, e.created_at;
