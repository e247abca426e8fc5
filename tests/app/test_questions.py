"""The five SQL questions of the README (docs/questions.sql) on the embedded default."""

from __future__ import annotations

import re
import shutil

import pytest

from store.query import run_query
from tests.conftest import ROOT, run_cli


def questions() -> dict[str, str]:
    text = (ROOT / "docs/questions.sql").read_text(encoding="utf-8")
    return {m.group(1): m.group(2).strip() for m in re.finditer(r"-- (Q\d):[^\n]*\n(.*?;)", text, re.S)}


@pytest.fixture(scope="module")
def db(default_run, tmp_path_factory):
    db = tmp_path_factory.mktemp("questions") / "store.duckdb"
    shutil.copy(default_run[1], db)
    assert run_cli("subset", "--name", "commercial-top100", "--license-use", "commercial", "--top-k", "100",
                   "--score", "label", "--db", str(db)) == 0
    return db


def test_five_questions_are_there():
    assert sorted(questions()) == ["Q1", "Q2", "Q3", "Q4", "Q5"]


def test_q1_subset_sources_and_licenses(db):
    cols, rows = run_query(db, questions()["Q1"])
    assert cols[:6] == ["source_id", "source_license", "model_license", "effective_license", "records", "use"]
    assert sum(r[4] for r in rows) == 100
    assert all(r[5] == "commercial" for r in rows)
    # a model-generated source shows its model's terms, and they decide the effective license
    assert {(r[0], r[2], r[3]) for r in rows if r[2]} == {("jcurate-synthetic", "Gemma", "Gemma")}
    assert "jcurate-chat" not in {r[0] for r in rows}


def test_q2_why_dropped(db):
    _, rows = run_query(db, questions()["Q2"])
    assert len(rows) == 1 and rows[0][1:3] == ("near_dedup", "near_duplicate")
    assert rows[0][3].startswith("jcurate-alpaca:")


def test_q3_score_distribution(db):
    _, rows = run_query(db, questions()["Q3"])
    by_source = {r[0]: r for r in rows if r[1] == "label"}
    assert set(by_source) == {"jcurate-alpaca", "jcurate-labelled", "jcurate-code", "jcurate-synthetic"}
    assert all(1 <= r[4] <= r[3] <= r[5] <= 5 for r in by_source.values())


def test_q4_model_generated(db):
    _, rows = run_query(db, questions()["Q4"])
    assert {(r[0], r[1], r[2], r[3]) for r in rows} == {
        ("jcurate-synthetic", "google/gemma-3-270m", "Gemma", "Gemma")}
    assert sum(r[5] for r in rows) == 130


def test_q5_train_runs_query_runs(db):
    cols, rows = run_query(db, questions()["Q5"])
    assert cols[:3] == ["train_run_id", "subset", "n_records"]
    assert rows == []  # the SFT stage fills train_runs


@pytest.fixture(scope="module")
def two_runs(default_run, tmp_path_factory):
    """The embedded default run twice into one store: the second run trains and scores with a classifier of
    its own, so the store holds two classifiers' scores of the same records."""
    tmp = tmp_path_factory.mktemp("questions-two-runs")
    db = tmp / "store.duckdb"
    shutil.copy(default_run[1], db)
    assert run_cli("run", "--out", str(tmp / "out"), "--db", str(db), "--workers", "1") == 0
    return db


def test_q3_counts_the_latest_runs_scores_once_in_a_store_of_two_runs(two_runs):
    _, rows = run_query(two_runs, questions()["Q3"])
    n = {(r[0], r[1]): r[2] for r in rows}
    kept = dict(run_query(two_runs, """SELECT r.source_id, count(*) FROM record_fate f JOIN records r USING (record_id)
                                       WHERE f.run_id = (SELECT run_id FROM latest_run) AND f.kept GROUP BY ALL""")[1])
    assert run_query(two_runs, "SELECT count(DISTINCT model) FROM scores WHERE scorer = 'classifier'")[1] == [(2,)]
    for source, k in kept.items():
        assert n[(source, "shipped")] == k and n[(source, "classifier")] == k, source
