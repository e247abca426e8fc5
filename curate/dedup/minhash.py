"""MinHash signatures for near-duplicate candidates: one permutation, vectorised in numpy.

datatrove's ``MinhashDedupSignature`` hashes every n-gram string with xxhash in Python and then
evaluates K = ``num_buckets x hashes_per_bucket`` hash functions on every n-gram (``(a*x + b) mod p``
over an n-grams x K array): 2.3 s per 10,000 records of ~300 characters, most of the filter stage,
and the K-column arithmetic, not the string hashing, is most of it. This module computes a
one-permutation MinHash (Li, Owen & Zhang 2012) with rotation densification (Shrivastava & Li 2014):
one 64-bit hash per n-gram, whose high bits choose one of K bins and whose low 32 bits are its value;
each bin keeps its minimum; an empty bin takes the value of the next non-empty bin to its right
(circularly) plus ``2**32`` per step. Two texts agree in a bin with probability equal to the Jaccard
similarity of their n-gram sets, as with K independent permutations, so datatrove's LSH banding
(``MinhashDedupBuckets``, the same bucket files) finds the same kind of candidates.

It is not datatrove's signature (a stated difference): which borderline pairs become LSH candidates
changes at random, as it would with another seed. Every candidate is verified by its true n-gram
Jaccard in the dedup plan, so a decision changes only where a pair near the threshold was a
candidate under one hashing and not the other; measured on the audit benchmark and a 60k-record run
in ``benchmarks/speed/split_file_scaling.py`` / the issue notes.

Character n-grams (the default) are hashed per window in numpy over a whole batch of texts; word
n-grams (``tokens: fugashi``) are hashed per n-gram string by datatrove's own function and binned here.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache

import numpy as np
from datatrove.data import DocumentsPipeline
from datatrove.pipeline.dedup.minhash import MinhashDedupBuckets, MinhashDedupSignature
from datatrove.utils.batching import batched
from datatrove.utils.text import PUNCTUATION
from datatrove.utils.typeshelper import StatHints

from curate.text.char_ngrams import code_windows, coefficients
from curate.text.tokenizers import CharTokenizer

# what datatrove's simplify_text (lower case, punctuation to spaces, our NORM: numbers and
# diacritics kept) followed by the character tokenizer (spaces dropped) leaves: lower case, with
# punctuation and every whitespace character deleted. ``simplified_chars`` is tested equal to it.
WHITESPACE = ("\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
              "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")  # every character str.isspace() accepts
_DROP = re.compile("[" + re.escape(PUNCTUATION + WHITESPACE) + "]+")

EMPTY = np.uint64(1 << 63)  # a bin no n-gram fell into (values are < 2**32 before densification)
_STEP = np.uint64(1 << 32)  # what densification adds per bin it moves
_MIX1, _MIX2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def simplified_chars(text: str) -> str:
    """The characters MinHash shingles: datatrove's ``simplify_text`` with our normalisation,
    spaces dropped, in one regex pass."""
    return _DROP.sub("", text.lower())


_SEPARATOR = "\U0010fffe"  # a noncharacter: not punctuation, not a space, unchanged by lower()
_DROPPED_CODES = np.zeros(0x110000, dtype=bool)  # per code point: whether simplified_chars deletes it
_DROPPED_CODES[[ord(c) for c in PUNCTUATION + WHITESPACE]] = True
_SEPARATOR_CODE = ord(_SEPARATOR)


def simplified_codes(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """``simplified_chars`` of many texts as their concatenated code points (uint64) and the length of
    each: ``lower()`` on the joined texts, then the deleted characters dropped by a lookup table over
    every code point (the regex over the same character class was a third of the shingling time).

    >>> texts = ["Ａ B、c", "", "ダイヤ！", "ΟΔΟΣ x"]
    >>> codes, lengths = simplified_codes(texts)
    >>> "".join(map(chr, codes)) == "".join(simplified_chars(t) for t in texts), lengths.tolist()
    (True, [3, 0, 3, 5])
    """
    joined = _SEPARATOR.join(texts)
    if joined.count(_SEPARATOR) != max(len(texts) - 1, 0):  # a text holds the separator itself
        simplified = [simplified_chars(t) for t in texts]
        lengths = np.fromiter(map(len, simplified), dtype=np.int64, count=len(texts))
        return np.frombuffer("".join(simplified).encode("utf-32-le"), dtype=np.uint32).astype(np.uint64), lengths
    if not texts:
        return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int64)
    codes = np.frombuffer(joined.lower().encode("utf-32-le"), dtype=np.uint32)
    codes = codes[~_DROPPED_CODES[codes]]
    separator = codes == _SEPARATOR_CODE
    lengths = np.diff(np.concatenate([[-1], np.flatnonzero(separator), [codes.size]])) - 1
    return codes[~separator].astype(np.uint64), lengths.astype(np.int64)


def mix64(h: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, in place: every output bit depends on every input bit."""
    with np.errstate(over="ignore"):
        h ^= h >> np.uint64(30)
        h *= _MIX1
        h ^= h >> np.uint64(27)
        h *= _MIX2
        h ^= h >> np.uint64(31)
    return h


