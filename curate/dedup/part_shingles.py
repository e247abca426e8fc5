"""The part shingles near-duplicate verification compares, computed in the filter stage.

The dedup plan is one task; reading the candidates' texts back and shingling them there was about
half of its time, on one core, while the filter stage's tasks had the texts in hand. So each filter
task writes the shingles of every record it keeps, in the order of its Parquet shard:

* ``RANK.shingles``: the prompt, context and answer shingles of record 0, then of record 1, ...
  (uint32 character n-gram hashes, or uint64 word n-gram hashes with ``tokens: fugashi``);
* ``RANK.counts``: three int32 per record, how many shingles each part has.

The plan maps the files (``curate.dedup.plan.PartShingleStore.from_files``) and reads only the
candidates' ranges; the shingles are those ``PartShingles.of`` gives the same record's parts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.utils.batching import batched

from curate.config import NearDedupConfig
from curate.dedup.near_duplicates import RecordParts, char_shingle_flat, shingle_hashes
from curate.text.tokenizers import CharTokenizer, make_tokenizer

COUNTS_DTYPE = np.dtype("<i4")


def shingle_dtype(near: NearDedupConfig) -> np.dtype:
    return np.dtype("<u4") if near.tokens == "chars" else np.dtype("<u8")


def shingle_paths(folder: str | Path, rank: int) -> tuple[Path, Path]:
    """(shingles, counts) files of filter task ``rank``."""
    folder = Path(folder)
    return folder / f"{rank:05d}.shingles", folder / f"{rank:05d}.counts"


def part_shingles(parts: list[RecordParts], near: NearDedupConfig, tokenizer=None) -> tuple[np.ndarray, np.ndarray]:
    """Every part's shingles, record after record and part after part, and the counts, (records, 3)."""
    texts = [t for p in parts for t in (p.prompt, p.context, p.answer)]
    tokenizer = tokenizer or make_tokenizer(near.tokens)
    if isinstance(tokenizer, CharTokenizer):
        values, counts = char_shingle_flat(texts, near.n_grams)
    else:
        hashed = [shingle_hashes(t, tokenizer, near.n_grams) for t in texts]
        counts = np.fromiter((a.size for a in hashed), dtype=np.int64, count=len(hashed))
        values = np.concatenate(hashed) if hashed else np.zeros(0, dtype=np.uint64)
    return values.astype(shingle_dtype(near), copy=False), counts.reshape(-1, 3)


def part_offsets(counts: np.ndarray) -> np.ndarray:
    """(records, 4): where each record's prompt, context and answer shingles start, and where its answer
    ends, in the values ``part_shingles`` gives for those ``counts``."""
    counts = counts.reshape(-1, 3).astype(np.int64)
    ends = np.cumsum(counts.ravel()).reshape(-1, 3)
    return np.column_stack([ends[:, 2] - counts.sum(axis=1), ends])


class PartShingleWriter(PipelineStep):
    """Filter stage: writes the part shingles of every record passing through (after the record
    writer, so its rows are the shard's rows) and passes the records on."""

    name = "🧩 part shingles"
    type = "🫂 - DEDUP"
    batch_size = 1024

    def __init__(self, output_folder: str, near: NearDedupConfig):
        super().__init__()
        self.output_folder = output_folder
        self.near = near

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        tokenizer = make_tokenizer(self.near.tokens)
        values_path, counts_path = shingle_paths(self.output_folder, rank)
        values_path.parent.mkdir(parents=True, exist_ok=True)
        with open(values_path, "wb") as values_file, open(counts_path, "wb") as counts_file:
            for docs in batched(data, self.batch_size):
                with self.track_time("batch"):
                    meta = [d.metadata for d in docs]
                    parts = [RecordParts.of(m.get("instruction"), m.get("input"), m.get("output"), m.get("messages"))
                             for m in meta]
                    values, counts = part_shingles(parts, self.near, tokenizer)
                    values_file.write(values.tobytes())
                    counts_file.write(counts.astype(COUNTS_DTYPE).tobytes())
                self.stat_update("records", value=len(docs))
                yield from docs
