"""Duplicate lookups against the store for ``POST /v1/score``.

The pipeline finds duplicates in batch (datatrove writes signatures and buckets to disk, then
``DedupPlan`` clusters them); a service needs the same answer for one new record at a time.
So this index keeps one sorted array of (band, band key) over the store's records and answers a
query with two ``searchsorted`` calls for all its bands: the same MinHash parameters and signature function as
the run (``curate.dedup.minhash``, built in batches of texts), and the same verification (prompt, context
and answer each at the run's ``near_dedup.min_jaccard``, ``curate.dedup.near_duplicates.near_duplicate_similarity``),
so a record the service calls a near duplicate is one the pipeline would have dropped.
Arrays, not a dict of buckets: 200k records x 20 bands fit in ~64 MB. A band key keeps 58 of its
64 bits (the band number takes the top 6): two different keys may then collide, which only adds
a candidate that the verification rejects.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from datatrove.utils.batching import batched
from datatrove.utils.logging import logger

from curate.config import NearDedupConfig
from curate.dedup.minhash import OnePermutationMinhashSignature
from curate.dedup.near_duplicates import (
    PartShingles,
    RecordParts,
    char_shingle_batch,
    minhash_config,
    near_duplicate_similarity,
)
from curate.text.tokenizers import CharTokenizer, make_tokenizer

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
        self.lookup = np.empty(0, dtype=np.uint64)  # sorted (band << 58 | key >> 6)
        self.lookup_records = np.empty(0, dtype=np.int64)  # the record of each lookup entry
        self.seconds = 0.0

    def text_band_keys(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(texts x bands) lookup keys: each band's ``hashes_per_bucket`` MinHash values folded into 58
        bits under the band's number, and whether each text has a signature (fewer than n tokens:
        none), signed as the run signs them."""
        sig, has = self._signer.signatures(texts)
        sig = sig.reshape(len(texts), self.near.num_buckets, -1)
        with np.errstate(over="ignore"):
            keys = np.zeros(sig.shape[:2], dtype=np.uint64)
            for j in range(sig.shape[2]):
                keys = keys * _MIX + sig[:, :, j]
        bands = np.arange(self.near.num_buckets, dtype=np.uint64) << np.uint64(58)
        return bands | (keys >> np.uint64(6)), has

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
            flat = np.concatenate(keys).ravel()  # record after record, band after band
            owners = np.repeat(np.concatenate(positions), self.near.num_buckets)
            order = np.argsort(flat, kind="stable")
            self.lookup, self.lookup_records = flat[order], owners[order]
        self.seconds = time.perf_counter() - start
        return self

    def exact(self, content_hash: str) -> list[IndexedRecord]:
        return [self.records[i] for i in self.by_hash.get(content_hash, [])]

    def near_hits(self, text: str, parts: RecordParts, content_hash: str,
                  limit: int = 10) -> list[tuple[IndexedRecord, float]]:
        """Verified near duplicates, most similar first (by their least similar part); exact copies excluded."""
        return self.near_hits_batch([(text, parts, content_hash)], limit)[0]

    def near_hits_batch(self, records: list[tuple[str, RecordParts, str]],
                        limit: int = 10) -> list[list[tuple[IndexedRecord, float]]]:
        """``near_hits`` of many (text, parts, content hash): signatures and part shingles of the whole
        batch computed at once (per record they were half of a request's time)."""
        if not self.near.enabled or self.lookup.size == 0 or not records:
            return [[] for _ in records]
        keys, has = self.text_band_keys([text for text, _, _ in records])
        if isinstance(self.tokenizer, CharTokenizer):
            flat = char_shingle_batch([t for _, p, _ in records for t in (p.prompt, p.context, p.answer)],
                                      self.near.n_grams)
            shingles = [PartShingles(*flat[3 * i:3 * i + 3]) for i in range(len(records))]
        else:
            shingles = [self.part_shingles(p) for _, p, _ in records]
        return [self._verified(k, mine, content_hash, limit) if ok else []
                for k, ok, mine, (_, _, content_hash) in zip(keys, has, shingles, records)]

    def _verified(self, keys: np.ndarray, mine: PartShingles, content_hash: str,
                  limit: int) -> list[tuple[IndexedRecord, float]]:
        lo, hi = np.searchsorted(self.lookup, keys, "left"), np.searchsorted(self.lookup, keys, "right")
        candidates = set(np.concatenate([self.lookup_records[a:b] for a, b in zip(lo.tolist(), hi.tolist())]).tolist())
        hits = []
        for i in candidates:
            rec = self.records[i]
            if rec.content_hash == content_hash:
                continue
            similarity = near_duplicate_similarity(mine, self._stored_shingles(i), self.near.min_jaccard,
                                                   self.near.same_prompt_different_answer)
            if similarity is not None:
                hits.append((rec, round(similarity, 4)))
        hits.sort(key=lambda h: (-h[1], h[0].record_id))
        return hits[:limit]
