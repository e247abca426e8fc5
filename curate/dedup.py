"""Exact and near-duplicate removal.

Signatures are one-permutation MinHash (``curate.minhash``, in datatrove's bucket file format) and
LSH buckets are datatrove's own ``MinhashDedupBuckets``. The clustering step is ours, because datatrove's
``MinhashDedupCluster`` keeps whichever record union-by-size makes the root and records no
pointer from a dropped record to the one that was kept. ``DedupPlan`` applies a stated rule
instead and verifies each LSH candidate pair by its true Jaccard similarity:

* exact duplicates: records with the same ``content_hash`` (normalised text);
* near duplicates: LSH candidate pairs (MinHash of the whole text) whose prompt AND answer
  are both similar: the n-gram Jaccard of the instruction (or the user turns), of the input
  (context passage) and of the output (or the assistant turns) each at least ``min_jaccard``,
  joined transitively into clusters. A shared context passage alone never makes two records
  duplicates; a similar prompt with a different answer is kept unless
  ``same_prompt_different_answer: drop``;
* survivor of a group: the record of the source listed first in the manifest, then the
  lowest row number (list your preferred sources first).

The plan is one Parquet file; ``DedupFilter`` drops what it names, per stage.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import duckdb
import numpy as np
from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.dedup.minhash import MinhashConfig
from datatrove.pipeline.filters.base_filter import BaseFilter
from datatrove.pipeline.writers.disk_base import DiskWriter
from datatrove.utils.binaryio import read_tuples_from_file
from datatrove.utils.hashing import HashConfig, create_hash_func
from datatrove.utils.logging import logger
from datatrove.utils.text import TextNormConfig, ngrams, simplify_text

from curate.char_ngrams import char_codes, coefficients, window_hashes
from curate.config import NearDedupConfig
from curate.tokenizers import CharTokenizer, make_tokenizer

# datatrove's default strips diacritics (ダイヤモンド -> タイヤモント) and maps every number
# to 0, which makes "3と5の和" and "7と2の和" identical: keep both.
NORM = TextNormConfig(norm_unicode_diacritics=False, norm_numbers=False)

# an LSH candidate pair is a near duplicate when its n-gram Jaccard reaches this
MIN_JACCARD = 0.5


def minhash_config(c: NearDedupConfig) -> MinhashConfig:
    return MinhashConfig(
        n_grams=c.n_grams,
        num_buckets=c.num_buckets,
        hashes_per_bucket=c.hashes_per_bucket,
        seed=c.seed,
        norm_config=NORM,
        hash_config=HashConfig(precision=64),
    )


_HASH = create_hash_func(HashConfig(precision=64))
_CHARS = CharTokenizer()


def shingle_hashes(text: str, tokenizer, n: int) -> np.ndarray:
    """Sorted unique 64-bit hashes of the text's n-grams (8 bytes each, not a set of strings)."""
    tokens = tokenizer.word_tokenize(simplify_text(text, NORM))
    grams = [" ".join(g) for g in ngrams(tokens, n)] if len(tokens) >= n else [" ".join(tokens)]
    return np.unique(np.fromiter(map(_HASH, grams), dtype=np.uint64, count=len(grams)))


_COEFFS = coefficients(5)


def char_shingle_hashes(text: str, n: int) -> np.ndarray:
    """Sorted unique 64-bit hashes of the character n-grams (whitespace dropped), vectorised.

    The same n-gram sets as ``shingle_hashes`` with the character tokenizer, so the same
    Jaccard up to hash collisions; the hash values differ (a polynomial hash in numpy instead
    of xxhash per n-gram string, ~5x faster), so use it only where no datatrove signature has
    to match: verifying candidate pairs.

    >>> a, b = char_shingle_hashes("東京は日本の首都です", 5), char_shingle_hashes("東京は日本の首都だ", 5)
    >>> round(jaccard(a, b), 3) == round(jaccard(shingle_hashes("東京は日本の首都です", _CHARS, 5),
    ...                                          shingle_hashes("東京は日本の首都だ", _CHARS, 5)), 3)
    True
    """
    chars = "".join(simplify_text(text, NORM).split())
    codes = char_codes(chars)
    if codes.size < n:  # like shingle_hashes: the whole (short) text is one shingle
        with np.errstate(over="ignore"):
            return window_hashes(codes, codes.size, _COEFFS) + np.uint64(codes.size)
    return np.unique(window_hashes(codes, n, _COEFFS))


