"""The quality classifier: fastText on fugashi + unidic-lite tokens, trained on labels 1-5.

Labels come from the store's ``scores`` table: the LLM judge's (scorer ``judge``) or the
labels a source ships (scorer ``label``). A held-out split measures agreement (accuracy,
macro-F1, Spearman's rho) against those labels, next to a majority-class baseline. The
score of a record is the expected label under the classifier's probabilities, in [1, 5].
"""

from __future__ import annotations

import hashlib
import json
import random
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from core.errors import JcurateError
from curate.scoring.kept_scores import store_kept_scores
from curate.text.tokenizers import FugashiTokenizer
from store.connection import connect
from store.ids import new_id
from store.rows import insert_row
from store.runs import resolve_run

LABELS = (1, 2, 3, 4, 5)
SCORER = "classifier"


@dataclass
class ClassifierParams:
    epoch: int = 30
    lr: float = 0.3
    word_ngrams: int = 2
    dim: int = 50
    bucket: int = 200_000  # fastText's default (2M) writes a 400 MB model
    min_count: int = 1
    test_fraction: float = 0.2
    seed: int = 0


def tokenize(tokenizer: FugashiTokenizer, text: str) -> str:
    return " ".join(tokenizer.word_tokenize(text.replace("\n", " ")))


def spearman(a, b) -> float:
    """Spearman's rho with average ranks for ties."""
    def ranks(x):
        x = np.asarray(x, dtype=float)
        order = x.argsort(kind="stable")
        r = np.empty(len(x))
        r[order] = np.arange(len(x))
        for v in np.unique(x):  # average the ranks of ties
            r[x == v] = r[x == v].mean()
        return r
    ra, rb = ranks(a), ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return 0.0
    return float(np.corrcoef(ra, rb)[0, 1])


def macro_f1(true, pred) -> float:
    f1s = []
    for label in sorted(set(true) | set(pred)):
        tp = sum(t == p == label for t, p in zip(true, pred))
        fp = sum(p == label and t != label for t, p in zip(true, pred))
        fn = sum(t == label and p != label for t, p in zip(true, pred))
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return float(np.mean(f1s)) if f1s else 0.0


class QualityClassifier:
    def __init__(self, model_path: str | Path):
        import fasttext

        self.path = str(model_path)
        self.model = fasttext.load_model(self.path)
        self.tokenizer = FugashiTokenizer()

    def score(self, texts: list[str]) -> np.ndarray:
        """Expected label in [1, 5] per text."""
        lines = [tokenize(self.tokenizer, t) for t in texts]
        labels, probs = self.model.predict(lines, k=len(LABELS))
        out = np.empty(len(lines))
        for i, (ls, ps) in enumerate(zip(labels, probs)):
            values = np.array([float(label.removeprefix("__label__")) for label in ls])
            ps = np.asarray(ps, dtype=float)
            out[i] = float((values * ps).sum() / ps.sum())
        return out


def _labelled(con, label_scorer: str) -> list[tuple[str, str, float]]:
    """(record_id, text, label) for records with a label; kept and dropped alike, one per content hash."""
    # duplicates and eval-contaminated records are left out: a near-copy on both sides of the
    # held-out split would flatter the agreement figures
    rows = con.execute(
        """SELECT r.record_id, r.text, arg_max(s.score, s.created_at) AS label
           FROM scores s JOIN records r USING (record_id)
           WHERE s.scorer = ? AND s.score IS NOT NULL AND r.text IS NOT NULL
             AND r.record_id NOT IN (SELECT record_id FROM record_fate
                                     WHERE run_id = r.last_run_id
                                       AND dropped_at IN ('exact_dedup', 'near_dedup', 'decontamination'))
           GROUP BY r.record_id, r.text, r.content_hash
           QUALIFY row_number() OVER (PARTITION BY r.content_hash ORDER BY r.record_id) = 1
           ORDER BY r.record_id""", [label_scorer]).fetchall()
    return [(rid, text, float(label)) for rid, text, label in rows]


MIN_LABELS = 30  # below this the held-out split is too small to say anything


