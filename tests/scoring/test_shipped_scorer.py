"""The shipped scorer: the machinery on a tiny model (fit, save, load, score), the model that ships,
and its use by `jcurate run`, `jcurate subset --top-k` and the service."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from core.errors import JcurateError
from curate.scoring.classifier import spearman
from curate.scoring.quality_features import RecordView, feature_matrix
from curate.scoring.shipped_scorer import DEFAULT_MODEL, MODELS, NgramRidge, Ridge, ShippedScorer, save_model
from store.connection import connect

ROOT = Path(__file__).resolve().parents[2]


def labelled(n: int = 240) -> tuple[list[RecordView], np.ndarray]:
    rows = [json.loads(line) for line in (ROOT / "data/handwritten/qa_knowledge.jsonl").read_text(
        encoding="utf-8").splitlines() if line.strip()]
    rows = [r for r in rows if isinstance(r.get("quality"), int)][:n]
    return [RecordView.of(r["instruction"], r.get("input"), r["output"]) for r in rows], \
        np.array([float(r["quality"]) for r in rows])


def test_fit_save_load_and_score_agree(tmp_path):
    views, y = labelled()
    ngrams = NgramRidge.fit(views, y, alpha=3.0)
    X = np.column_stack([feature_matrix(views), ngrams.predict(views)])
    ridge = Ridge.fit(X, y, alpha=3.0)
    folder = save_model(tmp_path / "m", "test", "v0", ngrams, ridge=ridge)
    scorer = ShippedScorer(folder=folder)
    assert scorer.model_id == "test@v0"
    scores = scorer.score([{"instruction": v.prompt, "input": v.context, "output": v.answer} for v in views])
    assert np.allclose(scores, ridge.predict(X)), "the loaded model scores as the fitted one"
    assert ((scores >= 1) & (scores <= 5)).all()
    assert spearman(list(scores), list(y)) > 0.5, "it fits its own training labels"


def test_within_group_centring_ignores_the_dataset_level():
    # two datasets whose level differs (a length cue), and inside each the label follows another feature
    X = np.array([[10.0, 0], [10, 1], [10, 2], [1, 0], [1, 1], [1, 2]])
    y = np.array([1.0, 2, 3, 3, 4, 5])
    pooled = Ridge.fit(X, y, alpha=0.01)
    within = Ridge.fit(X, y, alpha=0.01, groups=["a", "a", "a", "b", "b", "b"])
    assert pooled.coef[0] < 0, "pooled, length explains the level"
    assert abs(within.coef[0]) < 1e-9 and within.coef[1] > 0, "centred per dataset, only the in-dataset cue counts"


def test_char_ngram_model_saves_loads_and_clips(tmp_path):
    views, y = labelled(120)
    ngrams = NgramRidge.fit(views, y, alpha=3.0)
    scorer = ShippedScorer(folder=save_model(tmp_path / "m", "ngrams", "v0", ngrams))
    scores = scorer.score([{"instruction": v.prompt, "input": v.context, "output": v.answer} for v in views])
    assert np.allclose(scores, np.clip(ngrams.predict(views), 1, 5))


def test_the_shipped_model_loads_and_scores_every_record_shape():
    scorer = ShippedScorer()
    meta = json.loads((MODELS / DEFAULT_MODEL / "model.json").read_text(encoding="utf-8"))
    assert scorer.model_id == f"{meta['name']}@{meta['version']}" == "jquality@v5"
    assert {m["left_out"] for m in meta["metrics"]} >= {"multialpaca-ja", "instruction-ja-mt", "jsquad-ja"}
    assert (MODELS / DEFAULT_MODEL / "README.md").is_file(), "the model ships with its model card"
    assert sum(f.stat().st_size for f in (MODELS / DEFAULT_MODEL).iterdir()) < 20 * 2**20
    scores = scorer.score([
        {"instruction": "日本の首都はどこですか?", "output": "日本の首都は東京です。政治や経済の中心でもあります。"},
        {"messages": json.dumps([{"role": "user", "content": "こんにちは"}, {"role": "assistant", "content": "こんにちは!"}])},
        {"instruction": "", "output": ""},
    ])
    assert scores.shape == (3,) and ((scores >= 1) & (scores <= 5)).all()


def test_a_missing_model_folder_is_one_clear_error(tmp_path):
    try:
        ShippedScorer(folder=tmp_path / "nothing")
    except JcurateError as e:
        assert str(e).startswith(f"shipped scorer: cannot load {tmp_path / 'nothing'}")
    else:
        raise AssertionError("no error for a missing model")


def test_run_scores_every_kept_record_with_the_shipped_scorer(default_run):
    _, db = default_run
    con = connect(db, read_only=True)
    try:
        kept, scored, models = con.execute(
            """SELECT count(*), count(s.score), list(DISTINCT s.model) FROM record_fate f
               LEFT JOIN scores s ON s.record_id = f.record_id AND s.scorer = 'shipped'
               WHERE f.kept AND f.run_id = (SELECT max(run_id) FROM runs)""").fetchone()
    finally:
        con.close()
    assert kept > 500 and scored == kept and models == ["jquality@v5"]


def test_the_workers_scores_travel_in_the_kept_shards_and_the_ingest_stores_them(default_run, tmp_path):
    """The dedup-decont stage's scorer writes each kept record's score into OUT/kept; the store holds
    exactly those (the run's report says how many, also as stored in `runs`), equal to the scorer's
    score of the stored record; `jcurate ingest` of the same shards (the Slurm path) stores them too."""
    import duckdb

    from curate.handover.ingest import ingest_run
    from curate.reading.manifest import load_manifest
    from curate.running.pipeline import STAGES
    from licenses.catalogue import load_catalogue

    out, db = default_run
    shards = duckdb.connect().sql(
        f"SELECT record_id, shipped_score, shipped_model FROM read_parquet('{out}/kept/*.parquet') ORDER BY 1").fetchall()
    con = connect(db, read_only=True)
    try:
        run_id, report = con.execute("SELECT run_id, report FROM runs ORDER BY run_id DESC LIMIT 1").fetchone()
        stored = con.execute("SELECT record_id, score, model FROM scores WHERE scorer = 'shipped' AND run_id = ? "
                             "ORDER BY 1", [run_id]).fetchall()
        records = con.execute("SELECT instruction, input, output, messages FROM records WHERE record_id IN "
                              "(SELECT record_id FROM scores WHERE run_id = ? AND scorer = 'shipped') ORDER BY record_id",
                              [run_id]).fetchall()
    finally:
        con.close()
    assert len(shards) > 500 and stored == shards
    assert json.loads(report)["scoring"]["shipped"] == {"scorer": "shipped", "model": "jquality@v5", "scored": len(shards)}
    rescored = ShippedScorer().score([dict(zip(("instruction", "input", "output", "messages"), r)) for r in records])
    assert np.allclose(rescored, [s for _, s, _ in stored], rtol=0, atol=1e-12)
    report = {"read": 0, "kept": 0}
    sources = load_manifest(ROOT / "data/sources.yaml", load_catalogue())
    again = ingest_run(tmp_path / "slurm.duckdb", out, sources, load_catalogue(), config={}, report=report,
                       sources_file="data/sources.yaml", executor="slurm", stages=STAGES)
    assert report["scoring"]["shipped"]["scored"] == len(shards)
    con = connect(tmp_path / "slurm.duckdb", read_only=True)
    try:
        assert con.execute("SELECT record_id, score, model FROM scores WHERE scorer = 'shipped' AND run_id = ? "
                           "ORDER BY 1", [again]).fetchall() == shards
    finally:
        con.close()


def test_scoring_off_leaves_the_shards_without_scores(tmp_path):
    from jcurate.cli import main

    rows = (ROOT / "data/labels/real_records.jsonl").read_text(encoding="utf-8").splitlines()[:40]
    (tmp_path / "mine.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")
    (tmp_path / "sources.yaml").write_text(
        "sources:\n  - id: mine\n    path: mine.jsonl\n    format: jsonl\n    license: Apache-2.0\n    id_field: id\n"
        "    fields: {instruction: instruction, input: input, output: output}\n", encoding="utf-8")
    (tmp_path / "config.yaml").write_text("scoring: {shipped: false}\n", encoding="utf-8")
    out, db = tmp_path / "out", tmp_path / "store.duckdb"
    assert main(["run", "--sources", str(tmp_path / "sources.yaml"), "--out", str(out), "--db", str(db),
                 "--config", str(tmp_path / "config.yaml"), "--workers", "1"]) == 0
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["kept"] > 10 and report["scoring"]["shipped"] == "disabled (scoring.shipped: false)"
    import duckdb

    assert duckdb.connect().execute(f"SELECT count(shipped_score) FROM read_parquet('{out}/kept/*.parquet')").fetchone() == (0,)
    con = connect(db, read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM scores WHERE scorer = 'shipped'").fetchone() == (0,)
    finally:
        con.close()


def test_top_k_works_out_of_the_box_on_a_source_without_labels(tmp_path):
    """A user's own data, no labels, no judge: the run scores it, --top-k ranks by the shipped scorer."""
    from jcurate.cli import main

    rows = [line for line in (ROOT / "data/labels/real_records.jsonl").read_text(encoding="utf-8").splitlines()
            if '"multialpaca-ja"' in line][:80]
    (tmp_path / "mine.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")
    (tmp_path / "sources.yaml").write_text(
        "sources:\n  - id: mine\n    path: mine.jsonl\n    format: jsonl\n    license: Apache-2.0\n    id_field: id\n"
        "    fields: {instruction: instruction, input: input, output: output}\n", encoding="utf-8")
    out, db = tmp_path / "out", tmp_path / "store.duckdb"
    assert main(["run", "--sources", str(tmp_path / "sources.yaml"), "--out", str(out), "--db", str(db)]) == 0
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["scoring"]["shipped"]["scored"] == report["kept"] > 50
    assert report["scoring"]["classifier"].startswith("skipped: only 0 records carry 'label' scores")
    export = tmp_path / "top.jsonl"
    assert main(["subset", "--db", str(db), "--name", "top", "--top-k", "10", "--out", str(export)]) == 0
    picked = [json.loads(line) for line in export.read_text(encoding="utf-8").splitlines()]
    con = connect(db, read_only=True)
    try:
        criteria = json.loads(con.execute("SELECT criteria FROM subsets WHERE name = 'top'").fetchone()[0])
        best = [r[0] for r in con.execute(
            "SELECT score FROM scores WHERE scorer = 'shipped' ORDER BY score DESC LIMIT 10").fetchall()]
    finally:
        con.close()
    assert criteria["score"] == "shipped"
    assert [round(p["score"], 6) for p in picked] == [round(b, 6) for b in best]


def test_scoring_a_page_at_a_time_scores_each_kept_record_once(default_run, tmp_path):
    """Kept records are read in pages (memory does not grow with the run): small pages give the run's scores."""
    import shutil

    from curate.scoring.kept_scores import store_kept_scores

    _, db = default_run
    shutil.copy(db, tmp_path / "copy.duckdb")
    con = connect(tmp_path / "copy.duckdb")
    try:
        run_id = con.execute("SELECT max(run_id) FROM runs").fetchone()[0]
        query = "SELECT record_id, score FROM scores WHERE scorer = 'shipped' AND run_id = ? ORDER BY record_id"
        before = con.execute(query, [run_id]).fetchall()
        scorer = ShippedScorer()
        n, _ = store_kept_scores(con, run_id, "shipped", scorer.model_id, scorer.score_kept, batch=7)
        after = con.execute(query, [run_id]).fetchall()
    finally:
        con.close()
    assert n == len(before) == len(after) > 500
    assert [r for r, _ in after] == [r for r, _ in before]
    assert np.allclose([s for _, s in after], [s for _, s in before])


def test_v1_stays_loadable_for_comparison():
    v1 = ShippedScorer("jquality-v1")
    assert v1.model_id == "jquality@v1"
    scores = v1.score([{"instruction": "日本の首都はどこですか?", "output": "東京です。"}])
    assert scores.shape == (1,) and 1 <= scores[0] <= 5


def test_v2_ranks_an_answer_to_another_question_below_the_right_one():
    """The fit the score sees: the same prompt with its own answer and with another record's answer."""
    scorer = ShippedScorer()
    pairs = [
        ("東京タワーの高さは何メートルですか?", "東京タワーの高さは333メートルです。1958年に完成しました。"),
        ("カレーライスの作り方を簡単に教えてください。",
         "玉ねぎ、人参、じゃがいも、肉を炒めて煮込み、カレールーを溶かせば完成です。"),
        ("Pythonでリストの要素を合計するコードを書いてください。",
         "sum関数を使います。\n\nnumbers = [1, 2, 3]\nprint(sum(numbers))"),
        ("富士山について三行で説明してください。",
         "富士山は日本一高い山です。\n標高は3776メートルです。\n世界文化遺産に登録されています。"),
    ]
    own = scorer.score([{"instruction": p, "output": a} for p, a in pairs])
    swapped = scorer.score([{"instruction": p, "output": pairs[(i + 1) % len(pairs)][1]} for i, (p, _) in enumerate(pairs)])
    assert (own > swapped).all(), (own, swapped)


def test_v2_model_folder_kind_and_features_are_checked(tmp_path):
    meta = json.loads((MODELS / "jquality-v2" / "model.json").read_text(encoding="utf-8"))
    assert meta["kind"] == "features+fit" and (MODELS / "jquality-v2" / "pair_weights.npy").is_file()
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "model.json").write_text(json.dumps({**meta, "features": meta["features"][:-1]}), encoding="utf-8")
    (tmp_path / "m" / "pair_weights.npy").write_bytes((MODELS / "jquality-v2" / "pair_weights.npy").read_bytes())
    try:
        ShippedScorer(folder=tmp_path / "m")
    except JcurateError as e:
        assert "features differ" in str(e)
    else:
        raise AssertionError("a model whose features differ from the code's must not load")