def char_shingle_batch(texts: list[str], n: int, chunk: int = 4096) -> list[np.ndarray]:
    """``char_shingle_hashes`` of many texts, identical arrays, with the windows of a whole chunk of
    texts hashed in one numpy pass over their concatenation (per-text calls spent most of the dedup
    plan's time in numpy call overhead). A window that would straddle two texts is never used.

    >>> texts = ["東京は日本の首都です", "", "短い", "東京は日本の首都だ"]
    >>> all(np.array_equal(a, char_shingle_hashes(t, 5)) for a, t in zip(char_shingle_batch(texts, 5), texts))
    True
    """
    out: list[np.ndarray] = []
    for start in range(0, len(texts), chunk):
        chars = ["".join(simplify_text(t, NORM).split()) for t in texts[start:start + chunk]]
        codes = char_codes("".join(chars))
        hashes = window_hashes(codes, n, _COEFFS) if codes.size >= n else np.zeros(0, dtype=np.uint64)
        offset = 0
        for c in chars:
            if len(c) >= n:
                out.append(np.unique(hashes[offset:offset + len(c) - n + 1]))
            else:  # like char_shingle_hashes: a short text is one shingle
                with np.errstate(over="ignore"):
                    out.append(window_hashes(codes[offset:offset + len(c)], len(c), _COEFFS) + np.uint64(len(c)))
            offset += len(c)
    return out


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    inter = np.intersect1d(a, b, assume_unique=True).size
    union = a.size + b.size - inter
    return inter / union if union else 1.0


@dataclass(frozen=True)
class RecordParts:
    """What near-duplicate verification compares: the prompt, the context passage and the answer."""

    prompt: str  # instruction, or the user turns
    context: str  # input
    answer: str  # output, or the assistant turns

    @classmethod
    def of(cls, instruction: str | None, input_: str | None, output: str | None, messages=None) -> RecordParts:
        if isinstance(messages, str):
            messages = json.loads(messages) if messages else None
        if messages:
            return cls("\n".join(t["content"] for t in messages if t["role"] != "assistant"), "",
                       "\n".join(t["content"] for t in messages if t["role"] == "assistant"))
        return cls(instruction or "", input_ or "", output or "")


@dataclass(frozen=True)
class PartShingles:
    prompt: np.ndarray
    context: np.ndarray
    answer: np.ndarray

    @classmethod
    def of(cls, parts: RecordParts, tokenizer, n: int) -> PartShingles:
        texts = (parts.prompt, parts.context, parts.answer)
        if isinstance(tokenizer, CharTokenizer):
            return cls(*(char_shingle_hashes(t, n) for t in texts))
        return cls(*(shingle_hashes(t, tokenizer, n) for t in texts))


def near_duplicate_similarity(a: PartShingles, b: PartShingles, min_jaccard: float = MIN_JACCARD,
                              same_prompt_different_answer: str = "keep") -> float | None:
    """The smallest part Jaccard when a and b are near duplicates, else None.

    Prompt and context must both reach ``min_jaccard``; the answer too, unless
    ``same_prompt_different_answer`` is ``drop``.
    """
    prompt = jaccard(a.prompt, b.prompt)
    context = jaccard(a.context, b.context)
    if min(prompt, context) < min_jaccard:
        return None
    answer = jaccard(a.answer, b.answer)
    if answer < min_jaccard and same_prompt_different_answer != "drop":
        return None
    return min(prompt, context, answer) if answer >= min_jaccard else min(prompt, context)


class _UnionFind:
    def __init__(self):
        self.parent: dict = {}

    def find(self, x):
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a, b):
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


@dataclass(frozen=True)
class PlanRecord:
    """One filtered record as the dedup plan reads it back from the ``filtered`` shards."""

    record_id: str
    content_hash: str
    source_order: int
    row: int
    file: str
    rank: int  # the shard (task) it was written by
    doc_idx: int  # its position in that shard = the doc index MinhashDedupSignature saw
    instruction: str | None
    input: str | None
    output: str | None
    messages: str | None  # JSON

    @property
    def parts(self) -> RecordParts:
        return RecordParts.of(self.instruction, self.input, self.output, self.messages)

    @cached_property  # read millions of times by the clustering (a frozen dataclass may cache in __dict__)
    def survivor_key(self) -> tuple:
        """Survivor rule: the source listed first in the manifest, then file, then row."""
        return (self.source_order, self.file, self.row, self.record_id)


