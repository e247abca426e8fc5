"""The quality classifier (trained by `jcurate run` on the labels sources ship) and diversity-aware top-k."""

from __future__ import annotations

import json
import shutil

import duckdb

from curate.scoring.classifier import macro_f1, spearman
from tests.conftest import run_cli


def test_run_ends_with_a_classifier_score_for_every_kept_record(default_run):
    out, db = default_run
    report = json.loads((out / "report.json").read_text())
    clf = report["scoring"]["classifier"]
    assert report["scoring"]["scored"] == report["kept"]
    assert "no LLM judge ran" in report["scoring"]["note"]
    # it beats the majority-class baseline on held-out records, and the figures are stored
    assert clf["accuracy"] > clf["majority_accuracy"]
    assert clf["macro_f1"] > clf["majority_macro_f1"]
    assert clf["spearman"] > 0.3
    con = duckdb.connect(str(db), read_only=True)
    n = con.execute("""SELECT count(*) FROM scores s JOIN record_fate f USING (record_id)
                       WHERE s.scorer = 'classifier' AND f.kept AND s.score BETWEEN 1 AND 5""").fetchone()[0]
    assert n == report["kept"]
    stored = con.execute("SELECT metrics, train_data_hash, path FROM classifier_models").fetchone()
    assert json.loads(stored[0])["n_test"] == clf["n_test"] and stored[1] == clf["data_hash"]
    assert stored[2].endswith(".bin")


def test_metric_functions():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == 1.0
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0
    assert macro_f1([1, 1, 2, 2], [1, 1, 2, 2]) == 1.0
    assert macro_f1([1, 1, 2, 2], [1, 1, 1, 1]) == (2 * 2 / (2 * 2 + 2 + 0) + 0) / 2


PARAPHRASES = [
    ("東京の天気を教えてください。", "今日の東京は晴れで、最高気温は20度の予報です。"),
    ("東京の天気はどうですか？教えて。", "本日の東京は晴れ、最高気温20度の見込みです。"),
    ("Pythonでリストを並べ替える方法は？", "sorted(リスト) か リスト.sort() を使います。"),
    ("Pythonのリストをソートするにはどうすればいい？", "リスト.sort() か sorted(リスト) で並べ替えられます。"),
    ("おすすめの和菓子を教えてください。", "どら焼き、大福、羊羹がおすすめです。"),
    ("おすすめの和菓子を何か教えて。", "大福、どら焼き、羊羹などがおすすめです。"),
    ("富士山の高さは何メートルですか？", "富士山の高さは3776メートルです。"),
    ("富士山って何メートルあるの？", "3776メートルあります。日本一高い山です。"),
]


def test_diversity_keeps_one_of_each_paraphrase(tmp_path):
    src = tmp_path / "para.jsonl"
    src.write_text("\n".join(json.dumps({"instruction": i, "output": o}, ensure_ascii=False) for i, o in PARAPHRASES),
                   encoding="utf-8")
    manifest = tmp_path / "sources.yaml"
    manifest.write_text(f"sources:\n  - id: para\n    path: {src}\n    format: jsonl\n    license: CC0-1.0\n"
                        "    fields: {instruction: instruction, output: output}\n", encoding="utf-8")
    config = tmp_path / "config.yaml"  # dedup off: the paraphrases must reach the subset step
    config.write_text("near_dedup: {enabled: false}\nexact_dedup: {enabled: false}\nscoring: {classifier: false}\n",
                      encoding="utf-8")
    db = tmp_path / "db.duckdb"
    assert run_cli("run", "--sources", str(manifest), "--config", str(config), "--out", str(tmp_path / "out"),
                   "--db", str(db)) == 0
    assert run_cli("subset", "--name", "all", "--db", str(db)) == 0
    assert run_cli("subset", "--name", "diverse", "--diversity", "0.2", "--db", str(db)) == 0
    con = duckdb.connect(str(db), read_only=True)
    members = [r[0] for r in con.execute("SELECT record_id FROM subset_members WHERE subset = 'diverse'").fetchall()]
    assert con.execute("SELECT count(*) FROM subset_members WHERE subset = 'all'").fetchone()[0] == 8
    assert sorted(int(m.split(":")[1]) // 2 for m in members) == [0, 1, 2, 3], members
    assert con.execute("SELECT count(*) FROM embeddings").fetchone()[0] == 8, "embeddings are cached per content hash"


def test_diverse_top_k_fills_k_from_further_down(default_run, tmp_path):
    db = tmp_path / "store.duckdb"
    shutil.copy(default_run[1], db)
    assert run_cli("subset", "--name", "d", "--top-k", "30", "--score", "classifier", "--diversity", "0.3",
                   "--db", str(db)) == 0
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT count(*) FROM subset_members WHERE subset = 'd'").fetchone()[0] == 30
