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
>>> f[0] > 0.5, f[2]
(True, 0.0)
>>> fit_features("東京タワーの高さは何メートルですか?", "", "カレーにはジャガイモと人参を入れます。")[0]
0.0
"""

from __future__ import annotations

import math
import re

import numpy as np

FIT_FEATURES = ("prompt_coverage", "answer_anchored", "prompt_copied", "fit_x_length")

# a content character: kanji, katakana (with the long-vowel mark), Latin letters and digits (half and full width)
_CONTENT = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\u30a0-\u30ffー A-Za-z0-9Ａ-Ｚａ-ｚ０-９]")
_SPACE = re.compile(r"\s+")
COPY_RUN = 12  # characters: a run this long that the answer repeats from the prompt is a copy


def content_bigrams(text: str, limit: int = 2000) -> set[str]:
    """Bigrams of ``text`` (its first ``limit`` non-space characters, lower-cased) with at least one content
    character."""
    t = _SPACE.sub("", text)[:limit].lower()
    return {t[i:i + 2] for i in range(len(t) - 1) if _CONTENT.match(t[i]) or _CONTENT.match(t[i + 1])}


def _copied_share(prompt: str, answer: str) -> float:
    """Share of the prompt's first 200 non-space characters inside runs of ``COPY_RUN`` that the answer holds."""
    p = _SPACE.sub("", prompt)[:200]
    a = _SPACE.sub("", answer)
    if len(p) < COPY_RUN or len(a) < COPY_RUN:
        return 0.0
    covered = np.zeros(len(p), dtype=bool)
    windows = {a[i:i + COPY_RUN] for i in range(len(a) - COPY_RUN + 1)}
    for i in range(len(p) - COPY_RUN + 1):
        if p[i:i + COPY_RUN] in windows:
            covered[i:i + COPY_RUN] = True
    return float(covered.mean())


def fit_features(prompt: str, context: str, answer: str) -> np.ndarray:
    """The values of ``FIT_FEATURES`` for one record."""
    pb, ab = content_bigrams(prompt), content_bigrams(answer)
    cb = content_bigrams(context) if context else set()
    coverage = len(pb & ab) / len(pb) if pb else 0.0
    anchored = len(ab & (pb | cb)) / len(ab) if ab else 0.0
    n = len(_SPACE.sub("", answer))
    return np.array([coverage, anchored, _copied_share(prompt, answer), coverage * math.log1p(n)], dtype=np.float64)
