"""Exact and near-duplicate removal.

Signatures and LSH buckets are datatrove's own (``MinhashDedupSignature`` and
``MinhashDedupBuckets``). The clustering step is ours, because datatrove's
``MinhashDedupCluster`` keeps whichever record union-by-size makes the root and records no
pointer from a dropped record to the one that was kept. ``DedupPlan`` applies a stated rule
instead and verifies each LSH candidate pair by its true Jaccard similarity:

* exact duplicates: records with the same ``content_hash`` (normalised text);
* near duplicates: LSH candidate pairs whose n-gram Jaccard is at least ``min_jaccard``,
  joined transitively into clusters;
* survivor of a group: the record of the source listed first in the manifest, then the
  lowest row number (list your preferred sources first).

The plan is one Parquet file; ``DedupFilter`` drops what it names, per stage.
"""

from __future__ import annotations

import json
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

from curate.config import NearDedupConfig
from curate.tokenizers import make_tokenizer

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


def shingle_hashes(text: str, tokenizer, n: int) -> np.ndarray:
    """Sorted unique 64-bit hashes of the text's n-grams (8 bytes each, not a set of strings)."""
    tokens = tokenizer.word_tokenize(simplify_text(text, NORM))
    grams = [" ".join(g) for g in ngrams(tokens, n)] if len(tokens) >= n else [" ".join(tokens)]
    return np.unique(np.fromiter(map(_HASH, grams), dtype=np.uint64, count=len(grams)))


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    inter = np.intersect1d(a, b, assume_unique=True).size
    union = a.size + b.size - inter
    return inter / union if union else 1.0


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


class DedupPlan(PipelineStep):
    """Single task: decide every duplicate group and its survivor; writes ``plan.parquet``."""

    name = "🧮 dedup plan"

    def __init__(self, records_folder: str, buckets_folder: str | None, plan_path: str,
                 exact: bool, near: NearDedupConfig | None, min_jaccard: float = MIN_JACCARD):
        super().__init__()
        self.records_folder = records_folder
        self.buckets_folder = buckets_folder
        self.plan_path = plan_path
        self.exact = exact
        self.near = near
        self.min_jaccard = min_jaccard

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        if world_size != 1:
            raise ValueError("DedupPlan runs as a single task")
        Path(self.plan_path).parent.mkdir(parents=True, exist_ok=True)
        files = sorted(Path(self.records_folder).glob("*.parquet"))
        con = duckdb.connect()
        if not files:
            rows = []
        else:
            # position within its rank's shard = the doc index MinhashDedupSignature saw
            rows = con.execute(
                f"""SELECT record_id, content_hash, source_order, row, file,
                           CAST(regexp_extract(filename, '(\\d+)\\.parquet$', 1) AS INTEGER) AS rank,
                           file_row_number AS doc_idx, text
                    FROM read_parquet({json.dumps([str(f) for f in files])}, filename=true, file_row_number=true)"""
            ).fetchall()
        order = {r[0]: (r[2], r[4], r[3], r[0]) for r in rows}  # survivor rule: manifest order, file, row
        by_pos = {(r[5], r[6]): r[0] for r in rows}
        text = {r[0]: r[7] for r in rows}
        plan: dict[str, tuple[str, str, str]] = {}  # record_id -> (stage, survivor, group)

        canonical = {}
        if self.exact:
            groups: dict[str, list[str]] = {}
            for r in rows:
                groups.setdefault(r[1], []).append(r[0])
            for members in groups.values():
                if len(members) > 1:
                    members.sort(key=order.__getitem__)
                    for m in members[1:]:
                        plan[m] = ("exact_dedup", members[0], members[0])
                        canonical[m] = members[0]
            self.stat_update("exact_duplicates", value=len(plan))

        if self.near is not None and self.buckets_folder:
            uf = _UnionFind()
            tokenizer = make_tokenizer(self.near.tokens)
            shingles: dict[str, np.ndarray] = {}
            checked = rejected = 0
            for dups in sorted(Path(self.buckets_folder).glob("*.dups")):
                with open(dups, "rb") as f:
                    for f1, d1, f2, d2 in read_tuples_from_file(f, "4I", lines_to_buffer=1000):
                        a, b = by_pos.get((f1, d1)), by_pos.get((f2, d2))
                        if a is None or b is None:
                            continue
                        a, b = canonical.get(a, a), canonical.get(b, b)
                        if a == b or uf.find(order[a]) == uf.find(order[b]):
                            continue
                        for rid in (a, b):
                            if rid not in shingles:
                                shingles[rid] = shingle_hashes(text[rid], tokenizer, self.near.n_grams)
                        checked += 1
                        if jaccard(shingles[a], shingles[b]) >= self.min_jaccard:
                            uf.union(order[a], order[b])
                        else:
                            rejected += 1
            clusters: dict = {}
            for key in list(uf.parent):
                clusters.setdefault(uf.find(key), []).append(key)
            for root, members in clusters.items():
                if len(members) < 2:
                    continue
                survivor = root[3]
                for m in members:
                    if m[3] != survivor:
                        plan[m[3]] = ("near_dedup", survivor, survivor)
            # exact duplicates of a near-dropped record point at the near survivor's group
            for rid, (stage, survivor, _) in list(plan.items()):
                if stage == "exact_dedup" and survivor in plan and plan[survivor][0] == "near_dedup":
                    plan[rid] = (stage, survivor, plan[survivor][2])
            self.stat_update("near_pairs_checked", value=checked)
            self.stat_update("near_pairs_rejected", value=rejected)
            logger.info(f"near-dup: {checked} candidate pairs checked, {rejected} below Jaccard {self.min_jaccard}")

        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.table(
            {
                "record_id": list(plan),
                "stage": [v[0] for v in plan.values()],
                "duplicate_of": [v[1] for v in plan.values()],
                "cluster_id": [v[2] for v in plan.values()],
            },
            schema=pa.schema([("record_id", pa.string()), ("stage", pa.string()),
                              ("duplicate_of", pa.string()), ("cluster_id", pa.string())]),
        )
        pq.write_table(table, self.plan_path)
        return
        yield  # a pipeline step is a generator


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


