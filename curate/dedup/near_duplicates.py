"""Exact and near-duplicate removal.

Signatures are one-permutation MinHash (``curate.dedup.minhash``, in datatrove's bucket file format) and
LSH buckets are datatrove's own ``MinhashDedupBuckets``. The clustering step is ours, because datatrove's
``MinhashDedupCluster`` keeps whichever record union-by-size makes the root and records no
pointer from a dropped record to the one that was kept. ``curate.dedup.plan.DedupPlan`` applies a
stated rule instead and verifies each LSH candidate pair by its true Jaccard similarity:

* exact duplicates: records with the same ``content_hash`` (normalised text);
* near duplicates: LSH candidate pairs (MinHash of the whole text) whose prompt AND answer
  are both similar: the n-gram Jaccard of the instruction (or the user turns), of the input
  (context passage) and of the output (or the assistant turns) each at least ``min_jaccard``,
  joined transitively into clusters. A program is compared exactly: an answer that is code
  (``curate.text.code_lines.is_program``) is shingled as one fingerprint of its normalised text,
  so two programs are similar only when equal (``np.floor`` vs ``np.ceil`` answers another
  exercise of the same series, which reworded prose never does). A shared context passage alone never makes two records
  duplicates; a similar prompt with a different answer is kept unless
  ``same_prompt_different_answer: drop``;
* survivor of a group: the record of the source listed first in the manifest, then the
  lowest row number (list your preferred sources first).

The plan is one Parquet file (``curate.dedup.plan``), with each filtered shard's duplicates listed; the
last stage's reader copies those rows to ``OUT/dropped/exact_dedup`` and ``OUT/dropped/near_dedup``.
This module holds the rules: shingles, Jaccard, what makes two records near duplicates.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np
from datatrove.pipeline.dedup.minhash import MinhashConfig
from datatrove.utils.hashing import HashConfig, create_hash_func
from datatrove.utils.text import TextNormConfig, ngrams, simplify_text

from curate.config import NearDedupConfig
from curate.dedup.minhash import simplified_codes
from curate.text.char_ngrams import code_windows, coefficients
from curate.text.code_lines import is_program
from curate.text.tokenizers import CharTokenizer

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
    """Sorted unique 32-bit hashes of the character n-grams (punctuation and whitespace dropped).

    The same n-gram sets as ``shingle_hashes`` with the character tokenizer, so the same Jaccard
    up to hash collisions (about one in 10^5 pairs of records moves by one shared n-gram); the
    values differ (a polynomial hash in numpy instead of xxhash per n-gram string, and 4 bytes a
    value), so use it only where no datatrove signature has to match: verifying candidate pairs.

    >>> a, b = char_shingle_hashes("東京は日本の首都です", 5), char_shingle_hashes("東京は日本の首都だ", 5)
    >>> round(jaccard(a, b), 3) == round(jaccard(shingle_hashes("東京は日本の首都です", _CHARS, 5),
    ...                                          shingle_hashes("東京は日本の首都だ", _CHARS, 5)), 3)
    True
    """
    return char_shingle_batch([text], n)[0]


def char_shingle_batch(texts: list[str], n: int, chunk: int = 4096) -> list[np.ndarray]:
    """``char_shingle_hashes`` of many texts: the windows of a chunk of texts hashed in one numpy
    pass (``text_windows``) and made unique per text with one sort of (text, hash) keys, because
    per-text numpy calls were most of the dedup plan's time. A text shorter than n characters is
    one shingle (its characters and length), so two short answers compare as equal or not.

    >>> texts = ["東京は日本の首都です", "", "短い", "東京は日本の首都だ", "短い", "東京は日本の首都だ"]
    >>> out = char_shingle_batch(texts, 5)
    >>> [len(a) for a in out], bool(out[2] == out[4]), out[0].dtype
    ([6, 1, 1, 5, 1, 5], True, dtype('uint32'))
    >>> from curate.text.char_ngrams import char_codes, window_hashes
    >>> from curate.dedup.minhash import simplified_chars
    >>> def one_by_one(t):  # the definition, one text at a time
    ...     return np.unique(window_hashes(char_codes(simplified_chars(t)), 5, _COEFFS) >> np.uint64(32)).astype(np.uint32)
    >>> all(np.array_equal(a, one_by_one(t)) for a, t in zip(out, texts) if len(t) >= 5)
    True
    """
    values, counts = char_shingle_flat(texts, n, chunk)
    bounds = np.concatenate([[0], np.cumsum(counts)])
    return [values[bounds[i]:bounds[i + 1]] for i in range(len(texts))]


def char_shingle_flat(texts: list[str], n: int, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """``char_shingle_batch`` as one array of every text's shingles, text after text, and the number
    per text (no array per text: what the filter stage writes to disk)."""
    values, counts = [], []
    for start in range(0, len(texts), chunk):
        codes, lengths = simplified_codes(texts[start:start + chunk])
        hashes, windows = code_windows(codes, lengths, n, _COEFFS)
        owners = np.repeat(np.arange(lengths.size, dtype=np.uint64), windows)
        short = np.flatnonzero(lengths < n)
        if short.size:  # one shingle each: the hash of all its characters (zero-padded to n), plus its length
            starts = np.cumsum(lengths) - lengths
            padded = np.zeros((short.size, n), dtype=np.uint64)
            for row, i in enumerate(short.tolist()):
                padded[row, :lengths[i]] = codes[starts[i]:starts[i] + lengths[i]]
            with np.errstate(over="ignore"):
                whole = (padded * _COEFFS[:n]).sum(axis=1) + lengths[short].astype(np.uint64)
            owners = np.concatenate([owners, short.astype(np.uint64)])
            hashes = np.concatenate([hashes, whole])
        keys = (owners << np.uint64(32)) | (hashes >> np.uint64(32))
        keys.sort()  # then unique: np.unique's hash table was slower than a sort here
        keys = keys[np.concatenate([[True], keys[1:] != keys[:-1]])] if keys.size else keys
        values.append((keys & np.uint64(0xFFFFFFFF)).astype(np.uint32))
        counts.append(np.bincount((keys >> np.uint64(32)).astype(np.int64), minlength=lengths.size))
    if not values:
        return np.zeros(0, dtype=np.uint32), np.zeros(0, dtype=np.int64)
    return np.concatenate(values), np.concatenate(counts).astype(np.int64)


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
        output = output or ""
        return cls(instruction or "", input_ or "", program_fingerprint(output) if is_program(output) else output)


def program_fingerprint(code: str, width: int = 8) -> str:
    """A program as ``width`` CJK characters drawn from a hash of its whitespace-normalised text: shingled,
    equal programs share every shingle and different ones none (any n-gram size up to ``width``).

    >>> program_fingerprint("x = 1\\nprint(x)") == program_fingerprint("x = 1\\n\\nprint(x)  ")
    True
    >>> program_fingerprint("np.floor(x)") == program_fingerprint("np.ceil(x)")
    False
    """
    digest = hashlib.blake2b(" ".join(code.split()).encode("utf-8"), digest_size=2 * width).digest()
    return "".join(chr(0x4E00 + int.from_bytes(digest[2 * i:2 * i + 2], "big") % 20000) for i in range(width))


@dataclass(frozen=True)
class PartShingles:
    prompt: np.ndarray
    context: np.ndarray
    answer: np.ndarray

    @classmethod
    def of(cls, parts: RecordParts, tokenizer, n: int) -> PartShingles:
        texts = (parts.prompt, parts.context, parts.answer)
        if isinstance(tokenizer, CharTokenizer):
            return cls(*char_shingle_batch(list(texts), n))
        return cls(*(shingle_hashes(t, tokenizer, n) for t in texts))


def jaccard_reaching(a: np.ndarray, b: np.ndarray, floor: float) -> float:
    """``jaccard(a, b)``, or 0.0 without comparing where the set sizes alone keep it below ``floor``
    (|A∩B| / |A∪B| <= min(|A|, |B|) / max(|A|, |B|))."""
    if min(a.size, b.size) < floor * max(a.size, b.size):
        return 0.0
    return jaccard(a, b)


def near_duplicate_similarity(a: PartShingles, b: PartShingles, min_jaccard: float = MIN_JACCARD,
                              same_prompt_different_answer: str = "keep") -> float | None:
    """The smallest part Jaccard when a and b are near duplicates, else None.

    Prompt and context must both reach ``min_jaccard``; the answer too, unless
    ``same_prompt_different_answer`` is ``drop``.
    """
    prompt = jaccard_reaching(a.prompt, b.prompt, min_jaccard)
    if prompt < min_jaccard:
        return None
    context = jaccard_reaching(a.context, b.context, min_jaccard)
    if context < min_jaccard:
        return None
    answer = jaccard_reaching(a.answer, b.answer, min_jaccard)
    if answer < min_jaccard and same_prompt_different_answer != "drop":
        return None
    return min(prompt, context, answer) if answer >= min_jaccard else min(prompt, context)
