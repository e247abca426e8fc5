"""Duplicate lookups against the store for ``POST /v1/score``.

The pipeline finds duplicates in batch (datatrove writes signatures and buckets to disk, then
``DedupPlan`` clusters them); a service needs the same answer for one new record at a time.
So this index keeps, per LSH band, a sorted array of band keys over the store's records and
answers a query with ``searchsorted``: the same MinHash parameters and signature function as
the run (``curate.minhash``, built in batches of texts), and the same verification (prompt, context
and answer each at the run's ``near_dedup.min_jaccard``, ``curate.dedup.near_duplicate_similarity``),
so a record the service calls a near duplicate is one the pipeline would have dropped.
Arrays, not a dict of buckets: 200k records x 20 bands fit in ~32 MB.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from datatrove.utils.logging import logger

from curate.config import NearDedupConfig
from curate.dedup import (
    PartShingles,
    RecordParts,
    minhash_config,
    near_duplicate_similarity,
)
from curate.minhash import OnePermutationMinhashSignature, batched
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
        self._signer = OnePermutationMinhashSignature("/tmp", config=minhash_config(near), language=self.tokenizer)
        self.records: list[IndexedRecord] = []
        self.by_hash: dict[str, list[int]] = {}
        self.band_keys = np.empty((near.num_buckets, 0), dtype=np.uint64)
        self.band_order = np.empty((near.num_buckets, 0), dtype=np.int64)
        self.seconds = 0.0

    def text_band_keys(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(texts x bands) uint64 keys, each band's ``hashes_per_bucket`` MinHash values folded into
        one, and whether each text has a signature (fewer than n tokens: none), as the run signs them."""
        sig, has = self._signer.signatures(texts)
        sig = sig.reshape(len(texts), self.near.num_buckets, -1)
        with np.errstate(over="ignore"):
            keys = np.zeros(sig.shape[:2], dtype=np.uint64)
            for j in range(sig.shape[2]):
                keys = keys * _MIX + sig[:, :, j]
        return keys, has

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
        for batch in batched(rows, 1024):
            first = len(self.records)
            for row in batch:
                rec = IndexedRecord(*row)
                self.by_hash.setdefault(rec.content_hash, []).append(len(self.records))
                self.records.append(rec)
            if self.near.enabled:
                k, has = self.text_band_keys([r.text for r in self.records[first:]])
                keys.append(k[has])
                positions.append(np.arange(first, len(self.records), dtype=np.int64)[has])
            if progress_every and len(self.records) // progress_every > first // progress_every:
                logger.info(f"duplicate index: {len(self.records)} records signed ({time.perf_counter() - start:.0f} s)")
        keys = [k for k in keys if k.size]
        if keys:
            matrix = np.concatenate(keys).T  # bands x records
            order = np.argsort(matrix, axis=1, kind="stable")
            self.band_keys = np.take_along_axis(matrix, order, axis=1)
            self.band_order = np.concatenate(positions)[order]
        self.seconds = time.perf_counter() - start
        return self

    def exact(self, content_hash: str) -> list[IndexedRecord]:
        return [self.records[i] for i in self.by_hash.get(content_hash, [])]

    def near_hits(self, text: str, parts: RecordParts, content_hash: str,
                  limit: int = 10) -> list[tuple[IndexedRecord, float]]:
        """Verified near duplicates, most similar first (by their least similar part); exact copies excluded."""
        if not self.near.enabled or self.band_keys.shape[1] == 0:
            return []
        keys, has = self.text_band_keys([text])
        if not has[0]:
            return []
        candidates: set[int] = set()
        for band, key in enumerate(keys[0]):
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