def train_classifier(db: str | Path, model_dir: str | Path, label_scorer: str = "label",
                     params: ClassifierParams | None = None, min_labels: int = MIN_LABELS, log=print) -> dict:
    """Trains a fastText classifier on the store's ``label_scorer`` scores; needs ``min_labels`` of them."""
    import fasttext

    params = params or ClassifierParams()
    con = connect(db)
    try:
        data = _labelled(con, label_scorer)
        if len(data) < max(min_labels, MIN_LABELS):
            held = "" if data else " (the store holds scores of: " + (", ".join(
                r[0] for r in con.execute("SELECT DISTINCT scorer FROM scores ORDER BY 1").fetchall()) or "none") + ")"
            key = " (scoring.min_labels of the run config)" if min_labels > MIN_LABELS else ""
            raise JcurateError(f"only {len(data)} records carry '{label_scorer}' scores{held}; the classifier needs at "
                               f"least {max(min_labels, MIN_LABELS)}{key}: run `jcurate judge --sample N`, or name a "
                               f"label_field in the manifest")
        rng = random.Random(params.seed)
        order = list(range(len(data)))
        rng.shuffle(order)
        n_test = max(1, int(len(data) * params.test_fraction))
        test_idx, train_idx = order[:n_test], order[n_test:]
        tok = FugashiTokenizer()
        lines = [f"__label__{int(round(label))} {tokenize(tok, text)}" for _, text, label in data]
        train_text = "\n".join(lines[i] for i in train_idx) + "\n"
        data_hash = hashlib.sha256(train_text.encode()).hexdigest()[:16]
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, encoding="utf-8") as f:
            f.write(train_text)
        start = time.perf_counter()
        model = fasttext.train_supervised(
            f.name, epoch=params.epoch, lr=params.lr, wordNgrams=params.word_ngrams, dim=params.dim,
            bucket=params.bucket, minCount=params.min_count, seed=params.seed, thread=1, verbose=0)
        train_secs = time.perf_counter() - start
        Path(f.name).unlink()
        model_id = new_id("clf")
        model_dir = Path(model_dir)
        model_dir.mkdir(parents=True, exist_ok=True)
        path = model_dir / f"{model_id}.bin"
        model.save_model(str(path))

        clf = QualityClassifier(path)
        test_texts = [data[i][1] for i in test_idx]
        truth = [int(round(data[i][2])) for i in test_idx]
        expected = clf.score(test_texts)
        pred = [int(lab[0].removeprefix("__label__")) for lab in
                clf.model.predict([tokenize(tok, t) for t in test_texts], k=1)[0]]
        majority = max(LABELS, key=[int(round(data[i][2])) for i in train_idx].count)
        metrics = {
            "n_train": len(train_idx), "n_test": n_test,
            "accuracy": round(sum(p == t for p, t in zip(pred, truth)) / n_test, 4),
            "macro_f1": round(macro_f1(truth, pred), 4),
            "spearman": round(spearman(expected, truth), 4),
            "majority_label": majority,
            "majority_accuracy": round(sum(t == majority for t in truth) / n_test, 4),
            "majority_macro_f1": round(macro_f1(truth, [majority] * n_test), 4),
            "train_seconds": round(train_secs, 3),
        }
        insert_row(con, "classifier_models", dict(
            model_id=model_id, path=str(path), trained_at=datetime.now(timezone.utc), label_scorer=label_scorer,
            train_data_hash=data_hash, metrics=json.dumps(metrics), params=json.dumps(asdict(params))))
        log(f"classifier {model_id}: trained on {len(train_idx)} '{label_scorer}' labels, held out {n_test}: "
            f"accuracy {metrics['accuracy']:.3f} (majority {metrics['majority_accuracy']:.3f}), "
            f"macro-F1 {metrics['macro_f1']:.3f} (majority {metrics['majority_macro_f1']:.3f}), "
            f"Spearman {metrics['spearman']:.3f}")
        return {"model_id": model_id, "path": str(path), "data_hash": data_hash, **metrics}
    finally:
        con.close()


def find_classifier(con, model_id: str | None = None) -> tuple[str, str] | None:
    """(model_id, model file path) of the named classifier, or of the latest one; None if there is none."""
    return con.execute(
        "SELECT model_id, path FROM classifier_models WHERE ? IS NULL OR model_id = ? ORDER BY trained_at DESC LIMIT 1",
        [model_id, model_id]).fetchone()


def score_run(db: str | Path, model_id: str | None = None, run_id: str | None = None, batch: int = 5000,
              log=print) -> int:
    """Scores every kept record of a run (default: the latest) with a classifier (default: the latest)."""
    con = connect(db)
    try:
        row = find_classifier(con, model_id)
        if not row:
            raise JcurateError("no classifier in the store: run `jcurate classifier train` first")
        model_id, path = row
        if not Path(path).is_file():
            raise JcurateError(f"classifier {model_id}: model file {path} is missing")
        run_id = resolve_run(con, run_id)
        clf = QualityClassifier(path)
        n, secs = store_kept_scores(con, run_id, SCORER, model_id, lambda chunk: clf.score([r.text for r in chunk]),
                                    batch=batch)
        log(f"classifier {model_id} scored {n} kept records of {run_id} "
            f"({n / max(secs, 1e-9):.0f} records/s, tokenisation included)")
        return n
    finally:
        con.close()