@dataclass(frozen=True)
class PlanEntry:
    """A record the plan drops: at which stage, the record it duplicates, and its group."""

    stage: str  # exact_dedup | near_dedup
    duplicate_of: str
    cluster_id: str


def load_plan_records(records_folder: str | Path) -> list[PlanRecord]:
    files = sorted(Path(records_folder).glob("*.parquet"))
    if not files:
        return []
    rows = duckdb.connect().execute(
        f"""SELECT record_id, content_hash, source_order, row, file,
                   CAST(regexp_extract(filename, '(\\d+)\\.parquet$', 1) AS INTEGER) AS rank,
                   file_row_number AS doc_idx, instruction, input, output, messages
            FROM read_parquet({json.dumps([str(f) for f in files])}, filename=true, file_row_number=true)"""
    ).fetchall()
    return [PlanRecord(*r) for r in rows]


def exact_duplicates(records: list[PlanRecord]) -> dict[str, PlanEntry]:
    """Records whose ``content_hash`` an earlier record (by the survivor rule) has."""
    groups: dict[str, list[PlanRecord]] = {}
    for r in records:
        groups.setdefault(r.content_hash, []).append(r)
    plan = {}
    for members in groups.values():
        if len(members) > 1:
            members.sort(key=lambda r: r.survivor_key)
            survivor = members[0].record_id
            for m in members[1:]:
                plan[m.record_id] = PlanEntry("exact_dedup", survivor, survivor)
    return plan


def candidate_groups(buckets_folder: str | Path) -> Iterator[list[tuple[int, int]]]:
    """The records that share one band signature in one bucket, as lists of (rank, doc_idx).

    datatrove writes such a group as a chain of pairs in its sort order (signature, task, index
    in the task): (a, b), (b, c), ... So which pairs it writes depends on how the records were
    split over tasks; the group does not."""
    for dups in sorted(Path(buckets_folder).glob("*.dups")):
        group: list[tuple[int, int]] = []
        with open(dups, "rb") as f:
            for f1, d1, f2, d2 in read_tuples_from_file(f, "4I", lines_to_buffer=1000):
                if group and group[-1] == (f1, d1):
                    group.append((f2, d2))
                    continue
                if group:
                    yield group
                group = [(f1, d1), (f2, d2)]
        if group:
            yield group


def canonical_pairs(groups, by_pos: dict, by_id: dict, exact: dict) -> Iterator[tuple]:
    """Candidate pairs that do not depend on how the records were split over tasks: each group's
    records (an exact duplicate standing for its survivor) in survivor order, each paired with the
    next. With one task this is datatrove's own chain; with several, the same pairs again."""
    for group in groups:
        members = {}
        for pos in group:
            r = by_pos.get(pos)
            if r is None:
                continue
            r = by_id[exact[r.record_id].duplicate_of] if r.record_id in exact else r
            members[r.record_id] = r
        ordered = sorted(members.values(), key=lambda r: r.survivor_key)
        yield from zip(ordered, ordered[1:])


@dataclass
class NearClustering:
    """Near-duplicate clusters: candidate pairs verified part by part (``near_duplicate_similarity``) and
    joined transitively."""

    near: NearDedupConfig
    checked: int = 0
    rejected: int = 0

    def _shingles(self, records: dict[str, PlanRecord]) -> dict[str, PartShingles]:
        """Every candidate's part shingles; character shingles in batches (``char_shingle_batch``)."""
        tokenizer = make_tokenizer(self.near.tokens)
        if not isinstance(tokenizer, CharTokenizer):
            return {rid: PartShingles.of(r.parts, tokenizer, self.near.n_grams) for rid, r in records.items()}
        parts = [r.parts for r in records.values()]
        texts = [t for p in parts for t in (p.prompt, p.context, p.answer)]
        hashed = char_shingle_batch(texts, self.near.n_grams)
        return {rid: PartShingles(*hashed[3 * i:3 * i + 3]) for i, rid in enumerate(records)}

    def clusters(self, records: list[PlanRecord], groups, exact: dict[str, PlanEntry]) -> dict[str, PlanEntry]:
        """``groups``: lists of (rank, doc_idx) that share a band signature (``candidate_groups``)."""
        by_pos = {(r.rank, r.doc_idx): r for r in records}
        by_id = {r.record_id: r for r in records}
        uf = _UnionFind()
        pairs = list(canonical_pairs(groups, by_pos, by_id, exact))
        shingles = self._shingles({r.record_id: r for pair in pairs for r in pair})
        for a, b in pairs:
            if a.record_id == b.record_id or uf.find(a.survivor_key) == uf.find(b.survivor_key):
                continue
            self.checked += 1
            if near_duplicate_similarity(shingles[a.record_id], shingles[b.record_id], self.near.min_jaccard,
                                         self.near.same_prompt_different_answer) is not None:
                uf.union(a.survivor_key, b.survivor_key)
            else:
                self.rejected += 1
        groups: dict = {}
        for key in list(uf.parent):
            groups.setdefault(uf.find(key), []).append(key)
        plan = {}
        for root, members in groups.items():
            survivor = root[3]  # the smallest survivor key of the group
            for m in members:
                if m[3] != survivor:
                    plan[m[3]] = PlanEntry("near_dedup", survivor, survivor)
        return plan


