"""The dedup plan: verify tasks check shares of the near-duplicate candidate pairs, then one task joins
their verified pairs into duplicate groups and decides each group's survivor (``plan.parquet``).

Rules (``curate.dedup.near_duplicates``): exact duplicates share a ``content_hash``; near duplicates are LSH
candidate pairs whose prompt, context and answer each reach ``min_jaccard``, joined transitively;
the survivor of a group is the first record by (manifest order of its source, file, row, id).

In the pipeline (``curate.running.pipeline``) the work is split over three stages:

* ``near-pairs``, one task per worker (at most one per band): task r of T reads bands r, r + T, ...,
  finds their candidate pairs and writes each pair's key to the verify task that owns it: the one whose
  blocks of positions (``share_blocks``) hold the pair's first record (``NearPairSharder``). Each band
  is read and sorted once, whatever the number of tasks.
* ``near-verify``, one task per worker (or Ray/Slurm task): task r of W reads its pairs' keys from
  every near-pairs task, keeps each pair once, verifies them against the part shingles the
  filter tasks wrote, and writes the verified pairs (``NearPairVerifier``). Only this stage reads
  shingles, and each task only its pairs' records'.
* ``dedup-plan``, one task: the connected components over all tasks' verified pairs, the smallest
  position of each its survivor (``decide_from_edges``); it holds the records' order and the edges,
  no text and no shingles. Components do not depend on how the pairs were shared out, so the fates
  are those of one task verifying everything (``decide``; tested for 1, 2, 3 and 7 tasks).

The parts, each built so that the tasks stay fast and their memory does not hold the corpus:

* ``PlanTable``: every filtered record's id, task position and exact-duplicate survivor, in
  survivor order, computed by DuckDB from the Parquet shards' metadata columns. No text. In the pipeline
  it is computed once (``PlanTableWriter``, at the end of the ``minhash-buckets`` stage) and mapped by
  the verify tasks and the plan.
* ``candidate_pairs``: datatrove's bucket files (chains of records sharing a band signature) read
  as arrays; each group's records, an exact duplicate standing for its survivor, are paired with
  the next in survivor order (so the pairs do not depend on how the records were split over tasks),
  and each pair is kept once.
* ``PartShingleStore``: the part shingles (32-bit hashes) of the records that are in a pair, mapped
  from the files the filter tasks wrote (``curate.dedup.part_shingles``; shingling there runs on every
  worker, here on one core), or without them computed from the candidates' texts read in batches.
* ``NearClusters.roots``: pairs verified a batch at a time, many pairs per numpy or scipy call
  (``verify_pairs``, ``shared_counts``; skipping pairs that earlier batches already joined), and
  grouped as connected components over survivor positions; the smallest position of a group is its
  survivor. The groups do not depend on the order the pairs are checked in.
* ``Plan``: the dropped records, their stage, the record each duplicates and its group, as arrays
  of positions, written to Parquet by Arrow (no dict of a million entries).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.utils.logging import logger

from core.errors import JcurateError
from curate.columns import numpy_of
from curate.config import NearDedupConfig
from curate.dedup.minhash import release_maps
from curate.dedup.near_duplicates import PartShingles, RecordParts
from curate.dedup.part_shingles import COUNTS_DTYPE, part_offsets, part_shingles, shingle_dtype, shingle_paths
from curate.text.tokenizers import make_tokenizer


@dataclass(frozen=True)
class PlanEntry:
    """A record the plan drops: at which stage, the record it duplicates, and its group."""

    stage: str  # exact_dedup | near_dedup
    duplicate_of: str
    cluster_id: str


def _shards(records_folder: str | Path) -> list[str]:
    return [str(f) for f in sorted(Path(records_folder).glob("*.parquet"))]


TABLE_ARRAYS = ("task_keys", "key_positions", "exact_of")  # PlanTable's arrays, saved as NAME.npy


@dataclass
class PlanTable:
    """Every filtered record in survivor order (position 0 survives everything it duplicates)."""

    record_ids: pa.Array  # of strings, by position (Arrow: a million ids cost ~30 MB, not ~100 MB of str)
    task_keys: np.ndarray  # sorted (rank << 32 | index in the task) of every record
    key_positions: np.ndarray  # the survivor position of each sorted task key
    exact_of: np.ndarray  # per position: the position of the first record with its content hash
    shards: list[str]

    @classmethod
    def load(cls, records_folder: str | Path, exact: bool = True) -> PlanTable:
        shards = _shards(records_folder)
        if not shards:
            empty = np.zeros(0, dtype=np.int64)
            return cls(pa.array([], pa.string()), empty.astype(np.uint64), empty, empty, [])
        # DuckDB's sort and window over every record's id and content hash: bounded, spilling to disk past it
        spill = Path(records_folder).parent / "plan_spill"
        con = duckdb.connect(config={"memory_limit": "1GB", "temp_directory": str(spill)})
        columns = con.sql(
            f"""WITH r AS (
                  SELECT record_id, content_hash, source_order, file, row,
                         CAST(regexp_extract(filename, '(\\d+)\\.parquet$', 1) AS UBIGINT) AS rank,
                         file_row_number AS doc_idx
                  FROM read_parquet({json.dumps(shards)}, filename=true, file_row_number=true)),
                o AS (SELECT *, row_number() OVER (ORDER BY source_order, file, row, record_id) - 1 AS pos FROM r)
                SELECT record_id, (rank << 32) | CAST(doc_idx AS UBIGINT) AS task_key,
                       min(pos) OVER (PARTITION BY content_hash) AS exact_of
                FROM o ORDER BY pos"""
        ).to_arrow_table()
        con.close()
        keys = numpy_of(columns["task_key"]).astype(np.uint64)  # not to_numpy: it imports pandas (curate.running.outputs)
        order = np.argsort(keys, kind="stable")
        positions = np.arange(keys.size, dtype=np.int64)
        exact_of = numpy_of(columns["exact_of"]).astype(np.int64) if exact else positions
        return cls(columns["record_id"].combine_chunks(), keys[order], order.astype(np.int64), exact_of, shards)

    def __len__(self) -> int:
        return int(self.exact_of.size)

    def save(self, folder: str | Path) -> None:
        """Writes the table to ``folder`` (replaced whole: written beside it, then renamed, so a task cut off
        leaves no table that looks complete)."""
        import shutil

        folder = Path(folder)
        partial = folder.with_name(folder.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        for name in TABLE_ARRAYS:
            np.save(partial / f"{name}.npy", np.ascontiguousarray(getattr(self, name)))
        with pa.OSFile(str(partial / "record_ids.arrow"), "wb") as sink:
            ids = pa.table({"record_id": self.record_ids})
            with pa.ipc.new_file(sink, ids.schema) as writer:
                writer.write_table(ids)
        (partial / "shards.json").write_text(json.dumps(self.shards), encoding="utf-8")
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(partial, folder)

    @classmethod
    def open(cls, folder: str | Path, ids: bool = True) -> PlanTable:
        """The table ``save`` wrote, its arrays mapped (the pages are shared by every task on the machine, not
        copied into each); ``ids=False``: without the record ids (a verify task needs positions only)."""
        folder = Path(folder)
        try:
            shards = json.loads((folder / "shards.json").read_text(encoding="utf-8"))
            arrays = {name: np.load(folder / f"{name}.npy", mmap_mode="r").view(np.ndarray) for name in TABLE_ARRAYS}
            record_ids = pa.array([], pa.string())
            if ids:  # the map stays open while the ids' buffers live (they point into it)
                source = pa.memory_map(str(folder / "record_ids.arrow"))
                record_ids = pa.ipc.open_file(source).read_all()["record_id"].combine_chunks()
        except (OSError, ValueError, pa.ArrowException) as e:
            raise JcurateError(f"dedup plan: the records' order in {folder} is missing or unreadable ({e}); "
                               "run again (or with --fresh)") from None
        return cls(record_ids, shards=shards, **arrays)

    @classmethod
    def open_or_load(cls, folder: str | Path | None, records_folder: str | Path, exact: bool,
                     ids: bool = True) -> PlanTable:
        """``open(folder)``, or without a folder ``load(records_folder)`` (a run without near dedup)."""
        return cls.open(folder, ids=ids) if folder else cls.load(records_folder, exact=exact)

    @cached_property
    def _task_runs(self) -> np.ndarray:
        """Where each filter task's run of keys starts in ``task_keys`` (and where the last ends): computed once,
        not for each band."""
        key_ranks = (self.task_keys >> np.uint64(32)).astype(np.int64)
        return np.searchsorted(key_ranks, np.arange(int(key_ranks[-1]) + 2))

    def task_rows(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(filter task, row in its shard) of the records at survivor ``positions``, as int64 arrays."""
        key_of = np.empty(len(self), dtype=np.uint64)
        key_of[self.key_positions] = self.task_keys
        keys = key_of[positions]
        return (keys >> np.uint64(32)).astype(np.int64), (keys & np.uint64(0xFFFFFFFF)).astype(np.int64)

    def positions(self, rank: np.ndarray, doc_idx: np.ndarray) -> np.ndarray:
        """Survivor positions of (task, index in task) pairs; -1 where no filtered record is there.

        A task's records are its shard's rows 0, 1, ...: so the sorted task keys are runs of
        consecutive indices, one run per task, and a record is at its run's start plus its index (a
        lookup, not a binary search of a million keys for each of millions of band entries)."""
        if not self.task_keys.size:
            return np.full(rank.shape, -1, dtype=np.int64)
        first = self._task_runs  # each task's run in task_keys
        tasks = first.size - 1
        rank, doc_idx = rank.astype(np.int64), doc_idx.astype(np.int64)
        known = (rank >= 0) & (rank < tasks) & (doc_idx >= 0)
        at = np.where(known, first[rank.clip(0, tasks - 1)] + doc_idx, 0)
        known &= at < first[(rank + 1).clip(0, tasks)]
        at = np.where(known, at, 0)
        # the runs hold every row only if the shards have no gaps: check the key, as the search did
        expected = (rank.astype(np.uint64) << np.uint64(32)) | doc_idx.astype(np.uint64)
        known &= self.task_keys[at] == expected
        return np.where(known, self.key_positions[at], -1)


