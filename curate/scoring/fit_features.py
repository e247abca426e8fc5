"""Does the answer answer its question? Cheap prompt-conditioned features for the shipped scorer.

Two separate bags of n-grams (jquality-v1) cannot see whether an answer belongs to its prompt: an
answer to another question scores as well as the right one. These features read prompt and answer
together, through their *content* character bigrams: bigrams with a kanji, a katakana, a Latin letter
or a digit (hiragana-only bigrams are grammar, shared by any two Japanese texts).

- ``prompt_coverage``: the share of the prompt's content bigrams that the answer uses. A right answer
  takes up the prompt's terms (「東京タワーの高さ」 -> 「東京タワーは333m」); an answer to another question
  does not.
- ``answer_anchored``: the share of the answer's content bigrams found in the prompt or its context.
  High with ``log_answer_chars`` low is an answer that only echoes the prompt.
- ``prompt_copied``: the share of the prompt's characters (its first 200) that the answer repeats as a run
  of 12 or more: the prompt copied back.
- ``fit_x_length``: ``prompt_coverage`` times the answer's log length (a long answer that never touches
  the prompt is padding or another question's answer).

>>> f = fit_features("東京タワーの高さは何メートルですか?", "", "東京タワーの高さは333メートルです。")
>>> bool(f[0] > 0.5), float(f[2])
(True, 0.0)
>>> float(fit_features("東京タワーの高さは何メートルですか?", "", "カレーにはジャガイモと人参を入れます。")[0])
0.0
"""

from __future__ import annotations

import math

import numpy as np

FIT_FEATURES = ("prompt_coverage", "answer_anchored", "prompt_copied", "fit_x_length")

# a content character: kanji, katakana (with the long-vowel mark), Latin letters and digits (half and full width)
_CONTENT_RANGES = ((0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0x30A0, 0x30FF), (0x41, 0x5A), (0x61, 0x7A), (0x30, 0x39),
                   (0xFF21, 0xFF3A), (0xFF41, 0xFF5A), (0xFF10, 0xFF19))
_IS_CONTENT = np.zeros(0x110000, dtype=bool)
for _lo, _hi in _CONTENT_RANGES:
    _IS_CONTENT[_lo:_hi + 1] = True
COPY_RUN = 12  # characters: a run this long that the answer repeats from the prompt is a copy


def content_bigrams(text: str, limit: int = 2000) -> np.ndarray:
    """The bigrams of ``text`` (its first ``limit`` non-space characters, lower-cased) with at least one content
    character, as sorted unique integers (the two code points side by side), in numpy.

    >>> len(content_bigrams("東京タワー")), len(content_bigrams("ですます"))
    (4, 0)
    """
    return bigram_sets([text], limit)  # one text: its keys' owner bits are 0, so the keys are the bigrams


def _copied_share(prompt: str, answer: str) -> float:
    """Share of the prompt's first 200 non-space characters inside runs of ``COPY_RUN`` that the answer holds."""
    p = "".join(prompt.split())[:200]
    a = "".join(answer.split())
    if len(p) < COPY_RUN or len(a) < COPY_RUN:
        return 0.0
    covered = reach = 0  # characters inside a copied run; where the last run ends (runs are found left to right)
    for i in range(len(p) - COPY_RUN + 1):
        if p[i:i + COPY_RUN] in a:  # a substring search in C: 2x faster than a set of the answer's windows
            covered += i + COPY_RUN - max(i, reach)
            reach = i + COPY_RUN
    return covered / len(p)


# a batch's bigram sets as one sorted array of keys: the text's index above bit 42, the bigram (two 21-bit code
# points) below; per-text numpy calls on small arrays were most of the scorer's time
OWNER_SHIFT = np.uint64(42)
BIGRAM_MASK = np.uint64((1 << 42) - 1)
MAX_BATCH_TEXTS = 1 << 21  # owners stay below bit 63


def bigram_sets(texts: list[str], limit: int = 2000) -> np.ndarray:
    """``content_bigrams`` of every text at once: sorted unique keys ``(index << 42) | bigram``.

    >>> keys = bigram_sets(["東京タワー", "ですます", "東京"])
    >>> np.bincount((keys >> OWNER_SHIFT).astype(np.int64), minlength=3).tolist()
    [4, 0, 1]
    """
    if len(texts) > MAX_BATCH_TEXTS:
        raise ValueError(f"bigram_sets: {len(texts)} texts, at most {MAX_BATCH_TEXTS} per call")
    compact = ["".join(t.split())[:limit].lower() for t in texts]
    lengths = np.fromiter(map(len, compact), dtype=np.int64, count=len(compact))
    if lengths.sum() < 2:
        return np.zeros(0, dtype=np.uint64)
    codes = np.frombuffer("".join(compact).encode("utf-32-le", "surrogatepass"), dtype=np.uint32).astype(np.uint64)
    owner = np.repeat(np.arange(len(compact), dtype=np.uint64), lengths)
    content = _IS_CONTENT[codes]
    keep = (owner[:-1] == owner[1:]) & (content[:-1] | content[1:])
    return _sorted_unique((owner[:-1][keep] << OWNER_SHIFT) | (codes[:-1][keep] << np.uint64(21)) | codes[1:][keep])


def _sorted_unique(keys: np.ndarray) -> np.ndarray:
    """``np.unique`` by a sort: numpy's hashing unique is 3x slower on these arrays."""
    keys = np.sort(keys)
    return keys[np.concatenate(([True], keys[1:] != keys[:-1]))] if keys.size else keys


def shared_keys(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The keys in both of two sorted unique key arrays (``np.intersect1d`` without sorting them again)."""
    if not a.size or not b.size:
        return a[:0]
    at = np.minimum(np.searchsorted(b, a), b.size - 1)
    return a[b[at] == a]


def set_sizes(keys: np.ndarray, n: int) -> np.ndarray:
    """How many bigrams each of ``n`` texts has, from ``bigram_sets`` keys."""
    return np.bincount((keys >> OWNER_SHIFT).astype(np.int64), minlength=n)


def fit_matrix(prompts: np.ndarray, contexts: np.ndarray, answers: np.ndarray, prompt_texts: list[str],
               answer_texts: list[str]) -> np.ndarray:
    """``FIT_FEATURES`` of a batch, from the ``bigram_sets`` of its prompts, contexts and answers."""
    n = len(prompt_texts)
    p_size, a_size = set_sizes(prompts, n), set_sizes(answers, n)
    covered = set_sizes(shared_keys(prompts, answers), n)
    # an answer is anchored in its prompt or its context
    anchor = _sorted_unique(np.concatenate([prompts, contexts])) if contexts.size else prompts
    anchored = set_sizes(shared_keys(answers, anchor), n)
    coverage = np.divide(covered, p_size, out=np.zeros(n), where=p_size > 0)
    # math.log1p, not np.log1p: they differ in the last bit on some lengths, and the values stay those of v3's fit
    log_chars = np.fromiter((math.log1p(len("".join(a.split()))) for a in answer_texts), dtype=np.float64, count=n)
    return np.column_stack([
        coverage,
        np.divide(anchored, a_size, out=np.zeros(n), where=a_size > 0),
        [_copied_share(p, a) for p, a in zip(prompt_texts, answer_texts)],
        coverage * log_chars,
    ])


def fit_features(prompt: str, context: str, answer: str) -> np.ndarray:
    """The values of ``FIT_FEATURES`` for one record (``fit_matrix`` of a batch of one)."""
    sets = [bigram_sets([t]) for t in (prompt, context, answer)]
    return fit_matrix(*sets, [prompt], [answer])[0]
