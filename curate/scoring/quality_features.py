"""Cheap features that carry the quality of an instruction record, for the shipped scorer.

Each is computed from the prompt side (instruction + input, or the user turns) and the answer
(the output, or the last assistant turn) without a tokenizer or a network: lengths and their
ratio, how much of the answer copies the prompt or the context passage, formatting, script
shares (kana, kanji, Latin), sentence shape, truncation and repetition (the filters' own
measures), translationese markers, and whether code was asked for and given.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from curate.filters.japanese import ends_mid_sentence, has_equal_sentences, repetition

LIST_LINE = re.compile(r"^\s*(?:[-*・•]|\d+[.)．、])", re.M)
CODE = re.compile(r"```|^\s{4}\S|def |return |print\(|function |SELECT ", re.M)
ASKS_FOR_CODE = re.compile(r"Python|python|コード|関数|プログラム|SQL|JavaScript|スクリプト|実装")
SENTENCE_END = re.compile(r"[。！？!?]")
# a Latin word glued to kana or kanji (「barえ」, 「light状」): a machine-translation half-translated word
MIXED_WORD = re.compile(r"[A-Za-z][\u3041-\u30ff\u3400-\u9fff]|[\u3041-\u30ff\u3400-\u9fff][a-z]")
PLACEHOLDER = re.compile(r"XXX|〇〇|○○|\[[^\]]{0,20}\]|<[^>]{1,10}>|\bNone\b")
# machine-translated Japanese over-uses the second person and sentence-initial pronouns
TRANSLATIONESE = re.compile(r"あなた|それは|彼ら|これは")

FEATURES = (
    "log_answer_chars", "log_prompt_chars", "log_length_ratio", "answer_kana_share", "answer_japanese_share",
    "answer_latin_share", "answer_digit_share", "answer_katakana_share", "answer_prompt_overlap",
    "answer_copies_context", "list_lines", "has_code", "code_asked_not_given", "bare_answer", "log_sentences",
    "mean_sentence_chars", "ends_with_punctuation", "truncated", "duplicate_sentences", "translationese_per_100",
    "multi_turn", "has_context", "answer_in_context", "mixed_script_words_per_100", "placeholder",
    "latin_beyond_prompt",
)


@dataclass(frozen=True)
class RecordView:
    """The two sides a scorer reads."""

    prompt: str
    context: str
    answer: str
    multi_turn: bool = False

    @classmethod
    def of(cls, instruction: str | None, input_: str | None, output: str | None, messages=None) -> RecordView:
        if messages:
            turns = [t for t in messages if t.get("content")]
            answers = [i for i, t in enumerate(turns) if t["role"] == "assistant"]
            last = answers[-1] if answers else len(turns) - 1
            prompt = "\n".join(t["content"] for t in turns[:last])
            return cls(prompt, "", turns[last]["content"] if turns else "", True)
        return cls(instruction or "", input_ or "", output or "", False)

    def text(self) -> str:
        return "\n".join(p for p in (self.prompt, self.context, self.answer) if p)


def _grams(text: str, n: int) -> set[str]:
    text = "".join(text.split())
    return {text[i:i + n] for i in range(max(len(text) - n + 1, 1))} if text else set()


# the features that compare the answer with the prompt or the context by n-gram sets: the costliest, and
# jquality-v2 gives them no weight (it leaves overlap to its pair model)
OVERLAP_FEATURES = ("answer_prompt_overlap", "answer_copies_context")


# the script classes counted per answer, as bit flags of one table over code points: numpy counts them for a whole
# batch at once (five regex scans per record were a fifth of the scorer's time)
_KANA_BIT, _HAN_BIT, _LATIN_BIT, _DIGIT_BIT, _KATAKANA_BIT = 1, 2, 4, 8, 16
_CLASS_TABLE = np.zeros(0x110000, dtype=np.uint8)
for _bit, _ranges in ((_KANA_BIT, ((0x3041, 0x309F), (0x30A0, 0x30FF))), (_HAN_BIT, ((0x3400, 0x4DBF), (0x4E00, 0x9FFF))),
                      (_LATIN_BIT, ((0x41, 0x5A), (0x61, 0x7A))), (_DIGIT_BIT, ((0x30, 0x39), (0xFF10, 0xFF19))),
                      (_KATAKANA_BIT, ((0x30A0, 0x30FF),))):
    for _lo, _hi in _ranges:
        _CLASS_TABLE[_lo:_hi + 1] |= _bit
_CLASS_BITS = (_KANA_BIT, _HAN_BIT, _LATIN_BIT, _DIGIT_BIT, _KATAKANA_BIT)


def class_counts(texts: list[str]) -> np.ndarray:
    """(texts, 5): how many kana (U+3041–U+30FF), kanji (U+3400–U+4DBF, U+4E00–U+9FFF), Latin letters (A–Z, a–z),
    digits (half and full width) and katakana (U+30A0–U+30FF) each text has."""
    lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    codes = np.frombuffer("".join(texts).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    flags = _CLASS_TABLE[codes]
    owner = np.repeat(np.arange(len(texts)), lengths)
    return np.column_stack([np.bincount(owner, weights=(flags & bit) > 0, minlength=len(texts))
                            for bit in _CLASS_BITS])


def features(view: RecordView, overlap: bool = True) -> np.ndarray:
    """The feature vector of one record, in the order of ``FEATURES``; ``overlap=False`` leaves the
    ``OVERLAP_FEATURES`` at 0 without computing them.

    >>> f = dict(zip(FEATURES, features(RecordView("Pythonで1から10まで足すコードを書いて", "", "55")).tolist()))
    >>> f["code_asked_not_given"], f["bare_answer"]
    (1.0, 1.0)
    """
    return feature_matrix([view], overlap)[0]


def feature_matrix(views: list[RecordView], overlap: bool = True) -> np.ndarray:
    """``features`` of every view, the script counts for the whole batch at once."""
    if not views:
        return np.zeros((0, len(FEATURES)))
    answers = ["".join(v.answer.split()) for v in views]
    prompts = ["".join(v.prompt.split()) for v in views]
    counts = class_counts(answers)
    prompt_latin = class_counts(prompts)[:, 2]
    return np.stack([_features(v, a, p, c, pl, overlap) for v, a, p, c, pl in
                     zip(views, answers, prompts, counts.tolist(), prompt_latin.tolist())])


def _features(view: RecordView, compact: str, compact_prompt: str, counts: list[float], prompt_latin: float,
              overlap: bool) -> np.ndarray:
    """``features`` of one record, given its answer and prompt without whitespace and the answer's
    ``class_counts`` and the prompt's count of Latin letters."""
    a, p, ctx = view.answer, view.prompt, view.context
    n = len(compact)
    kana, han, latin, digits, katakana = counts
    share = copies = 0.0
    if overlap:
        answer_grams, prompt_grams = _grams(a, 3), _grams(p, 3)
        union = answer_grams | prompt_grams
        share = len(answer_grams & prompt_grams) / len(union) if union else 0.0
        ctx5, ans5 = _grams(ctx, 5), _grams(a, 5)
        copies = len(ans5 & ctx5) / len(ans5) if ans5 and ctx5 else 0.0
    sentences = [s for s in SENTENCE_END.split(a) if s.strip()]
    has_code = bool(CODE.search(a))
    # only the duplicate-sentence share is read: has_equal_sentences rules most answers out without the sentence
    # loop, and the n-gram measure is not computed (ngram_min_chars beyond any answer)
    duplicates = repetition(a, ngram_min_chars=1 << 62).duplicate_sentence_fraction if has_equal_sentences(a) else 0.0
    return np.array([
        math.log1p(n),
        math.log1p(len("".join((p + ctx).split()))),
        math.log1p(n) - math.log1p(len(compact_prompt)),
        kana / (kana + han) if kana + han else 0.0,
        (kana + han) / n if n else 0.0,
        latin / n if n else 0.0,
        digits / n if n else 0.0,
        katakana / n if n else 0.0,
        share,
        copies,
        min(len(LIST_LINE.findall(a)), 10) / 10,
        float(has_code),
        float(bool(ASKS_FOR_CODE.search(p)) and not has_code),
        float(n <= 5 or not (kana + han) and n <= 20),
        math.log1p(len(sentences)),
        min(n / max(len(sentences), 1), 200) / 100,
        float(bool(a.rstrip()) and a.rstrip()[-1] in "。！？!?」）)"),
        float(ends_mid_sentence(a) is not None),
        duplicates,
        100 * len(TRANSLATIONESE.findall(a)) / n if n else 0.0,
        float(view.multi_turn),
        float(bool(ctx.strip())),
        float(bool(compact) and compact in "".join(ctx.split())),
        100 * len(MIXED_WORD.findall(a)) / n if n else 0.0,
        float(bool(PLACEHOLDER.search(a))),
        (latin / n if n else 0.0) - (prompt_latin / len(compact_prompt) if compact_prompt else 0.0),
    ], dtype=np.float64)