def sorted_unique(values: np.ndarray) -> np.ndarray:
    """``np.unique`` of an integer array (flattened) by one sort: numpy 2's hash-based ``np.unique``
    took 4.9 s where a sort takes 0.07 s (3 million random int64), a fifth of a million-record plan."""
    values = np.sort(values, axis=None)
    return values[np.concatenate([[True], values[1:] != values[:-1]])] if values.size else values


def read_band_groups(buckets_folder: str | Path, part: tuple[int, int] = (0, 1)
                     ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per bucket file (band), every record in every band-signature group, as (group, task, index in
    task) arrays. One band at a time: at a million records all bands at once were ~0.5 GB of arrays.
    ``part=(i, m)``: only the files i, i + m, ... in name order (a near-pairs task's bands).

    datatrove writes such a group as a chain of pairs in its sort order (signature, task, index in
    the task): (a, b), (b, c), ... So which pairs it writes depends on how the records were split
    over tasks; the group does not."""
    for dups in sorted(Path(buckets_folder).glob("*.dups"))[part[0]::part[1]]:
        raw = np.fromfile(dups, dtype="<u4").reshape(-1, 4).astype(np.int64)
        if not raw.size:
            continue
        starts = np.ones(len(raw), dtype=bool)  # a row starts a group unless it continues the chain
        starts[1:] = (raw[1:, 0] != raw[:-1, 2]) | (raw[1:, 1] != raw[:-1, 3])
        group = np.cumsum(starts) - 1
        yield (np.concatenate([group[starts], group]), np.concatenate([raw[starts, 0], raw[:, 2]]),
               np.concatenate([raw[starts, 1], raw[:, 3]]))


def band_pairs(table: PlanTable, group: np.ndarray, rank: np.ndarray, doc_idx: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
    """One band's candidate pairs as (first, second) survivor positions, first < second: in every group, its
    records (an exact duplicate standing for its survivor) in survivor order, each paired with the next."""
    n = max(len(table), 1)
    positions = table.positions(rank, doc_idx)
    known = positions >= 0
    # one int64 key per (group, member), sorted and made distinct: one sort, not a lexsort of two keys
    entries = sorted_unique(group[known] * n + table.exact_of[positions[known]])
    group, member = np.divmod(entries, n)
    same = group[1:] == group[:-1]
    return member[:-1][same], member[1:][same]


class PairKeys:
    """Distinct pair keys (first * n + second) gathered band by band: each pair once (``np.unique`` on rows was
    a fifth of the plan's time). Merged whenever the held keys outgrow the distinct ones: near copies meet in
    most bands, so all bands' keys at once would be up to bands x records keys (3.2 GB at 10M records)."""

    def __init__(self):
        self.unique = np.zeros(0, dtype=np.int64)
        self.pending: list[np.ndarray] = []
        self.held = 0

    def add(self, keys: np.ndarray) -> None:
        self.pending.append(sorted_unique(keys))
        self.held += self.pending[-1].size
        if self.held > max(self.unique.size, 4_000_000):
            self.unique, self.pending, self.held = sorted_unique(np.concatenate([self.unique, *self.pending])), [], 0

    def sorted(self) -> np.ndarray:
        if self.pending:
            self.unique, self.pending, self.held = sorted_unique(np.concatenate([self.unique, *self.pending])), [], 0
        return self.unique


def pairs_of_keys(keys: np.ndarray, n: int) -> np.ndarray:
    return np.stack([keys // max(n, 1), keys % max(n, 1)], axis=1)


def candidate_pairs(table: PlanTable, bands: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> np.ndarray:
    """(P, 2) survivor positions, first < second, each pair once, in key order: every band's pairs
    (``band_pairs``). A verify task's share of them is those whose first record lies in its blocks of positions
    (``share_blocks``); the ``NearPairSharder`` tasks hand each task exactly that share."""
    n = len(table)
    keys = PairKeys()
    for group, rank, doc_idx in bands:
        a, b = band_pairs(table, group, rank, doc_idx)
        keys.add(a * n + b)
    return pairs_of_keys(keys.sorted(), n)


def share_blocks(positions: np.ndarray, n: int, tasks: int, blocks_per_task: int = 64) -> np.ndarray:
    """The verify task that owns each first position: positions cut into ``tasks * blocks_per_task`` equal
    blocks, dealt out in turn. Contiguous blocks keep a task's pairs in runs of a group's records, and
    many blocks each even out the shares (a pair's first record is its earlier one, so one range per task
    gave the first task 56% of the pairs at a million records; 64 blocks each: 50.3%, each task as fast).

    >>> share_blocks(np.array([0, 1, 2, 3, 4, 5, 6, 7]), 8, 2, blocks_per_task=2).tolist()
    [0, 0, 1, 1, 0, 0, 1, 1]
    """
    return (positions * (tasks * blocks_per_task) // max(n, 1)) % tasks


class PartShingleStore:
    """The part shingles of some records, in chunks (one per batch read; never concatenated, which
    would need twice the memory for a moment): ``bounds[row]`` the four offsets of a record's prompt,
    context and answer hashes inside ``chunks[chunk_of[row]]``; ``row_of[p]`` the row of survivor
    position ``p``."""

    def __init__(self, chunks: list[np.ndarray], chunk_of: np.ndarray, bounds: np.ndarray, row_of: np.ndarray):
        self.chunks, self.chunk_of, self.bounds, self.row_of = chunks, chunk_of, bounds, row_of

    @classmethod
    def build(cls, table: PlanTable, positions: np.ndarray, near: NearDedupConfig,
              batch_rows: int = 20_000) -> PartShingleStore:
        """Reads the texts of the records at ``positions`` from the shards, a batch at a time."""
        tokenizer = make_tokenizer(near.tokens)
        ranks, doc_idx = table.task_rows(positions)
        con = duckdb.connect()
        con.register("wanted", {"pos": positions, "rank": ranks.astype(np.uint64), "doc_idx": doc_idx.astype(np.uint64)})
        reader = con.sql(
            f"""SELECT w.pos, r.instruction, r.input, r.output, r.messages
                FROM read_parquet({json.dumps(table.shards)}, filename=true, file_row_number=true) r
                JOIN wanted w ON CAST(regexp_extract(r.filename, '(\\d+)\\.parquet$', 1) AS UBIGINT) = w.rank
                             AND CAST(r.file_row_number AS UBIGINT) = w.doc_idx""").to_arrow_reader(batch_rows)
        chunks, bounds, fetched = [], [], []
        for batch in reader:
            columns = batch.to_pydict()
            fetched.append(np.asarray(columns["pos"], dtype=np.int64))
            parts = [RecordParts.of(*row) for row in zip(columns["instruction"], columns["input"], columns["output"],
                                                         columns["messages"])]
            values, counts = part_shingles(parts, near, tokenizer)  # what the filter tasks write
            bounds.append(part_offsets(counts))
            chunks.append(values)
        fetched_all = np.concatenate(fetched) if fetched else np.zeros(0, dtype=np.int64)
        row_of = np.full(len(table), -1, dtype=np.int64)
        row_of[fetched_all] = np.arange(fetched_all.size)
        chunk_of = np.repeat(np.arange(len(chunks)), [len(f) for f in fetched])
        return cls(chunks, chunk_of, np.concatenate(bounds) if bounds else np.zeros((0, 4), dtype=np.int64), row_of)

    @classmethod
    def from_files(cls, table: PlanTable, positions: np.ndarray, folder: str | Path,
                   near: NearDedupConfig) -> PartShingleStore:
        """The shingles of the records at ``positions`` from the files the filter tasks wrote
        (``curate.dedup.part_shingles``): each task's values mapped, not read, so only the candidates'
        pages are touched; its counts (12 bytes a record) read whole."""
        dtype = shingle_dtype(near)
        ranks, doc_idx = table.task_rows(positions)
        chunks: list[np.ndarray] = []
        chunk_of = np.zeros(len(positions), dtype=np.int64)
        bounds = np.zeros((len(positions), 4), dtype=np.int64)
        for rank in sorted_unique(ranks).tolist():
            values_path, counts_path = shingle_paths(folder, rank)
            try:
                counts = np.fromfile(counts_path, dtype=COUNTS_DTYPE).reshape(-1, 3).astype(np.int64)
                size = values_path.stat().st_size
            except (OSError, ValueError) as e:
                raise JcurateError(f"dedup plan: the part shingles of filter task {rank} are unreadable "
                                   f"({e}); run again with --fresh") from None
            offsets = part_offsets(counts)
            named = int(offsets[-1, 3]) * dtype.itemsize if len(offsets) else 0
            if named != size:
                raise JcurateError(f"dedup plan: {values_path} holds {size} bytes, its counts name {named}; "
                                   "run again with --fresh")
            at = np.flatnonzero(ranks == rank)
            if doc_idx[at].max() >= len(counts):
                raise JcurateError(f"dedup plan: {counts_path} has {len(counts)} records, the shard has more; "
                                   "run again with --fresh")
            bounds[at] = offsets[doc_idx[at]]
            chunk_of[at] = len(chunks)
            chunks.append(np.memmap(values_path, dtype=dtype, mode="r") if size else np.zeros(0, dtype=dtype))
        row_of = np.full(len(table), -1, dtype=np.int64)
        row_of[positions] = np.arange(len(positions))
        return cls(chunks, chunk_of, bounds, row_of)

    def release(self) -> None:
        """Drops the mapped shingle pages from this process's resident set (``MADV_DONTNEED``: they stay in
        the page cache and come back on the next touch at the cost of a minor fault). Called after each
        batch of pairs, it keeps the verify task's memory at a batch's pages, not every candidate's: at a
        million records the mapped pages were most of the task's 1 GiB."""
        release_maps(self.chunks)

    def parts(self, position: int) -> PartShingles:
        row = self.row_of[position]
        a, b, c, d = self.bounds[row].tolist()
        v = self.chunks[self.chunk_of[row]]
        return PartShingles(v[a:b], v[b:c], v[c:d])

    def part_sizes(self, positions: np.ndarray, part: int) -> np.ndarray:
        """Shingle counts of part ``part`` (0 prompt, 1 context, 2 answer) of the records at ``positions``."""
        bounds = self.bounds[self.row_of[positions]]
        return bounds[:, part + 1] - bounds[:, part]

    def _gather(self, positions: np.ndarray, part: int, dtype: np.dtype,
                tags: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Every shingle of part ``part`` of the records at ``positions``, many records' sets in one flat
        array of ``dtype`` gathered chunk by chunk, and each record's offsets in it (``indptr``, as a CSR
        matrix's); with ``tags`` (uint64, one per record), each hash or'ed with its record's tag."""
        rows = self.row_of[positions]
        starts, ends = self.bounds[rows, part], self.bounds[rows, part + 1]
        lengths = ends - starts
        indptr = np.zeros(lengths.size + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        # each shingle's place in its chunk: its record's start plus its index among the record's shingles
        source = np.arange(int(indptr[-1]), dtype=np.int64)
        source += np.repeat(starts - indptr[:-1], lengths)
        values = np.empty(source.size, dtype=dtype) if tags is None else np.repeat(tags, lengths)
        row_chunks = self.chunk_of[rows]
        chunks = np.flatnonzero(np.bincount(row_chunks, minlength=len(self.chunks)))
        chunk_of = np.repeat(row_chunks, lengths) if chunks.size > 1 else None
        for chunk in chunks.tolist():
            # a plain view of a mapped file: indexing an np.memmap wraps every result in a memmap (slower)
            data = self.chunks[chunk].view(np.ndarray)
            at = slice(None) if chunk_of is None else chunk_of == chunk
            if tags is None:
                values[at] = data[source[at]]
            else:
                values[at] |= data[source[at]]
        return values, indptr

    def tagged_part(self, positions: np.ndarray, part: int, tags: np.ndarray | None = None) -> np.ndarray:
        """Every shingle of part ``part`` of the records at ``positions``, many records' sets in one flat
        array; with ``tags`` (uint64, one per record), each hash or'ed with its record's tag
        (``tag << 32 | hash`` keys, for 32-bit hashes)."""
        dtype = self.chunks[0].dtype if self.chunks else np.uint32
        return self._gather(positions, part, dtype, tags)[0]

    def part_rows(self, positions: np.ndarray, part: int):
        """Part ``part`` of the records at ``positions`` as the rows of a sparse 0/1 matrix (CSR, one column
        per 32-bit hash value): a record's hashes are sorted and unique, so its indices are canonical."""
        from scipy.sparse import csr_array

        indices, indptr = self._gather(positions, part, np.dtype(np.int64))
        return csr_array((np.ones(indices.size, dtype=np.int8), indices, indptr), shape=(len(positions), 1 << 32))


def shared_counts(store: PartShingleStore, pairs: np.ndarray, part: int) -> np.ndarray:
    """Per pair, how many shingles of part ``part`` its two records share.

    32-bit hashes: the element-wise product of two sparse matrices, row i of each one record of pair i;
    scipy merges each pair's two sorted rows in compiled code (1.7x faster than the sort below, 60k
    candidate pairs). Otherwise (64-bit word n-gram hashes, which a sparse matrix's int64 column index
    cannot hold in order), or should a row not be sorted and unique (scipy would then allocate per
    column): both records' shingles, tagged with the pair's index, sorted together; a pair's shared
    shingles are the equal neighbours (each record's shingles are unique)."""
    if not len(pairs):
        return np.zeros(0, dtype=np.int64)
    if store.chunks and store.chunks[0].dtype == np.uint32:
        # each record's shingles gathered once (a record is in about two pairs of a batch: the pairs
        # chain a group's records), then the pairs' rows selected in compiled code
        records = sorted_unique(pairs)
        rows = store.part_rows(records, part)
        if rows.has_canonical_format:
            row_a, row_b = np.searchsorted(records, pairs[:, 0]), np.searchsorted(records, pairs[:, 1])
            return np.diff(rows[row_a].multiply(rows[row_b]).indptr).astype(np.int64)
        tags = np.arange(len(pairs), dtype=np.uint64) << np.uint64(32)  # one sort of (pair << 32 | hash) keys
        keys = np.concatenate([store.tagged_part(pairs[:, 0], part, tags), store.tagged_part(pairs[:, 1], part, tags)])
        keys.sort(kind="stable")  # two sorted runs (a record's hashes are stored sorted): merged in linear time
        shared = (keys[1:][keys[1:] == keys[:-1]] >> np.uint64(32)).astype(np.int64)
    else:  # 64-bit word n-gram hashes: sorted by (pair, hash)
        pair = np.arange(len(pairs), dtype=np.uint64)
        owner = np.concatenate([np.repeat(pair, store.part_sizes(pairs[:, 0], part)),
                                np.repeat(pair, store.part_sizes(pairs[:, 1], part))])
        values = np.concatenate([store.tagged_part(pairs[:, 0], part), store.tagged_part(pairs[:, 1], part)])
        order = np.lexsort((values, owner))
        owner, values = owner[order], values[order]
        shared = owner[1:][(owner[1:] == owner[:-1]) & (values[1:] == values[:-1])].astype(np.int64)
    return np.bincount(shared, minlength=len(pairs))


def part_jaccard_reaches(store: PartShingleStore, pairs: np.ndarray, part: int, floor: float) -> np.ndarray:
    """Per pair, whether the Jaccard of part ``part`` reaches ``floor``: ``jaccard_reaching`` of many
    pairs at once (``shared_counts``)."""
    size_a, size_b = store.part_sizes(pairs[:, 0], part), store.part_sizes(pairs[:, 1], part)
    reaches = np.zeros(len(pairs), dtype=bool)
    # the size bound of jaccard_reaching; two empty parts are equal (Jaccard 1)
    idx = np.flatnonzero(np.minimum(size_a, size_b) >= floor * np.maximum(size_a, size_b))
    if not idx.size:
        return reaches
    inter = shared_counts(store, pairs[idx], part)
    union = size_a[idx] + size_b[idx] - inter
    jac = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
    reaches[idx] = jac >= floor
    return reaches


def verify_pairs(store: PartShingleStore, pairs: np.ndarray, near: NearDedupConfig) -> np.ndarray:
    """Per candidate pair, whether ``near_duplicate_similarity`` finds the two records near duplicates
    (same rule, many pairs at once: per pair numpy calls were most of the plan's time). A part is
    compared only for the pairs whose earlier parts reached ``min_jaccard``."""
    ok = np.ones(len(pairs), dtype=bool)
    parts = (0, 1, 2) if near.same_prompt_different_answer != "drop" else (0, 1)
    for part in parts:
        idx = np.flatnonzero(ok)
        ok[idx] = part_jaccard_reaches(store, pairs[idx], part, near.min_jaccard)
    return ok


# pairs per thread below which a batch is verified on the calling thread (a thread's hand-off costs more)
MIN_PAIRS_PER_THREAD = 2_000


def verify_threads() -> int:
    """Threads to verify pairs on: the cores this process may use, at most 4 (the sorts, gathers and
    ufuncs of ``part_jaccard_reaches`` release the GIL; its Python between them does not)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(4, cores))


def verify_pairs_in_threads(store: PartShingleStore, pairs: np.ndarray, near: NearDedupConfig,
                            pool: Executor | None, threads: int) -> np.ndarray:
    """``verify_pairs``, the pairs cut into ``threads`` slices verified at once on ``pool``: a pair's
    answer depends on its two records only, so the answers are the same. The plan is a single task:
    without this, all but one of a machine's cores wait during its longest part."""
    if pool is None or threads < 2 or len(pairs) < 2 * MIN_PAIRS_PER_THREAD:
        return verify_pairs(store, pairs, near)
    bounds = np.linspace(0, len(pairs), min(threads, len(pairs) // MIN_PAIRS_PER_THREAD) + 1).astype(np.int64)
    futures = [pool.submit(verify_pairs, store, pairs[a:b], near) for a, b in zip(bounds[:-1], bounds[1:])]
    return np.concatenate([f.result() for f in futures])


def components(n: int, edges: np.ndarray) -> np.ndarray:
    """Per node 0..n-1, the smallest node of its connected component over ``edges`` (E, 2)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if not len(edges):
        return np.arange(n, dtype=np.int64)
    graph = coo_matrix((np.ones(len(edges), dtype=np.int8), (edges[:, 0], edges[:, 1])), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    smallest = np.full(labels.max() + 1, n, dtype=np.int64)
    np.minimum.at(smallest, labels, np.arange(n, dtype=np.int64))
    return smallest[labels]


@dataclass
class NearClusters:
    """Near-duplicate groups of verified candidate pairs; ``checked``/``rejected`` count the pairs
    compared (a pair whose records an earlier batch already joined is not compared)."""

    near: NearDedupConfig
    checked: int = 0
    rejected: int = 0
    batch_pairs: int = 20_000
    shingles_folder: str | Path | None = None  # the filter stage's part shingles; None: shingle the texts here
    threads: int = field(default_factory=verify_threads)  # a batch's pairs are verified on this many threads
    edges: list[np.ndarray] | None = None  # the verified pairs, collected by verified_edges

    def verified_edges(self, table: PlanTable, pairs: np.ndarray) -> np.ndarray:
        """(E, 2) the candidate pairs this verified as near duplicates, but for those whose records the
        verified pairs of earlier batches already joined (skipped: they could not change a group). The
        connected components over these edges are those over every near-duplicate candidate pair."""
        self.edges = []
        self.roots(table, pairs)
        return np.concatenate(self.edges) if self.edges else np.zeros((0, 2), dtype=np.int64)

    def roots(self, table: PlanTable, pairs: np.ndarray) -> np.ndarray:
        """Per survivor position, the position of its group's survivor (itself where it is not a near
        duplicate): the smallest position of its connected component over the verified pairs.

        Pairs are verified a batch at a time, and a pair whose records the verified pairs of earlier
        batches already join is skipped: it could not change a group. So the groups do not depend
        on the batches, only the counts of pairs checked do. After each batch only the groups its
        pairs join are merged (components over their survivors), not the whole graph again: that
        was a third of a million-record plan."""
        n = len(table)
        root = np.arange(n, dtype=np.int64)
        if not len(pairs):
            return root
        positions = sorted_unique(pairs)
        if self.shingles_folder is not None:
            store = PartShingleStore.from_files(table, positions, self.shingles_folder, self.near)
        else:
            store = PartShingleStore.build(table, positions, self.near)
        relabel = np.arange(n, dtype=np.int64)  # the identity, but for the survivors a batch merges
        with ThreadPoolExecutor(self.threads) if self.threads > 1 else nullcontext() as pool:
            for start in range(0, len(pairs), self.batch_pairs):
                root = self._merge_batch(store, pairs[start:start + self.batch_pairs], root, relabel, pool)
                store.release()
        return root

    def _merge_batch(self, store: PartShingleStore, batch: np.ndarray, root: np.ndarray, relabel: np.ndarray,
                     pool: Executor | None) -> np.ndarray:
        """``root`` after verifying ``batch`` (its pairs not already joined) and merging the groups it joins."""
        batch = batch[root[batch[:, 0]] != root[batch[:, 1]]]
        ok = verify_pairs_in_threads(store, batch, self.near, pool, self.threads)
        self.checked += len(batch)
        self.rejected += int((~ok).sum())
        if ok.any():
            if self.edges is not None:
                self.edges.append(batch[ok])
            edges = root[batch[ok]]  # between the groups' survivors
            merged = sorted_unique(edges)
            # merged is sorted: the smallest index of a component is its smallest survivor
            relabel[merged] = merged[components(len(merged), np.searchsorted(merged, edges))]
            root = relabel[root]
            relabel[merged] = merged
        return root


@dataclass
class Plan:
    """What the plan drops, as arrays of survivor positions: ``dropped[i]`` at ``stages[i]`` (exact or
    near), a duplicate of ``duplicate_of[i]``, in the group of ``cluster[i]`` (its survivor)."""

    record_ids: pa.Array
    dropped: np.ndarray
    exact: np.ndarray  # bool per dropped record: exact_dedup, else near_dedup
    duplicate_of: np.ndarray
    cluster: np.ndarray

    @classmethod
    def of(cls, table: PlanTable, near_root: np.ndarray | None = None) -> Plan:
        """Exact duplicates point at their content-hash survivor; near duplicates at their group's survivor;
        an exact duplicate of a near-dropped record joins that record's group."""
        positions = np.arange(len(table), dtype=np.int64)
        root = positions if near_root is None else near_root
        exact = table.exact_of != positions  # near roots only join exact survivors, so never both
        dropped = exact | (root != positions)
        return cls(table.record_ids, positions[dropped], exact[dropped],
                   np.where(exact, table.exact_of, root)[dropped], root[table.exact_of][dropped])

    def to_table(self) -> pa.Table:
        take = self.record_ids.take
        return pa.table({"record_id": take(pa.array(self.dropped)),
                         "stage": pa.array(np.where(self.exact, "exact_dedup", "near_dedup")).cast(pa.string()),
                         "duplicate_of": take(pa.array(self.duplicate_of)),
                         "cluster_id": take(pa.array(self.cluster))})

    def entries(self) -> dict[str, PlanEntry]:
        """The plan as {record_id: PlanEntry} (for reading and tests; the step writes the arrays)."""
        return {r["record_id"]: PlanEntry(r["stage"], r["duplicate_of"], r["cluster_id"])
                for r in self.to_table().to_pylist()}

    def write(self, path: str | Path) -> None:
        import pyarrow.parquet as pq

        pq.write_table(self.to_table(), path)


def decide(records_folder: str | Path, buckets_folder: str | Path | None, exact: bool,
           near: NearDedupConfig | None, shingles_folder: str | Path | None = None) -> tuple[Plan, NearClusters | None]:
    """The whole plan: exact duplicates, then near-duplicate groups (exact duplicates standing for
    their survivors). ``shingles_folder``: the part shingles the filter stage wrote; without it the
    candidates' texts are read from the shards and shingled here (the same shingles)."""
    plan, clusters, _ = decide_with_table(records_folder, buckets_folder, exact, near, shingles_folder)
    return plan, clusters


def decide_with_table(records_folder: str | Path, buckets_folder: str | Path | None, exact: bool,
                      near: NearDedupConfig | None, shingles_folder: str | Path | None = None,
                      threads: int | None = None) -> tuple[Plan, NearClusters | None, PlanTable]:
    """``decide``, and the table it decided over (where each record sits in the shards). ``threads``:
    at most this many threads verify pairs (None: one per core this process may use, at most 4)."""
    table = PlanTable.load(records_folder, exact=exact)
    if near is None or not buckets_folder:
        return Plan.of(table), None, table
    clusters = NearClusters(near, shingles_folder=shingles_folder,
                            threads=min(threads, verify_threads()) if threads else verify_threads())
    roots = clusters.roots(table, candidate_pairs(table, read_band_groups(buckets_folder)))
    return Plan.of(table, roots), clusters, table


def edges_path(edges_folder: str | Path, rank: int) -> Path:
    return Path(edges_folder) / f"{rank:05d}.npy"


def read_verified_edges(edges_folder: str | Path, tasks: int) -> np.ndarray:
    """The edges of verify tasks 0 .. ``tasks`` - 1, as one (E, 2) array of survivor positions (files of other
    ranks, say from an earlier run with more workers, and a cut-off task's ``.partial.npy`` are not read)."""
    parts = []
    for rank in range(tasks):
        path = edges_path(edges_folder, rank)
        if not path.is_file():
            raise JcurateError(f"dedup plan: {path} is missing: near-dup verify task {rank} of {tasks} did not "
                               "finish; run again (or with --fresh)")
        parts.append(np.load(path))
    return np.concatenate(parts) if parts else np.zeros((0, 2), dtype=np.int64)


def decide_from_edges(records_folder: str | Path, edges_folder: str | Path | None, exact: bool,
                      tasks: int = 1, table_folder: str | Path | None = None) -> tuple[Plan, PlanTable]:
    """The plan from the verify tasks' edges: the groups are the connected components over every task's
    verified pairs (each task verified its share of the same candidate pairs), the survivor of a group
    its smallest position: what ``decide`` finds in one process. ``table_folder``: the table the
    ``PlanTableWriter`` saved (else built here)."""
    table = PlanTable.open_or_load(table_folder, records_folder, exact)
    if edges_folder is None:
        return Plan.of(table), table
    return Plan.of(table, components(len(table), read_verified_edges(edges_folder, tasks))), table


class PlanTableWriter(PipelineStep):
    """The records' survivor order (``PlanTable``) built once, by task 0 of the stage it ends (the
    ``minhash-buckets`` stage: its other tasks sort their bands meanwhile), and saved for every near-verify task
    and the dedup plan, which map it. Each of them built its own before: W + 1 DuckDB sorts of every record's
    id and hash, each holding the table in its own memory."""

    name = "🗂 plan table"

    def __init__(self, records_folder: str, table_folder: str, exact: bool):
        super().__init__()
        self.records_folder, self.table_folder, self.exact = records_folder, table_folder, exact

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        yield from data or ()
        if rank == 0:
            with self.track_time():
                table = PlanTable.load(self.records_folder, exact=self.exact)
                table.save(self.table_folder)
                self.stat_update("records", value=len(table))


def pair_shard_path(pairs_folder: str | Path, owner: int, rank: int) -> Path:
    """Where near-pairs task ``rank`` writes the pair keys that verify task ``owner`` checks."""
    return Path(pairs_folder) / f"{owner:05d}" / f"{rank:05d}.npy"


def read_pair_shards(pairs_folder: str | Path, owner: int, pair_tasks: int, n: int) -> np.ndarray:
    """Verify task ``owner``'s candidate pairs from every near-pairs task's shard for it: each pair once, in
    key order: the pairs of ``candidate_pairs`` whose first record lies in the owner's blocks (``share_blocks``)."""
    parts = []
    for rank in range(pair_tasks):
        path = pair_shard_path(pairs_folder, owner, rank)
        if not path.is_file():
            raise JcurateError(f"near-dup verify: {path} is missing: near-dup pairs task {rank} of {pair_tasks} did "
                               "not finish; run again (or with --fresh)")
        parts.append(np.load(path))
    return pairs_of_keys(sorted_unique(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64), n)


class NearPairSharder(PipelineStep):
    """Task ``rank`` of ``world_size``: the candidate pairs of bands ``rank``, ``rank`` + ``world_size``, ...
    (``band_pairs``), each kept once and written to the share of the verify task that owns it
    (``share_blocks``): ``pairs_folder/<owner>/<rank>.npy``, sorted pair keys. Every verify task used to read
    and sort every band to find its own pairs (W times the work with W tasks: at a million records with eight
    tasks, 1.9 of each verify task's 4.7 CPU seconds); here each band is read by one task (0.4 s each), and a
    verify task reads only its keys."""

    name = "🔗 near-dup pairs"

    def __init__(self, buckets_folder: str, pairs_folder: str, table_folder: str, verify_tasks: int):
        super().__init__()
        self.buckets_folder, self.pairs_folder, self.table_folder = buckets_folder, pairs_folder, table_folder
        self.verify_tasks = verify_tasks

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        with self.track_time():
            table = PlanTable.open(self.table_folder, ids=False)
            n = len(table)
            owners = [PairKeys() for _ in range(self.verify_tasks)]
            for group, task, doc_idx in read_band_groups(self.buckets_folder, part=(rank, world_size)):
                a, b = band_pairs(table, group, task, doc_idx)
                keys = a * n + b
                if self.verify_tasks == 1:
                    owners[0].add(keys)
                    continue
                owner = share_blocks(a, n, self.verify_tasks)
                for o, held in enumerate(owners):
                    held.add(keys[owner == o])
            for o, held in enumerate(owners):
                keys = held.sorted()
                self.stat_update("pair_keys", value=int(keys.size))
                path = pair_shard_path(self.pairs_folder, o, rank)
                path.parent.mkdir(parents=True, exist_ok=True)
                partial = path.with_suffix(".partial.npy")
                np.save(partial, keys)
                os.replace(partial, path)  # a task cut off leaves no shard that looks whole
        yield from ()


class NearPairVerifier(PipelineStep):
    """Task ``rank`` of ``world_size``: the near-duplicate candidate pairs whose first record lies in its
    blocks of positions (``share_blocks``), read from the ``NearPairSharder`` tasks' shards in ``pairs_folder``
    and verified against the part shingles the filter tasks wrote; writes the verified pairs to
    ``edges_folder/RANK.npy``. The shares are disjoint and cover every pair, so every pair is verified once, by
    one task, however many bands it was found in. ``threads``: verify a batch's pairs on this many threads (at
    most this process's cores; the pipeline gives each task the cores the other tasks leave idle)."""

    name = "🔗 near-dup verify"

    def __init__(self, records_folder: str, pairs_folder: str, pair_tasks: int, edges_folder: str, exact: bool,
                 near: NearDedupConfig, shingles_folder: str | None = None, threads: int = 1,
                 table_folder: str | None = None):
        super().__init__()
        self.records_folder, self.pairs_folder, self.pair_tasks = records_folder, pairs_folder, pair_tasks
        self.edges_folder, self.exact, self.near = edges_folder, exact, near
        self.shingles_folder, self.threads = shingles_folder, threads
        self.table_folder = table_folder  # the PlanTableWriter's table; None: each task builds its own

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        with self.track_time():
            table = PlanTable.open_or_load(self.table_folder, self.records_folder, self.exact, ids=False)
            pairs = read_pair_shards(self.pairs_folder, rank, self.pair_tasks, len(table))
            clusters = NearClusters(self.near, shingles_folder=self.shingles_folder,
                                    threads=min(self.threads, verify_threads()))
            edges = clusters.verified_edges(table, pairs)
            self.stat_update("candidate_pairs", value=len(pairs))
            self.stat_update("near_pairs_checked", value=clusters.checked)
            self.stat_update("near_pairs_rejected", value=clusters.rejected)
            logger.info(f"near-dup verify {rank}/{world_size}: {len(pairs)} candidate pairs, {clusters.checked} "
                        f"checked, {clusters.rejected} below Jaccard {self.near.min_jaccard}")
            path = edges_path(self.edges_folder, rank)
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(".partial.npy")
            np.save(partial, edges)
            os.replace(partial, path)  # a task cut off leaves no edges file that looks whole
        yield from ()


DUPLICATE_REASONS = {"exact_dedup": "exact_duplicate", "near_dedup": "near_duplicate"}


def duplicates_path(duplicates_folder: str | Path, shard: str | Path) -> Path:
    """The plan's duplicates in one filtered shard (``RANK.parquet``): see ``write_duplicate_lists``."""
    return Path(duplicates_folder) / Path(shard).name


def write_duplicate_lists(table: PlanTable, plan: Plan, duplicates_folder: str | Path) -> dict[str, int]:
    """Per filtered shard, the rows the plan drops, sorted: ``row`` (in the shard), ``stage``
    (``exact_dedup``/``near_dedup``) and ``value`` (the record it duplicates). The dedup-decont
    stage's reader (``curate.running.outputs.IntermediateReader``) copies those rows to ``OUT/dropped`` in bulk
    and turns only the others into documents: a document per duplicate, only to drop it and write it
    back, was most of that stage's time where most records are duplicates. Returns the rows per stage."""
    import pyarrow.parquet as pq

    ranks, rows = table.task_rows(plan.dropped)
    order = np.lexsort((rows, ranks))  # by (task, row)
    ranks, rows, exact, duplicate_of = ranks[order], rows[order], plan.exact[order], plan.duplicate_of[order]
    Path(duplicates_folder).mkdir(parents=True, exist_ok=True)
    stages = np.where(exact, "exact_dedup", "near_dedup")
    for shard in table.shards:
        rank = int(Path(shard).name.removesuffix(".parquet"))
        lo, hi = np.searchsorted(ranks, [rank, rank + 1])
        pq.write_table(pa.table({"row": pa.array(rows[lo:hi], pa.int64()),
                                 "stage": pa.array(stages[lo:hi], pa.string()),
                                 "value": table.record_ids.take(pa.array(duplicate_of[lo:hi]))}),
                       duplicates_path(duplicates_folder, shard))
    return {"exact_dedup": int(exact.sum()), "near_dedup": int((~exact).sum())}


class DedupPlan(PipelineStep):
    """Single task: the exact duplicates, and the near-duplicate groups joined from the verified pairs the
    ``NearPairVerifier`` tasks wrote (``edges_folder``; None without near dedup), each group's survivor
    decided (``decide_from_edges``); writes ``plan.parquet`` and, with ``duplicates_folder``, each filtered
    shard's duplicates (``write_duplicate_lists``). It holds the records' order (ids and positions) and the
    verified pairs: no text, no shingles."""

    name = "🧮 dedup plan"

    def __init__(self, records_folder: str, plan_path: str, exact: bool, edges_folder: str | None = None,
                 verify_tasks: int = 1, duplicates_folder: str | None = None, table_folder: str | None = None):
        super().__init__()
        self.table_folder = table_folder  # the PlanTableWriter's table (with near dedup); None: built here
        self.records_folder = records_folder
        self.plan_path = plan_path
        self.exact = exact
        self.edges_folder = edges_folder
        self.verify_tasks = verify_tasks  # the near-verify stage's task count: its edges files are read by rank
        self.duplicates_folder = duplicates_folder

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        if world_size != 1:
            raise ValueError("DedupPlan runs as a single task")
        Path(self.plan_path).parent.mkdir(parents=True, exist_ok=True)
        with self.track_time():
            plan, table = decide_from_edges(self.records_folder, self.edges_folder, self.exact, self.verify_tasks,
                                            self.table_folder)
            self.stat_update("exact_duplicates", value=int(plan.exact.sum()))
            plan.write(self.plan_path)
            if self.duplicates_folder:
                for stage, n in write_duplicate_lists(table, plan, self.duplicates_folder).items():
                    self.stat_update(f"dropped_{stage}", value=n)
        yield from ()  # a pipeline step is a generator; this one only writes the plan
