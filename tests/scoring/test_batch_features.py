"""The scorer's features are computed for a whole batch at once (one numpy pass over every text's code points).
A batch must give each record exactly what it gets alone: no bigram, script count or pair-model column may
leak across the boundary between two records' texts."""

from __future__ import annotations

import numpy as np

from curate.scoring.fit_features import FIT_FEATURES, bigram_sets, content_bigrams, fit_features, fit_matrix, set_sizes
from curate.scoring.pair_fit import pair_matrix
from curate.scoring.quality_features import FEATURES, RecordView, class_counts, feature_matrix
from curate.scoring.shipped_scorer import ShippedScorer, v2_matrix

# texts that end and start with content characters, so that a bigram across two records' boundary would exist
VIEWS = [
    RecordView("東京タワーの高さは何メートルですか", "", "東京タワーの高さは333メートルです。"),
    RecordView("3つの果物を挙げて", "", "- りんご\n- バナナ\n- ABCみかん"),
    RecordView("次の文を要約して", "Pythonはプログラミング言語です。" * 3, "Pythonは言語。"),
    RecordView("", "", ""),
    RecordView("a", "", "b"),
    RecordView("こんにちは\nお元気ですか", "", "元気です。あなたは?ＸＹＺ１２３", True),
    RecordView("Pythonで1から10まで足すコードを書いて", "", "55"),
    RecordView("翻訳して: light", "", "light状の光です。lightえ"),
]


def test_bigram_sets_match_each_text_alone():
    texts = [v.answer for v in VIEWS] + [v.prompt for v in VIEWS]
    keys = bigram_sets(texts)
    owners = (keys >> np.uint64(42)).astype(np.int64)
    for i, t in enumerate(texts):
        alone = content_bigrams(t)
        assert np.array_equal(keys[owners == i] & np.uint64((1 << 42) - 1), alone), t
    assert set_sizes(keys, len(texts)).tolist() == [len(content_bigrams(t)) for t in texts]
    assert set_sizes(bigram_sets(["東京", "京都"]), 2).tolist() == [1, 1]  # 「京京」 across the boundary is not one


def test_class_counts_count_each_script():
    counts = class_counts(["ひらがなカタカナ漢字ABC12３", "", "ｘ"])
    assert counts.tolist() == [[8, 2, 3, 3, 4], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]]


def test_feature_rows_of_a_batch_equal_each_record_alone():
    batch = feature_matrix(VIEWS)
    assert batch.shape == (len(VIEWS), len(FEATURES))
    for i, v in enumerate(VIEWS):
        assert np.array_equal(batch[i], feature_matrix([v])[0]), v
    fit = fit_matrix(bigram_sets([v.prompt for v in VIEWS]), bigram_sets([v.context for v in VIEWS]),
                     bigram_sets([v.answer for v in VIEWS]), [v.prompt for v in VIEWS], [v.answer for v in VIEWS])
    assert fit.shape == (len(VIEWS), len(FIT_FEATURES))
    for i, v in enumerate(VIEWS):
        assert np.array_equal(fit[i], fit_features(v.prompt, v.context, v.answer)), v


def test_pair_rows_and_scores_of_a_batch_equal_each_record_alone():
    batch = pair_matrix(VIEWS).toarray()
    for i, v in enumerate(VIEWS):
        assert np.array_equal(batch[i], pair_matrix([v]).toarray()[0]), v
    scorer = ShippedScorer()
    together = v2_matrix(VIEWS, scorer.pair)
    alone = np.vstack([v2_matrix([v], scorer.pair) for v in VIEWS])
    assert np.array_equal(together, alone)
    scores = scorer.score_views(VIEWS)
    assert np.all((scores >= 1) & (scores <= 5))
    # the right answer to the Tokyo Tower question fits it better than the fruit list does
    swapped = RecordView(VIEWS[0].prompt, "", VIEWS[1].answer)
    assert scorer.pair.score([VIEWS[0]])[0] > scorer.pair.score([swapped])[0]


def test_a_call_longer_than_one_batch_scores_as_batches_do(monkeypatch):
    import curate.scoring.shipped_scorer as shipped

    scorer = ShippedScorer()
    whole = scorer.score_views(VIEWS * 3)
    monkeypatch.setattr(shipped, "SCORE_BATCH", 5)  # 24 views in batches of 5
    assert np.array_equal(scorer.score_views(VIEWS * 3), whole)
