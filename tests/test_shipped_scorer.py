"""The shipped-scorer machinery end to end on a tiny model: fit, save, load, score."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from curate.classifier import spearman
from curate.quality_features import RecordView, feature_matrix
from curate.shipped_scorer import NgramRidge, Ridge, ShippedScorer, save_model

ROOT = Path(__file__).resolve().parents[1]


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
    folder = save_model(tmp_path / "m", "test", "v0", ridge, ngrams)
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
