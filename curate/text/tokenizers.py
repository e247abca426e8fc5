"""Word tokenizers that plug into datatrove (MinHash, n-gram decontamination).

datatrove's own "ja" tokenizer is spaCy + SudachiPy (a 193 MB dictionary, ~15x slower);
fugashi with unidic-lite does the same job. Both classes create their state lazily so
that the steps that hold them pickle to forkserver / Ray workers.
"""

from __future__ import annotations

import re

from datatrove.utils.word_tokenizers import WordTokenizer

_SENTENCE_END = re.compile(r"(?<=[。！？!?\n])")


class FugashiTokenizer(WordTokenizer):
    """MeCab (fugashi + unidic-lite) word segmentation."""

    def __init__(self):
        super().__init__("ja")
        self._tagger = None

    @property
    def tagger(self):
        if self._tagger is None:
            import fugashi

            self._tagger = fugashi.Tagger("-Owakati")
        return self._tagger

    def __getstate__(self):
        return {**self.__dict__, "_tagger": None}

    def word_tokenize(self, text: str) -> list[str]:
        return self.tagger.parse(text).split()

    def sent_tokenize(self, text: str) -> list[str]:
        return [s for s in (p.strip() for p in _SENTENCE_END.split(text)) if s]

    def span_tokenize(self, text: str) -> list[tuple[int, int]]:
        spans, start = [], 0
        for sent in self.sent_tokenize(text):
            begin = text.index(sent, start)
            spans.append((begin, begin + len(sent)))
            start = begin + len(sent)
        return spans


class CharTokenizer(FugashiTokenizer):
    """Characters as tokens (spaces dropped): n-grams become character n-grams."""

    def word_tokenize(self, text: str) -> list[str]:
        return [c for c in text if not c.isspace()]


def make_tokenizer(kind: str) -> WordTokenizer:
    return {"chars": CharTokenizer, "fugashi": FugashiTokenizer}[kind]()
