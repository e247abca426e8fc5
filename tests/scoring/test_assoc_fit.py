"""The learned association of prompt and answer (``curate.scoring.assoc_fit``): its grams are built for a whole
batch at once and must not cross records; it learns from real pairs; it saves and loads; and joined to the
pair model it stands where the pair model stands in a shipped scorer's folder."""

from __future__ import annotations

import json
import random

import numpy as np

from core.jsonl import json_objects
from curate.scoring.assoc_fit import (
    ASSOC_TABLES,
    AssocFit,
    PairWithAssoc,
    _unit,
    gram_buckets,
    side_matrix,
    side_sums,
    turns_of,
)
from curate.scoring.pair_fit import PairFit, swapped_answers
from curate.scoring.quality_features import RecordView
from curate.scoring.shipped_scorer import PAIR_WEIGHTS, ShippedScorer, model_folder
from tests.scoring.test_batch_features import VIEWS


def test_grams_of_a_batch_equal_each_text_alone():
    texts = ["東京タワー", "", "ab", "こんにちは 世界", "x"]
    owners, buckets = gram_buckets(texts, 1)
    for i, t in enumerate(texts):
        alone = gram_buckets([t], 1)[1]
        assert sorted(buckets[owners == i].tolist()) == sorted(alone.tolist()), t
    # 1-, 2- and 3-grams of 「東京タワー」 (5 characters): 5 + 4 + 3; white space is not a character
    assert (owners == 0).sum() == 12 and (owners == 3).sum() == 7 + 6 + 5
    # the same gram in another namespace is another bucket (the prompt's last turn is not the answer)
    assert set(gram_buckets(["東京"], 1)[1].tolist()).isdisjoint(gram_buckets(["東京"], 3)[1].tolist())


def test_a_conversation_reads_its_last_turns_and_an_instruction_its_prompt_and_context():
    chat = RecordView("はじめまして\nラーメンが好きです\n何味が好きですか", "", "味噌です", True)
    assert turns_of(chat) == ("何味が好きですか", "ラーメンが好きです", "はじめまして")
    assert turns_of(RecordView("要約して", "長い文", "短い文")) == ("要約して", "長い文", "")
    rows = side_matrix([chat, VIEWS[0]], True, earlier=True)
    assert np.allclose(rows.sum(axis=1), 1.0)  # each row is a mean of its grams


def test_the_scoring_sums_point_where_the_training_rows_do():
    """Scoring sums table rows per gram length in text order (no sort); training reads ``side_matrix`` (each row
    a mean): the same direction for every record, prompt and answer side."""
    table = np.random.default_rng(0).normal(size=(1 << 16, 8)).astype(np.float32)
    views = VIEWS + [RecordView("a\nb\nc\nd", "", "e", True)]
    for prompt_side, earlier in ((True, True), (True, False), (False, False)):
        expected = _unit(side_matrix(views, prompt_side, earlier) @ table)
        got = _unit(side_sums(views, table, prompt_side, earlier))
        assert np.allclose(got, expected, atol=1e-5), (prompt_side, earlier)


def _real_pairs(n: int) -> tuple[list[RecordView], list[str]]:
    """Committed public records (data/labels/real_records.jsonl), one pair per record."""
    views, groups = [], []
    for r in json_objects("data/labels/real_records.jsonl"):
        views.append(RecordView.of(r.get("instruction"), r.get("input"), r.get("output"), r.get("messages")))
        groups.append(r["source_id"])
    pick = sorted(random.Random(0).sample(range(len(views)), min(n, len(views))))
    return [views[i] for i in pick], [groups[i] for i in pick]


def test_training_learns_which_answer_belongs_and_the_model_saves_and_loads(tmp_path):
    views, groups = _real_pairs(600)
    assoc = AssocFit.train(views, groups, epochs=4, batch=32, dim=16, lr=1e-2, log=lambda _: None)
    twins = swapped_answers(views, groups, seed=7)
    own, other = assoc.score(views), assoc.score(twins)
    assert np.all((own >= -1.0001) & (own <= 1.0001))
    assert np.mean(own > other) > 0.8  # pairs it trained on: it must at least have learned those
    together = assoc.score(VIEWS)
    assert np.allclose(together, np.concatenate([assoc.score([v]) for v in VIEWS]))
    path = tmp_path / ASSOC_TABLES
    assoc.save(path)
    loaded = AssocFit.load(path)
    assert loaded.prompt_table.shape == assoc.prompt_table.shape and loaded.earlier == assoc.earlier
    assert np.allclose(loaded.score(views), own, atol=5e-3)  # the tables are stored as int8 with a scale per row


