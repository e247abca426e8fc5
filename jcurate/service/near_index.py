"""Duplicate lookups against the store for ``POST /v1/score``.

The pipeline finds duplicates in batch (datatrove writes signatures and buckets to disk, then
``DedupPlan`` clusters them); a service needs the same answer for one new record at a time.
So this index keeps, per LSH band, a sorted array of band keys over the store's records and
answers a query with ``searchsorted``: the same MinHash parameters and signature function as
the run (datatrove's ``MinhashDedupSignature``), and the same verification (prompt, context
and answer each at the run's ``near_dedup.min_jaccard``, ``curate.dedup.near_duplicate_similarity``),
so a record the service calls a near duplicate is one the pipeline would have dropped.
Arrays, not a dict of buckets: 200k records x 20 bands fit in ~32 MB.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from datatrove.pipeline.dedup.minhash import MinhashDedupSignature
from datatrove.utils.logging import logger

from curate.config import NearDedupConfig
from curate.dedup import (
    PartShingles,
    RecordParts,
    minhash_config,
    minhash_values,
    near_duplicate_similarity,
    shingle_hashes,
)
from curate.tokenizers import make_tokenizer

# odd 64-bit multiplier folding a band's hashes into one key (wraps modulo 2**64)
_MIX = np.uint64(0x9E3779B97F4A7C15)


@dataclass
class IndexedRecord:
    record_id: str
    source_id: str
    text: str
    content_hash: str
    kept: bool | None
    dropped_at: str | None
    instruction: str | None = None
    input: str | None = None
    output: str | None = None
    messages: str | None = None  # JSON


class DuplicateIndex:
    def __init__(self, near: NearDedupConfig, cache_size: int = 50_000):
        self.near = near
        self.cache_size = cache_size
        self._cache: dict[int, PartShingles] = {}
        self.tokenizer = make_tokenizer(near.tokens)
        self._signer = MinhashDedupSignature("/tmp", config=minhash_config(near), language=self.tokenizer)
        self.records: list[IndexedRecord] = []
        self.by_hash: dict[str, list[int]] = {}
        self.band_keys = np.empty((near.num_buckets, 0), dtype=np.uint64)
        self.band_order = np.empty((near.num_buckets, 0), dtype=np.int64)
        self.seconds = 0.0

    def band_keys_of(self, shingles: np.ndarray) -> np.ndarray | None:
        """One uint64 per band: the band's ``hashes_per_bucket`` MinHash values folded; None without n-grams.

        The signature is datatrove's (``MinhashDedupSignature.parameters``, same hash and n-grams);
        ``shingles`` are ``shingle_hashes`` of the text, whose unique values give the same minima.
        """
        if shingles.size == 0:
            return None
        sig = minhash_values(shingles.reshape(-1, 1), *self._signer.parameters).reshape(self.near.num_buckets, -1)
        with np.errstate(over="ignore"):
            keys = np.zeros(self.near.num_buckets, dtype=np.uint64)
            for j in range(sig.shape[1]):
                keys = keys * _MIX + sig[:, j]
        return keys

    def shingles(self, text: str) -> np.ndarray:
        return shingle_hashes(text, self.tokenizer, self.near.n_grams)

    def part_shingles(self, parts: RecordParts) -> PartShingles:
        return PartShingles.of(parts, self.tokenizer, self.near.n_grams)

    def _stored_shingles(self, i: int) -> PartShingles:
        """Part shingles of indexed record i, kept in a bounded cache (recomputing costs ~1 ms a record)."""
        cached = self._cache.get(i)
        if cached is None:
            r = self.records[i]
            cached = self.part_shingles(RecordParts.of(r.instruction, r.input, r.output, r.messages))
            if len(self._cache) >= self.cache_size:
                self._cache.pop(next(iter(self._cache)))
            self._cache[i] = cached
        return cached

    def build(self, rows, progress_every: int = 20_000) -> DuplicateIndex:
        """rows: (record_id, source_id, text, content_hash, kept, dropped_at, instruction, input, output, messages)."""
        start = time.perf_counter()
        keys, positions = [], []
        for row in rows:
            i = len(self.records)
            rec = IndexedRecord(*row)
            self.records.append(rec)
            self.by_hash.setdefault(rec.content_hash, []).append(i)
            k = self.band_keys_of(self.shingles(rec.text)) if self.near.enabled else None
            if k is not None:
                keys.append(k)
                positions.append(i)
            if progress_every and (i + 1) % progress_every == 0:
                logger.info(f"duplicate index: {i + 1} records signed ({time.perf_counter() - start:.0f} s)")
        if keys:
            matrix = np.stack(keys, axis=1)  # bands x records
            order = np.argsort(matrix, axis=1, kind="stable")
            self.band_keys = np.take_along_axis(matrix, order, axis=1)
            self.band_order = np.asarray(positions, dtype=np.int64)[order]
        self.seconds = time.perf_counter() - start
        return self

    def exact(self, content_hash: str) -> list[IndexedRecord]:
        return [self.records[i] for i in self.by_hash.get(content_hash, [])]

    def near_hits(self, text: str, parts: RecordParts, content_hash: str,
                  limit: int = 10) -> list[tuple[IndexedRecord, float]]:
        """Verified near duplicates, most similar first (by their least similar part); exact copies excluded."""
        if not self.near.enabled or self.band_keys.shape[1] == 0:
            return []
        mine = self.shingles(text)
        keys = self.band_keys_of(mine)
        if keys is None:
            return []
        candidates: set[int] = set()
        for band, key in enumerate(keys):
            row = self.band_keys[band]
            lo, hi = np.searchsorted(row, key, "left"), np.searchsorted(row, key, "right")
            candidates.update(self.band_order[band, lo:hi].tolist())
        hits = []
        my_parts = self.part_shingles(parts)
        for i in candidates:
            rec = self.records[i]
            if rec.content_hash == content_hash:
                continue
            similarity = near_duplicate_similarity(my_parts, self._stored_shingles(i), self.near.min_jaccard,
                                                   self.near.same_prompt_different_answer)
            if similarity is not None:
                hits.append((rec, round(similarity, 4)))
        hits.sort(key=lambda h: (-h[1], h[0].record_id))
        return hits[:limit]
