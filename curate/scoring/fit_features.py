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
import re

import numpy as np

FIT_FEATURES = ("prompt_coverage", "answer_anchored", "prompt_copied", "fit_x_length")

# a content character: kanji, katakana (with the long-vowel mark), Latin letters and digits (half and full width)
_CONTENT_RANGES = ((0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0x30A0, 0x30FF), (0x41, 0x5A), (0x61, 0x7A), (0x30, 0x39),
                   (0xFF21, 0xFF3A), (0xFF41, 0xFF5A), (0xFF10, 0xFF19))
_IS_CONTENT = np.zeros(0x110000, dtype=bool)
for _lo, _hi in _CONTENT_RANGES:
    _IS_CONTENT[_lo:_hi + 1] = True
_SPACE = re.compile(r"\s+")
COPY_RUN = 12  # characters: a run this long that the answer repeats from the prompt is a copy


def content_bigrams(text: str, limit: int = 2000) -> np.ndarray:
    """The bigrams of ``text`` (its first ``limit`` non-space characters, lower-cased) with at least one content
    character, as sorted unique integers (the two code points side by side), in numpy.

    >>> len(content_bigrams("東京タワー")), len(content_bigrams("ですます"))
    (4, 0)
    """
    t = _SPACE.sub("", text)[:limit].lower()
    if len(t) < 2:
        return np.zeros(0, dtype=np.uint64)
    codes = np.frombuffer(t.encode("utf-32-le", "surrogatepass"), dtype=np.uint32).astype(np.uint64)
    content = _IS_CONTENT[codes]
    keep = content[:-1] | content[1:]
    return np.unique((codes[:-1][keep] << np.uint64(21)) | codes[1:][keep])


def _copied_share(prompt: str, answer: str) -> float:
    """Share of the prompt's first 200 non-space characters inside runs of ``COPY_RUN`` that the answer holds."""
    p = _SPACE.sub("", prompt)[:200]
    a = _SPACE.sub("", answer)
    if len(p) < COPY_RUN or len(a) < COPY_RUN:
        return 0.0
    covered = np.zeros(len(p), dtype=bool)
    for i in range(len(p) - COPY_RUN + 1):
        if p[i:i + COPY_RUN] in a:  # a substring search in C: 2x faster than a set of the answer's windows
            covered[i:i + COPY_RUN] = True
    return float(covered.mean())


def fit_features(prompt: str, context: str, answer: str, bigrams: tuple | None = None) -> np.ndarray:
    """The values of ``FIT_FEATURES`` for one record; ``bigrams``: the ``content_bigrams`` of prompt, context
    and answer when the caller has them already."""
    pb, cb, ab = bigrams or (content_bigrams(prompt), content_bigrams(context) if context else None,
                             content_bigrams(answer))
    anchor = np.union1d(pb, cb) if context else pb
    coverage = np.intersect1d(pb, ab, assume_unique=True).size / pb.size if pb.size else 0.0
    anchored = np.intersect1d(ab, anchor, assume_unique=True).size / ab.size if ab.size else 0.0
    n = len(_SPACE.sub("", answer))
    return np.array([coverage, anchored, _copied_share(prompt, answer), coverage * math.log1p(n)], dtype=np.float64)
