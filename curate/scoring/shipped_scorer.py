"""The scorer that ships with jcurate: scores a record 1–5 on a CPU, with no labels, no judge
and no network, so ``jcurate run`` gives every kept record a score (scorer ``shipped``).

The shipped model (``curate/scoring/models/jquality-v1/``, see its README.md model card) is a kernel
ridge regression on hashed character 1–3-grams of prompt and answer (numpy and scipy only: no
tokenizer; fastText on characters was tried and diverged to NaN on some folds), trained on
records of public datasets labelled by reading (``data/labels/``), with labels centred per
dataset. A model folder may also stack a ridge over the cheap features of
``curate.scoring.quality_features`` on top of the n-gram prediction. ``benchmarks/quality/scorer_selection.py``
chose it by leave-one-dataset-out agreement and writes the model folder; its agreement is weak
(see the model card): a store's own labels or judge labels make a better scorer
(``jcurate classifier train``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from datatrove.pipeline.base import PipelineStep
from datatrove.utils.batching import batched

from core.errors import JcurateError, first_line
from curate.scoring.assoc_fit import AssocFit, PairWithAssoc
from curate.scoring.fit_features import FIT_FEATURES, bigram_sets, fit_matrix
from curate.scoring.pair_fit import PairFit, pair_prompt_sets
from curate.scoring.quality_features import FEATURES, RecordView, feature_matrix
from curate.text.char_ngrams import coefficients, text_windows

MODELS = Path(__file__).with_name("models")
DEFAULT_MODEL = "jquality-v5"
# jquality-v2 and v3: the quality features, the prompt-answer fit features and the pair model's logit, one
# ridge across datasets; v3 is v2 with the length bonus gated by the pair model (``v2_raw``)
V2_FEATURES = FEATURES + FIT_FEATURES + ("pair_fit_logit",)
PAIR_WEIGHTS = "pair_weights.npy"
# the pair logit counts from -FIT_FLOOR (surely another question's answer) to +FIT_CAP (surely this one's):
# fit is a gate, not a reward: past "it fits", sharing more words with the prompt is copying, not quality
FIT_FLOOR, FIT_CAP = 6.0, 1.0
SCORER = "shipped"  # the `scores.scorer` of its scores; `scores.model` is "<name>@<version>"
SCORE_BATCH = 4096  # records whose features are computed together: the memory is a batch's, not the call's


DIM = 1 << 16  # hashed character n-gram space
_NGRAM_COEFFS = coefficients(11, size=3)


def _ngram_keys(texts: list[str], salt: int, limit: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """Hashed ids (in ``DIM``) of the character 1-, 2- and 3-grams of each text (its first ``limit``
    non-space characters), all texts hashed together: (text index, id) arrays."""
    chars = ["".join(t.split())[:limit] for t in texts]
    owners, ids = [], []
    with np.errstate(over="ignore"):
        for n in (1, 2, 3):
            h, counts = text_windows(chars, n, _NGRAM_COEFFS)
            h += np.uint64((salt * 0x9E3779B97F4A7C15 + n) % 2**64)
            owners.append(np.repeat(np.arange(len(chars), dtype=np.int64), counts))
            ids.append((h % np.uint64(DIM)).astype(np.int64))
    return np.concatenate(owners), np.concatenate(ids)


def ngram_matrix(views: list[RecordView]):
    """Sparse rows of log-scaled, L2-normalised hashed n-gram counts: prompt and answer apart.
    One pass over all the views (per-record numpy calls were most of the scorer's time)."""
    from scipy import sparse

    rows_p, ids_p = _ngram_keys([v.prompt for v in views], 1)
    rows_a, ids_a = _ngram_keys([v.answer for v in views], 2)
    keys, counts = np.unique(np.concatenate([rows_p, rows_a]) * DIM + np.concatenate([ids_p, ids_a]),
                             return_counts=True)
    rows, cols = keys // DIM, keys % DIM
    weights = np.log1p(counts)
    norms = np.sqrt(np.bincount(rows, weights=weights * weights, minlength=len(views)))
    weights /= norms[rows]
    return sparse.csr_matrix((weights, (rows, cols)), shape=(len(views), DIM))


@dataclass
class NgramRidge:
    """Kernel (dual) ridge regression on hashed character n-grams: the weights are one dense vector."""

    weights: np.ndarray
    intercept: float

    @classmethod
    def fit(cls, views: list[RecordView], y: np.ndarray, alpha: float = 1.0, groups=None) -> NgramRidge:
        X = ngram_matrix(views)
        K = (X @ X.T).toarray()
        t = within_groups(y, groups) if groups is not None else y - y.mean()
        dual = np.linalg.solve(K + alpha * np.eye(K.shape[0]), t)
        return cls(np.asarray(X.T @ dual).ravel().astype(np.float32), float(y.mean()))

    def predict(self, views: list[RecordView]) -> np.ndarray:
        return ngram_matrix(views) @ self.weights + self.intercept


def within_groups(values: np.ndarray, groups) -> np.ndarray:
    """``values`` (rows) minus the mean of their group."""
    groups = np.asarray(groups)
    out = values.astype(np.float64).copy()
    for g in np.unique(groups):
        rows = groups == g
        out[rows] -= values[rows].mean(axis=0)
    return out


@dataclass
class Ridge:
    """Standardised ridge regression, closed form: small enough to ship as JSON."""

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float

    @classmethod
    def fit(cls, X: np.ndarray, y: np.ndarray, alpha: float = 1.0, groups=None) -> Ridge:
        """With ``groups`` (the dataset of each row), features and labels are centred per dataset
        first: the model learns what makes a record better than others of its dataset, not which
        dataset it comes from (datasets differ in length, form and average label together)."""
        mean, scale = X.mean(axis=0), X.std(axis=0)
        scale[scale == 0] = 1.0
        Z = (X - mean) / scale
        t = y - y.mean()
        if groups is not None:
            Z, t = within_groups(Z, groups), within_groups(y, groups)
        coef = np.linalg.solve(Z.T @ Z + alpha * np.eye(Z.shape[1]), Z.T @ t)
        return cls(mean, scale, coef, float(y.mean()))

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.clip(((X - self.mean) / self.scale) @ self.coef + self.intercept, 1.0, 5.0)

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "scale": self.scale.tolist(), "coef": self.coef.tolist(),
                "intercept": self.intercept}

    @classmethod
    def from_dict(cls, d: dict) -> Ridge:
        return cls(np.array(d["mean"]), np.array(d["scale"]), np.array(d["coef"]), float(d["intercept"]))