def test_pair_with_assoc_is_a_logit_that_a_shipped_scorer_folder_carries(tmp_path):
    views, groups = _real_pairs(400)
    twins = swapped_answers(views, groups, seed=7)
    pair = ShippedScorer("jquality-v4").pair  # a PairFit (the default's is joined already)
    assoc = AssocFit.train(views, groups, epochs=3, batch=32, dim=16, lr=1e-2, log=lambda _: None)
    joined = PairWithAssoc.fit_weights(pair, assoc, views, twins)
    # the association separates these pairs (instructions and conversations alike): the fit gives it weight
    assert joined.assoc_weight[0] > 0 and joined.assoc_weight[1] > 0
    chat = np.array([v.multi_turn for v in views])
    assert chat.any() and (~chat).any()
    for kind in (0, 1):
        m = chat == bool(kind)
        expected = (joined.pair_weight[kind] * pair.score(views)[m] + joined.assoc_weight[kind] * assoc.score(views)[m]
                    + joined.bias[kind])
        assert np.allclose(joined.score(views)[m], expected)
    assert np.mean(joined.score(views) > joined.score(twins)) >= np.mean(pair.score(views) > pair.score(twins))
    # a shipped model's folder with the association: v4's, plus the tables and their weights in model.json
    folder = tmp_path / "jquality-test"
    folder.mkdir()
    meta = json.loads((model_folder("jquality-v4") / "model.json").read_text(encoding="utf-8"))
    joined.save(folder / PAIR_WEIGHTS)
    (folder / "model.json").write_text(json.dumps({**meta, "assoc": joined.to_dict()}), encoding="utf-8")
    scorer = ShippedScorer(folder=folder)
    assert isinstance(scorer.pair, PairWithAssoc) and isinstance(scorer.pair.pair, PairFit)
    tolerance = 5e-3 * max(abs(w) for w in joined.assoc_weight)  # int8 tables: a cosine moves by < 0.005
    assert np.allclose(scorer.pair.score(views), joined.score(views), atol=tolerance)
    scores = scorer.score_views(views)
    assert np.all((scores >= 1) & (scores <= 5)) and not np.allclose(scores, ShippedScorer("jquality-v4").score_views(views))


def test_jquality_v5_scores_instructions_as_v4_and_tells_a_conversations_reply_better():
    """v5 is v4 with the association for conversations: an instruction's score is v4's bit for bit; on the
    committed RealPersonaChat records (public, labelled) its own last reply beats another conversation's more
    often than under v4."""
    v4, v5 = ShippedScorer("jquality-v4"), ShippedScorer("jquality-v5")
    assert v5.model_id == "jquality@v5"
    views, groups = _real_pairs(1500)
    chat = np.array([v.multi_turn for v in views])
    a, b = v4.score_views(views), v5.score_views(views)
    assert np.array_equal(a[~chat], b[~chat]) and not np.allclose(a[chat], b[chat])
    conversations = [v for v, c in zip(views, chat) if c]
    twins = swapped_answers(conversations, ["chat"] * len(conversations), seed=7)
    share = {name: float(np.mean(s.score_views(conversations) > s.score_views(twins))) for name, s in
             (("v4", v4), ("v5", v5))}
    assert len(conversations) == 200 and share["v5"] > share["v4"] + 0.05, share


def test_a_run_with_jquality_v5_stores_its_scores(tmp_path):
    import duckdb

    from tests.conftest import run_cli

    cfg = tmp_path / "run.yaml"
    cfg.write_text("scoring:\n  shipped_model: jquality-v5\n", encoding="utf-8")
    out, db = tmp_path / "out", tmp_path / "store.duckdb"
    assert run_cli("run", "--out", str(out), "--db", str(db), "--config", str(cfg), "--workers", "1") == 0
    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = con.execute("""SELECT r.instruction, r.input, r.output, r.messages, s.score, s.model FROM scores s
                              JOIN records r USING (record_id) WHERE s.scorer = 'shipped'""").fetchall()
    finally:
        con.close()
    assert len(rows) > 500 and {r[5] for r in rows} == {"jquality@v5"}
    assert any(r[3] for r in rows), "the default data holds conversations"
    again = ShippedScorer("jquality-v5").score([dict(zip(("instruction", "input", "output", "messages"), r[:4]))
                                                for r in rows])
    assert np.allclose(again, [r[4] for r in rows], rtol=0, atol=1e-12)
