"""A candidate for the scorer that ships with jcurate (none ships yet): scores a record 1–5 on a CPU,
with no labels, no judge and no network.

A ridge regression over cheap features (``curate.quality_features``) and the prediction of a
ridge on hashed character n-grams of prompt and answer (numpy and scipy only: no tokenizer;
fastText on characters was tried and diverged to NaN on some folds), trained on records of
public datasets labelled by reading (``data/labels/``), with features and labels centred per
dataset. ``benchmarks/scorer_selection.py`` compares it with the other candidates by
leave-one-dataset-out agreement and can write a model folder that ``ShippedScorer`` loads; none
has reached the agreement the shipped scorer needs, so ``jcurate run`` does not use this yet.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from curate.char_ngrams import char_codes, coefficients, window_hashes
from curate.quality_features import FEATURES, RecordView, feature_matrix

MODELS = Path(__file__).with_name("models")


DIM = 1 << 16  # hashed character n-gram space
_NGRAM_COEFFS = coefficients(11, size=3)


def _ngram_ids(text: str, salt: int, limit: int = 1000) -> np.ndarray:
    """Hashed ids of the character 1-, 2- and 3-grams of ``text`` (first ``limit`` characters)."""
    chars = "".join(text.split())[:limit]
    if not chars:
        return np.zeros(0, dtype=np.int64)
    codes = char_codes(chars)
    ids = []
    with np.errstate(over="ignore"):
        for n in (1, 2, 3):
            if codes.size < n:
                break
            h = window_hashes(codes, n, _NGRAM_COEFFS) + np.uint64((salt * 0x9E3779B97F4A7C15 + n) % 2**64)
            ids.append((h % np.uint64(DIM)).astype(np.int64))
    return np.concatenate(ids)


def ngram_matrix(views: list[RecordView]):
    """Sparse rows of log-scaled, L2-normalised hashed n-gram counts: prompt and answer apart."""
    from scipy import sparse

    rows, cols, vals = [], [], []
    for i, v in enumerate(views):
        ids = np.concatenate([_ngram_ids(v.prompt, 1), _ngram_ids(v.answer, 2)])
        if ids.size == 0:
            continue
        u, counts = np.unique(ids, return_counts=True)
        w = np.log1p(counts)
        w /= np.linalg.norm(w)
        rows.append(np.full(u.size, i))
        cols.append(u)
        vals.append(w)
    if not rows:
        return sparse.csr_matrix((len(views), DIM))
    return sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                             shape=(len(views), DIM))


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


def save_model(folder: Path, name: str, version: str, ridge: Ridge, ngrams: NgramRidge, **meta) -> Path:
    """Writes ``ridge.json`` and ``ngram_weights.npy``: what ``ShippedScorer`` loads."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "ngram_weights.npy", ngrams.weights)
    (folder / "ridge.json").write_text(json.dumps({
        "name": name, "version": version, "features": list(FEATURES) + ["ngram_ridge"], "ridge": ridge.to_dict(),
        "ngram_intercept": ngrams.intercept, **meta}, indent=1), encoding="utf-8")
    return folder


class ShippedScorer:
    """Loads ``curate/models/<name>/`` or ``folder`` (``ridge.json`` + ``ngram_weights.npy``) and scores records."""

    def __init__(self, name: str | None = None, folder: Path | None = None):
        if not (name or folder):
            raise ValueError("name a model folder in curate/models/ or pass folder=")
        self.folder = Path(folder) if folder else MODELS / name
        meta = json.loads((self.folder / "ridge.json").read_text(encoding="utf-8"))
        if meta["features"] != list(FEATURES) + ["ngram_ridge"]:
            raise ValueError(f"{self.folder}: the model's features differ from this code's (retrain it)")
        self.name, self.version = meta["name"], meta["version"]
        self.ridge = Ridge.from_dict(meta["ridge"])
        self.ngrams = NgramRidge(np.load(self.folder / "ngram_weights.npy"), float(meta["ngram_intercept"]))

    @property
    def model_id(self) -> str:
        return f"{self.name}@{self.version}"

    def score_views(self, views: list[RecordView]) -> np.ndarray:
        if not views:
            return np.zeros(0)
        X = np.column_stack([feature_matrix(views), self.ngrams.predict(views)])
        return self.ridge.predict(X)

    def score(self, records: list[dict]) -> np.ndarray:
        """Records with instruction/input/output or messages (a list or its JSON)."""
        views = []
        for r in records:
            messages = r.get("messages")
            if isinstance(messages, str):
                messages = json.loads(messages) if messages else None
            views.append(RecordView.of(r.get("instruction"), r.get("input"), r.get("output"), messages))
        return self.score_views(views)