LONG_OFF_TOPIC = ("京都は794年に平安京として都が置かれて以来、千年以上にわたり日本の政治と文化の中心でした。"
                  "清水寺や金閣寺、伏見稲荷大社など多くの寺社があり、毎年多くの観光客が訪れます。"
                  "祇園祭は7月に行われ、山鉾巡行は特に有名です。") * 4


def test_v3_a_long_answer_to_another_question_does_not_outscore_a_short_right_one():
    """What v3's length gate is for: v2 pays the length bonus whether or not the answer belongs to its prompt.
    The gate takes the bonus away; it does not lift the short-answer penalty, so a five-character answer
    (「55です。」) still scores a little below a long answer to another question (1.19 vs 1.28)."""
    pairs = [("Pythonでリストを逆順にする関数を書いてください。", "def reverse(xs):\n    return xs[::-1]"),
             ("「猫」を英語に訳してください。", "cat"),
             ("1から10までの和を求めてください。", "55です。")]
    scores = {}
    for name in ("jquality-v2", "jquality-v3"):
        scorer = ShippedScorer(name)
        scores[name] = (scorer.score([{"instruction": p, "output": a} for p, a in pairs]),
                        scorer.score([{"instruction": p, "output": LONG_OFF_TOPIC} for p, _ in pairs]))
    own, off_topic = scores["jquality-v3"]
    assert (scores["jquality-v2"][1] > scores["jquality-v2"][0]).all(), "v2 ranked all three the wrong way round"
    assert (own[:2] > off_topic[:2]).all(), scores
    assert (off_topic < scores["jquality-v2"][1] - 0.5).all(), "the off-topic answer loses its length bonus"
    assert (scores["jquality-v2"][0] == own).all(), "the gate leaves a short answer's score alone"