def merge_plans(exact: dict[str, PlanEntry], near: dict[str, PlanEntry]) -> dict[str, PlanEntry]:
    """Exact duplicates of a near-dropped record join the near survivor's group."""
    plan = {**exact, **near}
    for rid, entry in exact.items():
        if entry.duplicate_of in near:
            plan[rid] = PlanEntry(entry.stage, entry.duplicate_of, near[entry.duplicate_of].cluster_id)
    return plan


def write_plan(plan: dict[str, PlanEntry], path: str | Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {
            "record_id": list(plan),
            "stage": [v.stage for v in plan.values()],
            "duplicate_of": [v.duplicate_of for v in plan.values()],
            "cluster_id": [v.cluster_id for v in plan.values()],
        },
        schema=pa.schema([("record_id", pa.string()), ("stage", pa.string()),
                          ("duplicate_of", pa.string()), ("cluster_id", pa.string())]),
    )
    pq.write_table(table, path)


class DedupPlan(PipelineStep):
    """Single task: decide every duplicate group and its survivor; writes ``plan.parquet``."""

    name = "🧮 dedup plan"

    def __init__(self, records_folder: str, buckets_folder: str | None, plan_path: str,
                 exact: bool, near: NearDedupConfig | None):
        super().__init__()
        self.records_folder = records_folder
        self.buckets_folder = buckets_folder
        self.plan_path = plan_path
        self.exact = exact
        self.near = near

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        if world_size != 1:
            raise ValueError("DedupPlan runs as a single task")
        Path(self.plan_path).parent.mkdir(parents=True, exist_ok=True)
        records = load_plan_records(self.records_folder)
        exact = exact_duplicates(records) if self.exact else {}
        self.stat_update("exact_duplicates", value=len(exact))
        near = {}
        if self.near is not None and self.buckets_folder:
            clustering = NearClustering(self.near)
            near = clustering.clusters(records, candidate_groups(self.buckets_folder), exact)
            self.stat_update("near_pairs_checked", value=clustering.checked)
            self.stat_update("near_pairs_rejected", value=clustering.rejected)
            logger.info(f"near-dup: {clustering.checked} candidate pairs checked, {clustering.rejected} below "
                        f"Jaccard {self.near.min_jaccard} (prompt, context and answer)")
        write_plan(merge_plans(exact, near), self.plan_path)
        yield from ()  # a pipeline step is a generator; this one only writes the plan


class DedupFilter(BaseFilter):
    """Drops the records the dedup plan assigns to this filter's stage (exact or near)."""

    name = "🫂 dedup (plan)"

    def __init__(self, plan_path: str, stage: str, exclusion_writer: DiskWriter | None = None):
        super().__init__(exclusion_writer)
        self.plan_path = plan_path
        self.stage = stage
        self._drop: dict[str, str] | None = None

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        if self._drop is None:
            import pyarrow.parquet as pq

            t = pq.read_table(self.plan_path).to_pydict()
            self._drop = {
                rid: of for rid, stage, of in zip(t["record_id"], t["stage"], t["duplicate_of"]) if stage == self.stage
            }
        survivor = self._drop.get(doc.id)
        if survivor is None:
            return True
        doc.metadata["drop_value"] = survivor
        return False, "exact_duplicate" if self.stage == "exact_dedup" else "near_duplicate"