@lru_cache(maxsize=8)
def _coefficients(seed: int, n: int) -> np.ndarray:
    return coefficients(seed, n)  # a fresh generator costs more than signing one short text


def char_ngram_hashes(texts: list[str], n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The hash of every character n-gram of every text (after ``simplified_chars``), concatenated,
    and the number of n-grams per text (0 below n characters, as datatrove's ``ngrams`` gives none)."""
    codes, lengths = simplified_codes(texts)
    hashes, counts = code_windows(codes, lengths, n, _coefficients(seed, n))
    return mix64(hashes), counts


def word_ngram_hashes(texts: list[str], step: MinhashDedupSignature) -> tuple[np.ndarray, np.ndarray]:
    """The same for word n-grams: datatrove's n-gram strings and hash function, mixed."""
    per_text = [np.asarray(step.get_shingles(t), dtype=np.uint64).reshape(-1) for t in texts]
    counts = np.fromiter((a.size for a in per_text), dtype=np.int64, count=len(per_text))
    hashes = np.concatenate(per_text) if per_text else np.zeros(0, dtype=np.uint64)
    return mix64(hashes.copy()), counts


def one_permutation_signatures(hashes: np.ndarray, counts: np.ndarray, num_hashes: int) -> np.ndarray:
    """One row of ``num_hashes`` values per text (rows of texts without n-grams are meaningless).

    ``hashes``: every n-gram hash of every text, text after text; ``counts``: how many per text."""
    docs = counts.size
    signatures = np.full(docs * num_hashes, EMPTY, dtype=np.uint64)
    if hashes.size:
        owner = np.repeat(np.arange(docs, dtype=np.int64), counts)
        with np.errstate(over="ignore"):
            bins = ((hashes >> np.uint64(32)) * np.uint64(num_hashes)) >> np.uint64(32)
        np.minimum.at(signatures, owner * num_hashes + bins.astype(np.int64), hashes & np.uint64(0xFFFFFFFF))
    signatures = signatures.reshape(docs, num_hashes)
    empty = signatures == EMPTY
    if empty.any():
        # rotation: the first non-empty bin at or after each bin, going round
        positions = np.arange(2 * num_hashes)
        filled = np.concatenate([~empty, ~empty], axis=1)
        candidate = np.where(filled, positions, 2 * num_hashes)
        nearest = np.minimum.accumulate(candidate[:, ::-1], axis=1)[:, ::-1][:, :num_hashes]
        nearest = np.minimum(nearest, 2 * num_hashes - 1)  # texts without n-grams: any index
        steps = (nearest - positions[:num_hashes]).astype(np.uint64)
        moved = np.take_along_axis(signatures, nearest % num_hashes, axis=1) + steps * _STEP
        signatures = np.where(empty, moved, signatures)
    return signatures


class OnePermutationMinhashSignature(MinhashDedupSignature):
    """datatrove's first MinHash stage with the signatures of this module: same inputs (the
    documents of a task), same bucket files (``bucket_XXX/RANK.minhash.sig``, sorted), so
    ``MinhashDedupBuckets`` and every executor work unchanged."""

    name = "🎯 MinHash signatures (one permutation)"
    batch_size = 1024

    def signatures(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(signatures, whether each text has one): texts with fewer than n tokens have none."""
        if isinstance(self.word_tokenizer, CharTokenizer):
            hashes, counts = char_ngram_hashes(texts, self.config.n_grams, self.config.seed)
        else:
            hashes, counts = word_ngram_hashes(texts, self)
        return one_permutation_signatures(hashes, counts, self.num_hashes), counts > 0

    def _record_dtype(self) -> np.dtype:
        fmt = self.config.hash_config.struct_format  # "Q" (precision 64) or "I"
        return np.dtype([(f"field{i + 1}", f"<{fmt}") for i in range(self.config.hashes_per_bucket)]
                        + [(f"field{self.config.hashes_per_bucket + 1}", "<I")])

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1):
        per_bucket = self.config.hashes_per_bucket
        dtype = self._record_dtype()
        paths = [f"bucket_{bi:03d}/{rank:05d}.minhash.sig" for bi in range(self.config.num_buckets)]
        with self.track_time():
            files = [self.output_folder.open(p, mode="wb") for p in paths]
            doc_idx = 0
            for batch in batched(data, self.batch_size):
                self.stat_update(StatHints.total, value=len(batch))
                signatures, has = self.signatures([doc.text for doc in batch])
                indices = np.arange(doc_idx, doc_idx + len(batch), dtype=np.uint32)[has]
                signatures = signatures[has] & np.uint64(self.config.hash_config.max)
                doc_idx += len(batch)
                for bi, f in enumerate(files):
                    records = np.empty(indices.size, dtype=dtype)
                    for j in range(per_bucket):
                        records[f"field{j + 1}"] = signatures[:, bi * per_bucket + j]
                    records[f"field{per_bucket + 1}"] = indices
                    f.write(records.tobytes())
            for f in files:
                f.close()
            for path in paths:  # datatrove's bucket stage reads each file in sorted order
                with self.output_folder.open(path, mode="rb") as f:
                    records = np.frombuffer(f.read(), dtype=dtype)
                # the order of records.sort(order=dtype.names), which compares structured rows 30x slower
                order = np.lexsort([records[name] for name in reversed(dtype.names)])
                with self.output_folder.open(path, mode="wb") as f:
                    f.write(records[order].tobytes())
        yield from ()  # a pipeline step is a generator; this one only writes signatures


MERGE_RANGE_ROWS = 1_000_000  # rows of a bucket merged at once: ~180 MiB with the sort's copies (measured), and faster
# than one sort of a larger range (1M rows of a band of a 1M-record run: 0.74 s in ranges of 200k, 1.09 s whole)


def range_cuts(firsts: list[np.ndarray], range_rows: int) -> np.ndarray:
    """First-hash values that cut the rows of sorted ``firsts`` (one array per file) into ranges of about
    ``range_rows`` rows: quantiles of an even sample of each file (each file's first hashes are read once, to
    check that they are sorted; the caller releases the pages).
    No cut where every row fits in one range, or where a file is not sorted by its first hash (then the
    ranges would not be slices: one merge of everything, as before; the signature steps write them sorted)."""
    total = sum(f.size for f in firsts)
    if total <= range_rows:
        return np.zeros(0, dtype=firsts[0].dtype if firsts else np.uint64)
    sample = []
    for f in firsts:  # samples in proportion to each file's rows
        if f.size:
            at = np.linspace(0, f.size - 1, min(f.size, max(2, 8192 * f.size // total))).astype(np.int64)
            if (f[1:] < f[:-1]).any():
                return np.zeros(0, dtype=f.dtype)
            sample.append(np.asarray(f[at]))
    ranges = -(-total // range_rows)
    sample = np.sort(np.concatenate(sample))
    cuts = sample[np.arange(1, ranges) * sample.size // ranges]
    return np.unique(cuts)


def release_maps(arrays: list[np.ndarray]) -> None:
    """Drops the pages of the ``np.memmap`` arrays among ``arrays`` from this process's resident set
    (``MADV_DONTNEED``: they stay in the page cache and come back on the next touch at the cost of a minor fault)."""
    import mmap

    for a in arrays:
        mapped = getattr(a, "_mmap", None)
        if mapped is not None and hasattr(mapped, "madvise"):
            mapped.madvise(mmap.MADV_DONTNEED)


def merged_order(hashes: list[np.ndarray], file_index: np.ndarray, doc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The order of the rows by (band signature ``hashes``..., file, doc), datatrove's merge order, and
    per pair of neighbours in it whether their signatures are equal.

    The rows are the signature files one after another, each sorted by (signature, doc) by the
    signature step; so a stable sort by the signature alone keeps, among equal signatures, the files'
    order and each file's order of docs (checked; otherwise every key is sorted). The signature is
    sorted as one byte string (big-endian values compare as the numbers do): a few sorted runs are
    merged (timsort), 10 ms where the sort of all seven keys took 43 ms (a bucket of 240k rows; that
    sort was three quarters of the bucket stage)."""
    keys = np.empty((doc.size, len(hashes)), dtype=hashes[0].dtype.newbyteorder(">"))
    for i, h in enumerate(hashes):
        keys[:, i] = h
    keys = keys.view(f"S{keys.itemsize * len(hashes)}").ravel()
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    same = keys[1:] == keys[:-1]
    files, docs = file_index[order], doc[order]
    tied = same & (files[1:] == files[:-1])
    if (docs[1:][tied] < docs[:-1][tied]).any():  # a file not sorted by (signature, doc)
        order = np.lexsort([doc, file_index, *reversed(hashes)])
        same = np.ones(max(order.size - 1, 0), dtype=bool)
        for h in hashes:
            ordered = h[order]
            same &= ordered[1:] == ordered[:-1]
    return order, same


def bucket_shares(num_buckets: int, world_size: int, task_zero_extra: float = 0.0) -> list[list[int]]:
    """The buckets each of ``world_size`` tasks merges, every bucket once. Task 0 takes fewer when it also has
    other work worth ``task_zero_extra`` buckets (the records' order, ``PlanTableWriter``): the shares even out
    the work, not the bucket counts.

    >>> bucket_shares(6, 2)
    [[0, 1, 2], [3, 4, 5]]
    >>> [len(s) for s in bucket_shares(20, 2, task_zero_extra=4)], [len(s) for s in bucket_shares(20, 4, 4)]
    ([8, 12], [2, 6, 6, 6])
    """
    if world_size <= 1:
        return [list(range(num_buckets))]
    zero = min(num_buckets, max(0, round((num_buckets + task_zero_extra) / world_size - task_zero_extra)))
    rest = range(zero, num_buckets)
    return [list(range(zero))] + [list(rest[i::world_size - 1]) for i in range(world_size - 1)]


class SortedMinhashBuckets(MinhashDedupBuckets):
    """datatrove's second MinHash stage (same ``.dups`` files, byte for byte) with the signature files
    of a bucket merged by one numpy sort instead of a Python heap, record by record (3 s of 60,000
    records' 20 buckets were the heap), and any number of tasks up to one per bucket (``bucket_shares``;
    ``task_zero_extra``: the other work task 0 does, in buckets). Index folders and several tasks per bucket,
    which jcurate does not use, go to datatrove's own code."""

    name = "🎯 MinHash buckets (sorted)"

    def __init__(self, *args, task_zero_extra: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.task_zero_extra = task_zero_extra

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1):
        if self.index_folder is not None or world_size > self.config.num_buckets:
            yield from super().run(data, rank, world_size) or ()  # datatrove's run is a plain function
            return
        with self.track_time():
            # fewer tasks than buckets: each task merges a share of them (20 tasks of 0.04 s each cost the local
            # executor ~1.5 s of start-up and bookkeeping on 2 cores)
            for bucket in bucket_shares(self.config.num_buckets, world_size, self.task_zero_extra)[rank]:
                self.stat_update("total_matches", value=self.merge_bucket(bucket))

    def merge_bucket(self, bucket: int, range_rows: int = MERGE_RANGE_ROWS) -> int:
        """Writes ``BUCKET_00.dups``, the pairs of equal band signatures of one bucket; returns their number.

        The bucket's rows are merged a range of first hash values at a time, about ``range_rows`` rows each: every
        signature file is sorted by its signature, so a range is one slice of each file (``searchsorted`` on the
        first hash), equal signatures fall in one range, and the ranges in order write the file one merge of
        everything writes, byte for byte. So the memory is a range's rows, not the bucket's (~2 GiB at ten
        million records). Local files are mapped; other file systems are read whole."""
        per_bucket = self.config.hashes_per_bucket
        fmt = self.config.hash_config.struct_format
        dtype = np.dtype([(f"field{i + 1}", f"<{fmt}") for i in range(per_bucket)] + [(f"field{per_bucket + 1}", "<I")])
        sig_files = self.input_folder.list_files(subdirectory=f"bucket_{bucket:03d}")
        parts, tasks = [], []
        for path in sig_files:  # datatrove orders equal signatures by the file's place in this list
            parts.append(self._signature_rows(path, dtype))
            tasks.append(int(path.rsplit("/", 1)[-1].removesuffix(".minhash.sig")))
        tasks_of = np.asarray(tasks, dtype=np.uint32)
        cuts = range_cuts([p["field1"] for p in parts], range_rows)
        release_maps(parts)  # the sortedness check touched every page
        bounds = [np.concatenate([[0], np.searchsorted(p["field1"], cuts), [p.size]]) for p in parts]
        total = 0
        with self.output_folder.open(f"{bucket:05d}_00.dups", mode="wb") as out:
            for r in range(len(cuts) + 1):
                slices = [p[b[r]:b[r + 1]] for p, b in zip(parts, bounds)]
                records = np.concatenate(slices) if slices else np.zeros(0, dtype=dtype)  # a copy: off the map
                file_index = np.repeat(np.arange(len(slices)), [s.size for s in slices])
                hashes = [records[f"field{i + 1}"] for i in range(per_bucket)]
                doc = records[f"field{per_bucket + 1}"]
                order, same = merged_order(hashes, file_index, doc)
                task, doc = tasks_of[file_index[order]], doc[order]
                pairs = np.stack([task[:-1][same], doc[:-1][same], task[1:][same], doc[1:][same]], axis=1)
                out.write(pairs.astype("<u4").tobytes())
                total += len(pairs)
                del records, hashes, doc, order, same, task, pairs
                release_maps(parts)
        return total

    def _signature_rows(self, path: str, dtype: np.dtype) -> np.ndarray:
        """One signature file's rows: mapped where the folder is local (only the pages of the range being merged
        are touched), else read whole."""
        if self.input_folder.is_local():
            full = self.input_folder.resolve_paths(path)
            return np.memmap(full, dtype=dtype, mode="r") if os.path.getsize(full) else np.zeros(0, dtype=dtype)
        with self.input_folder.open(path, mode="rb") as f:
            return np.frombuffer(f.read(), dtype=dtype)