def test_the_length_gate_halves_the_bonus_at_the_gate_and_leaves_short_answers_alone():
    from curate.scoring.quality_features import FEATURES
    from curate.scoring.shipped_scorer import V2_FEATURES, v2_raw

    X = np.zeros((3, len(V2_FEATURES)))
    length, fit = FEATURES.index("log_answer_chars"), V2_FEATURES.index("pair_fit_logit")
    X[:, length] = [6.0, 6.0, 3.0]   # two long answers, one short (centre 4)
    X[:, fit] = [5.0, 1.0, -4.0]     # surely fits, at the gate, surely another question's
    quality = np.full(3, 3.0)
    plain = v2_raw(quality, X, 0.0, 1.0, 4.0)
    gated = v2_raw(quality, X, 0.0, 1.0, 4.0, length_gate=1.0)
    assert plain.tolist() == [5.0, 5.0, 2.0]
    assert abs(gated[0] - (3.0 + 2.0 / (1 + np.exp(-8.0)))) < 1e-12
    assert abs(gated[1] - 4.0) < 1e-12, "half the bonus at the gate"
    assert gated[2] == plain[2], "a short answer's penalty is not gated"


def test_the_bonus_weight_multiplies_the_gated_bonus_only():
    """jquality-v4's ``length_bonus_weight``: three times v3's bonus for an answer that fits, the gate as
    before, and a short answer's penalty at ``length_weight`` (a heavier penalty would sink short right
    answers below long answers to other questions)."""
    from curate.scoring.quality_features import FEATURES
    from curate.scoring.shipped_scorer import V2_FEATURES, v2_raw

    X = np.zeros((3, len(V2_FEATURES)))
    X[:, FEATURES.index("log_answer_chars")] = [6.0, 6.0, 3.0]
    X[:, V2_FEATURES.index("pair_fit_logit")] = [5.0, 1.0, -4.0]
    quality = np.full(3, 3.0)
    v3 = v2_raw(quality, X, 0.0, 1.0, 4.0, length_gate=1.0)
    v4 = v2_raw(quality, X, 0.0, 1.0, 4.0, length_gate=1.0, length_bonus_weight=3.0)
    assert np.allclose(v4[:2] - 3.0, 3.0 * (v3[:2] - 3.0)) and v4[2] == v3[2] == 2.0
    assert abs(v4[1] - 6.0) < 1e-12, "half of the tripled bonus at the gate"


def test_v4_pays_more_for_a_long_answer_that_fits_and_keeps_v3_s_order_elsewhere():
    """v4 is v3's ridge and pair model with the bonus tripled: a long, fitting answer gains on a short one,
    the long answer to another question still loses to the right answers, and short answers score as in v3."""
    v3, v4 = ShippedScorer("jquality-v3"), ShippedScorer("jquality-v4")
    assert v4.model_id == "jquality@v4" and v4.length_bonus_weight == 3.0 and v3.length_bonus_weight is None
    long_fit = {"instruction": "京都の歴史と見どころを説明してください。", "output": LONG_OFF_TOPIC}
    short = {"instruction": "1から10までの和を求めてください。", "output": "55です。"}
    code = {"instruction": "Pythonでリストを逆順にする関数を書いてください。", "output": "def reverse(xs):\n    return xs[::-1]"}
    off_topic = {"instruction": code["instruction"], "output": LONG_OFF_TOPIC}
    s3, s4 = v3.score([long_fit, short, code, off_topic]), v4.score([long_fit, short, code, off_topic])
    assert s4[0] > s3[0] and s4[1] == s3[1]
    assert s4[2] > s4[3], (s3, s4)