def save_model(folder: Path, name: str, version: str, ngrams: NgramRidge, ridge: Ridge | None = None,
               **meta) -> Path:
    """Writes ``model.json`` and ``ngram_weights.npy``: what ``ShippedScorer`` loads. With ``ridge``,
    the score is the feature ridge over the cheap features plus the n-gram prediction; without, the
    n-gram prediction itself."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "ngram_weights.npy", ngrams.weights)
    stacked = {"features": list(FEATURES) + ["ngram_ridge"], "ridge": ridge.to_dict()} if ridge else {}
    (folder / "model.json").write_text(json.dumps({
        "name": name, "version": version, "kind": "features+char-ngrams" if ridge else "char-ngrams",
        "ngram_intercept": ngrams.intercept, **stacked, **meta}, indent=1), encoding="utf-8")
    return folder


# jquality-v2 reads the last PROMPT_CHARS of the prompt side (a conversation's turns before the answer: what
# the answer replies to is at their end) and the first PROMPT_CHARS of the context; the answer whole
PROMPT_CHARS = 1000


def v2_matrix(views: list[RecordView], pair: PairFit, overlap: bool = False) -> np.ndarray:
    """The rows jquality-v2 reads: ``FEATURES``, ``FIT_FEATURES`` and the pair model's logit of each record.
    The n-gram overlap features stay 0 (``overlap=False``): the model gives them no weight."""
    if not views:
        return np.zeros((0, len(V2_FEATURES)))
    views = [v if len(v.prompt) <= PROMPT_CHARS and len(v.context) <= PROMPT_CHARS else
             RecordView(v.prompt[-PROMPT_CHARS:], v.context[:PROMPT_CHARS], v.answer, v.multi_turn) for v in views]
    prompts, answer_texts = [v.prompt for v in views], [v.answer for v in views]
    answers = bigram_sets(answer_texts)  # each text's content bigrams once, for the whole batch
    prompt_sets, contexts = bigram_sets(prompts), bigram_sets([v.context for v in views])
    fit = fit_matrix(prompt_sets, contexts, answers, prompts, answer_texts)
    # the pair model reads the prompt with its context as one text: without contexts, the prompts' own sets
    pair_prompts = pair_prompt_sets(views) if any(v.context for v in views) else prompt_sets
    return np.column_stack([feature_matrix(views, overlap=overlap), fit, pair.score(views, (pair_prompts, answers))])


def save_v2_model(folder: Path, name: str, version: str, ridge: Ridge, pair: PairFit | PairWithAssoc,
                  length_weight: float, length_center: float, fit_weight: float, **meta) -> Path:
    """``model.json`` (the ridge over ``V2_FEATURES``, the length term) and ``pair_weights.npy`` of a
    jquality-v2 model (v5: and the association's tables, its weights in ``model.json``)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    pair.save(folder / PAIR_WEIGHTS)
    if isinstance(pair, PairWithAssoc):
        meta = {**meta, "assoc": pair.to_dict()}
    (folder / "model.json").write_text(json.dumps({
        "name": name, "version": version, "kind": "features+fit", "features": list(V2_FEATURES),
        "ridge": ridge.to_dict(), "length_weight": length_weight, "length_center": length_center,
        "fit_weight": fit_weight, **meta},
        indent=1), encoding="utf-8")
    return folder


def fit_gate(fit_logit: np.ndarray, length_gate: float) -> np.ndarray:
    """How far the length bonus is paid (0 … 1): ``sigmoid(2 (fit - length_gate))``, half at ``length_gate``."""
    return 1.0 / (1.0 + np.exp(-2.0 * (fit_logit - float(length_gate))))


def v2_raw(quality: np.ndarray, X: np.ndarray, fit_weight: float, length_weight: float, length_center: float,
           length_gate: float | None = None, length_bonus_weight: float | None = None) -> np.ndarray:
    """The v2 score before the squash: the predicted label, plus ``fit_weight`` times the pair logit clipped to
    [-``FIT_FLOOR``, ``FIT_CAP``], plus ``length_weight`` per unit of log answer length from ``length_center``.
    With ``length_gate`` (a pair logit), the length *bonus* of an answer longer than the centre is scaled by
    ``sigmoid(2 (fit - length_gate))``: length pays only when the answer belongs to its prompt, so a long answer
    to another question gains nothing from its length. A short answer's penalty is never gated.
    ``length_bonus_weight`` (jquality-v4): the bonus's own weight per unit of log length, the penalty keeping
    ``length_weight``: a heavier penalty would sink short right answers below long answers to other questions."""
    fit_logit = X[:, V2_FEATURES.index("pair_fit_logit")]
    length = X[:, FEATURES.index("log_answer_chars")] - length_center
    bonus_weight = length_weight if length_bonus_weight is None else float(length_bonus_weight)
    bonus = np.maximum(length, 0.0)
    if length_gate is not None:
        bonus = fit_gate(fit_logit, length_gate) * bonus
    return (quality + fit_weight * np.clip(fit_logit, -FIT_FLOOR, FIT_CAP) + bonus_weight * bonus
            + length_weight * np.minimum(length, 0.0))


def model_folder(name: str) -> Path:
    """A shipped model's folder: ``curate/scoring/models/<name>``, or ``name`` itself when it is a path."""
    return Path(name) if ("/" in name or "\\" in name) else MODELS / name


class ShippedScorer:
    """Loads ``curate/scoring/models/<name>/`` (default: the shipped model) or ``folder`` and scores records."""

    def __init__(self, name: str = DEFAULT_MODEL, folder: Path | None = None):
        self.folder = Path(folder) if folder else model_folder(name)
        try:
            meta = json.loads((self.folder / "model.json").read_text(encoding="utf-8"))
            v2 = meta.get("kind") == "features+fit"
            weights = None if v2 else np.load(self.folder / "ngram_weights.npy")
            self.pair = PairFit.load(self.folder / PAIR_WEIGHTS) if v2 else None
            if v2 and meta.get("assoc"):  # jquality-v5: the pair logit and the learned association, one logit
                a = meta["assoc"]
                self.pair = PairWithAssoc.from_dict(self.pair, AssocFit.load(self.folder / a["file"]), a)
        except (OSError, ValueError, KeyError) as e:  # KeyError: a model.json or tables file without a field
            raise JcurateError(f"shipped scorer: cannot load {self.folder}: {first_line(e, 200)}") from None
        self.name, self.version = meta["name"], meta["version"]
        self.ridge = None
        self.v2 = meta.get("kind") == "features+fit"
        if self.v2:
            if meta["features"] != list(V2_FEATURES):
                raise JcurateError(f"{self.folder}: the model's features differ from this code's (retrain it)")
            self.ridge = Ridge.from_dict(meta["ridge"])
            self.length_weight, self.length_center = float(meta["length_weight"]), float(meta["length_center"])
            self.fit_weight = float(meta["fit_weight"])
            self.length_gate = meta.get("length_gate")  # absent in jquality-v2: the length term is not gated
            self.length_bonus_weight = meta.get("length_bonus_weight")  # v4: the bonus weighs apart from the penalty
            return
        if "ridge" in meta:
            if meta["features"] != list(FEATURES) + ["ngram_ridge"]:
                raise JcurateError(f"{self.folder}: the model's features differ from this code's (retrain it)")
            self.ridge = Ridge.from_dict(meta["ridge"])
        self.ngrams = NgramRidge(weights, float(meta["ngram_intercept"]))

    @property
    def model_id(self) -> str:
        return f"{self.name}@{self.version}"

    def score_views(self, views: list[RecordView]) -> np.ndarray:
        if not views:
            return np.zeros(0)
        if self.v2:  # a batch's features are built together (numpy arrays of all its texts): bounded batches
            return np.concatenate([self.v2_score(v2_matrix(views[i:i + SCORE_BATCH], self.pair))
                                   for i in range(0, len(views), SCORE_BATCH)])
        ngram = self.ngrams.predict(views)
        if self.ridge is None:
            return np.clip(ngram, 1.0, 5.0)
        return self.ridge.predict(np.column_stack([feature_matrix(views), ngram]))

    def v2_score(self, X: np.ndarray) -> np.ndarray:
        """jquality-v2 and v3: the predicted label (1–5), plus ``fit_weight`` times the pair model's logit
        (clipped to [-``FIT_FLOOR``, ``FIT_CAP``]: an answer to another question sinks, copying the prompt
        gains nothing), plus ``length_weight`` per unit of log answer length away from ``length_center``
        (among answers a reader would rate alike, the longer one trains the better model:
        ``benchmarks/selection``), in v3 paid only as far as the answer fits its prompt (``v2_raw``); mapped
        onto 1–5 by a logistic curve centred on 3, which keeps the order (top-k) and the scale of the labels
        (a record a reader would rate 3 scores about 3)."""
        raw = v2_raw(self.ridge.predict(X), X, self.fit_weight, self.length_weight, self.length_center,
                     self.length_gate, self.length_bonus_weight)
        return 1.0 + 4.0 / (1.0 + np.exp(-(raw - 3.0) / 1.5))

    def score(self, records: list[dict]) -> np.ndarray:
        """Records with instruction/input/output or messages (a list or its JSON)."""
        views = []
        for r in records:
            messages = r.get("messages")
            if isinstance(messages, str):
                messages = json.loads(messages) if messages else None
            views.append(RecordView.of(r.get("instruction"), r.get("input"), r.get("output"), messages))
        return self.score_views(views)


    def score_kept(self, records) -> np.ndarray:
        """``curate.scoring.kept_scores.KeptRecord`` rows (what ``store_kept_scores`` hands over)."""
        return self.score_views([RecordView.of(r.instruction, r.input, r.output, r.messages) for r in records])


def score_run(db: str | Path, run_id: str | None = None, scorer: ShippedScorer | None = None, log=print) -> dict:
    """Scores every kept record of a run (default: the latest) with the shipped scorer."""
    from curate.scoring.kept_scores import store_kept_scores
    from store.connection import connect
    from store.runs import resolve_run

    scorer = scorer or ShippedScorer()
    con = connect(db)
    try:
        run_id = resolve_run(con, run_id)
        n, secs = store_kept_scores(con, run_id, SCORER, scorer.model_id, scorer.score_kept)
    finally:
        con.close()
    log(f"shipped scorer {scorer.model_id} scored {n} kept records of {run_id} ({n / max(secs, 1e-9):.0f} records/s)")
    return {"scorer": SCORER, "model": scorer.model_id, "scored": n}


class ShippedScoreStep(PipelineStep):
    """The dedup-decont stage's scorer: every kept record's shipped score, computed in the workers and
    written with the record (``shipped_score``, ``shipped_model`` columns of ``OUT/kept``);
    ``curate.handover.ingest`` stores them as scores of scorer ``shipped``. Scoring after the store was filled
    was a second pass in the main process, on one core, and a second DuckDB commit."""

    name = "⭐ shipped scorer"
    type = "📊 - SCORE"
    batch_size = 1024

    def __init__(self, name: str = DEFAULT_MODEL, folder: Path | None = None):
        super().__init__()
        self.model_name, self.folder = name, folder

    def run(self, data, rank: int = 0, world_size: int = 1):
        scorer = ShippedScorer(self.model_name, self.folder)
        for docs in batched(data, self.batch_size):
            with self.track_time("batch"):
                for doc, score in zip(docs, scorer.score([d.metadata for d in docs]).tolist()):
                    doc.metadata["shipped_score"] = score
                    doc.metadata["shipped_model"] = scorer.model_id
            self.stat_update("scored", value=len(docs))
            yield from docs
