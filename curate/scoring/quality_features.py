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

from curate.filters.japanese import ends_mid_sentence, repetition

KANA = re.compile(r"[\u3041-\u309f\u30a0-\u30ff]")
KATAKANA = re.compile(r"[\u30a0-\u30ff]")
HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")
LATIN = re.compile(r"[A-Za-z]")
DIGIT = re.compile(r"[0-9０-９]")
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


def _share(pattern: re.Pattern, text: str, total: int) -> float:
    return len(pattern.findall(text)) / total if total else 0.0


# the features that compare the answer with the prompt or the context by n-gram sets: the costliest, and
# jquality-v2 gives them no weight (it leaves overlap to its pair model)
OVERLAP_FEATURES = ("answer_prompt_overlap", "answer_copies_context")


def features(view: RecordView, overlap: bool = True) -> np.ndarray:
    """The feature vector of one record, in the order of ``FEATURES``; ``overlap=False`` leaves the
    ``OVERLAP_FEATURES`` at 0 without computing them.

    >>> f = dict(zip(FEATURES, features(RecordView("Pythonで1から10まで足すコードを書いて", "", "55")).tolist()))
    >>> f["code_asked_not_given"], f["bare_answer"]
    (1.0, 1.0)
    """
    a, p, ctx = view.answer, view.prompt, view.context
    compact = "".join(a.split())
    n = len(compact)
    kana, han = len(KANA.findall(a)), len(HAN.findall(a))
    share = copies = 0.0
    if overlap:
        answer_grams, prompt_grams = _grams(a, 3), _grams(p, 3)
        union = answer_grams | prompt_grams
        share = len(answer_grams & prompt_grams) / len(union) if union else 0.0
        ctx5, ans5 = _grams(ctx, 5), _grams(a, 5)
        copies = len(ans5 & ctx5) / len(ans5) if ans5 and ctx5 else 0.0
    sentences = [s for s in SENTENCE_END.split(a) if s.strip()]
    has_code = bool(CODE.search(a))
    rep = repetition(a)
    return np.array([
        math.log1p(n),
        math.log1p(len("".join((p + ctx).split()))),
        math.log1p(n) - math.log1p(len("".join(p.split()))),
        kana / (kana + han) if kana + han else 0.0,
        (kana + han) / n if n else 0.0,
        _share(LATIN, compact, n),
        _share(DIGIT, compact, n),
        _share(KATAKANA, compact, n),
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
        rep.duplicate_sentence_fraction,
        100 * len(TRANSLATIONESE.findall(a)) / n if n else 0.0,
        float(view.multi_turn),
        float(bool(ctx.strip())),
        float(bool(compact) and compact in "".join(ctx.split())),
        100 * len(MIXED_WORD.findall(a)) / n if n else 0.0,
        float(bool(PLACEHOLDER.search(a))),
        _share(LATIN, compact, n) - _share(LATIN, "".join(p.split()), len("".join(p.split()))),
    ], dtype=np.float64)


def feature_matrix(views: list[RecordView], overlap: bool = True) -> np.ndarray:
    return np.stack([features(v, overlap) for v in views]) if views else np.zeros((0, len(FEATURES)))
