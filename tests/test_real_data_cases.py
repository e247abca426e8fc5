"""Decisions the audit of public data showed wrong (and a few it showed right), as test cases.

The records come from ``data/audit/records.jsonl`` (public datasets; licences and attribution in
``data/audit/README.md``), each with the one-line judgement of the person who read it in
``data/audit/judgements.jsonl``. The rules they guard are general (how a Japanese sentence
ends, what makes a near duplicate); the record ids only name the evidence.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import pytest

from curate.config import LanguageConfig, NearDedupConfig, QualityConfig
from curate.decont.decontaminate import PromptMatcher, normalise_prompt
from curate.dedup.near_duplicates import PartShingles, RecordParts, near_duplicate_similarity
from curate.filters.record_filters import JapaneseLanguageFilter, JapaneseQualityFilter
from curate.records import make_document
from curate.text.tokenizers import CharTokenizer

ROOT = Path(__file__).resolve().parents[1]
AUDIT = ROOT / "data/audit"


@lru_cache(maxsize=1)
def records() -> dict[str, dict]:
    out = {}
    for line in (AUDIT / "records.jsonl").read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        out[f"{r['source_id']}:{r['id']}"] = r
    return out


def document(record_id: str):
    r = records()[record_id]
    source = record_id.split(":", 1)[0]
    return make_document(record_id=record_id, source_id=source, instruction=r.get("instruction", ""),
                         input_=r.get("input", ""), output=r.get("output", ""), messages=r.get("messages"))


def near_duplicates(a: str, b: str) -> bool:
    """The near-duplicate rule the dedup plan applies to an LSH candidate pair."""
    near = NearDedupConfig()
    shingles = []
    for record_id in (a, b):
        r = records()[record_id]
        parts = RecordParts.of(r.get("instruction"), r.get("input"), r.get("output"), r.get("messages"))
        shingles.append(PartShingles.of(parts, CharTokenizer(), near.n_grams))
    return near_duplicate_similarity(*shingles, near.min_jaccard, near.same_prompt_different_answer) is not None


@pytest.fixture(scope="module")
def quality():
    return JapaneseQualityFilter(QualityConfig())


@pytest.fixture(scope="module")
def language():
    return JapaneseLanguageFilter(LanguageConfig())


# JSQuAD: the same Wikipedia passage, another question and another answer: different examples
@pytest.mark.parametrize("a, b", [
    ("jsquad-ja:a10717p24q2", "jsquad-ja:a10717p24q0"),
    ("jsquad-ja:a10717p57q1", "jsquad-ja:a10717p57q0"),
    ("jsquad-ja:a10717p61q2", "jsquad-ja:a10717p61q1"),
])
def test_a_shared_passage_does_not_make_a_near_duplicate(a, b):
    assert not near_duplicates(a, b)


# JSQuAD: the same passage, the question reworded, the same answer: a near duplicate
@pytest.mark.parametrize("dup, of", [
    ("jsquad-ja:a1025052p4q2", "jsquad-ja:a1025052p4q0"),
    ("jsquad-ja:a10336p20q1", "jsquad-ja:a10336p20q0"),
])
def test_a_reworded_question_with_the_same_answer_is_a_near_duplicate(dup, of):
    assert near_duplicates(of, dup)


@pytest.mark.parametrize("record_id", [
    "jsquad-ja:a10336p19q2",  # 「南」: a one-character span answer
    "jsquad-ja:a10717p19q0",  # 「A」
    "real-persona-chat:00117",  # chat turns that end without 。 (…ということですね)
    "real-persona-chat:00936",  # …なっちゃった
    "instruction-ja-mt:instruction_ja.000724",  # …本当に感謝しています: complete without 。
    "instruction-ja-mt:instruction_ja.000808",  # …確認してください
    "multialpaca-ja:04478",  # 「こんにちは」 ten times, as the prompt asked
    "multialpaca-ja:02054",
    "multialpaca-ja:00652",  # two parallel sentences, not spam
])
def test_the_quality_filter_keeps_what_readers_judged_fine(quality, record_id):
    doc = document(record_id)
    assert quality.filter(doc) is True, doc.metadata.get("drop_value")


@pytest.mark.parametrize("record_id", [
    "instruction-ja-mt:instruction_ja.003855",  # …イメージによって象徴され、 (a comma)
    "instruction-ja-mt:instruction_ja.038867",  # …5つの融合した骨で構成され、
    "instruction-ja-mt:instruction_ja.026486",  # …生産されているためです( (a bracket left open)
    "instruction-ja-mt:instruction_ja.013067",  # …苦労している場合 (a noun after closed sentences)
])
def test_machine_translation_cut_mid_sentence_is_dropped(quality, record_id):
    assert quality.filter(document(record_id)) == (False, "truncated_output")


@pytest.mark.parametrize("record_id", [
    "multialpaca-ja:01065",  # 「日本の首都は?」→「東京」
    "multialpaca-ja:05913",  # a list of prefectures and their capitals
    "multialpaca-ja:07217",
    "multialpaca-ja:07257",  # a prefecture population table
])
def test_kanji_heavy_japanese_passes_the_language_filter(language, record_id):
    doc = document(record_id)
    assert language.filter(doc) is True, doc.metadata.get("drop_value")


def test_english_records_are_still_dropped(language):
    assert language.filter(document("multialpaca-ja:00115"))[0] is False


def elyza_prompts() -> list[str]:
    lines = (ROOT / "data/eval/elyza_tasks_100.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["input"] for line in lines]


def test_every_elyza_prompt_is_caught_verbatim_and_with_characters_changed():
    prompts = elyza_prompts()
    matcher = PromptMatcher({normalise_prompt(p): f"elyza#{i}" for i, p in enumerate(prompts)})
    for p in prompts:
        assert matcher.match(p), p
        assert matcher.match("次の質問に答えてください。" + p), p
        changed = ("ア" if p[0] != "ア" else "イ") + p[1:]  # one character substituted
        assert matcher.match(changed), changed
        shorter = p[:len(p) // 2] + p[len(p) // 2 + 1:]  # one character deleted
        assert matcher.match(shorter), shorter


def test_the_shortest_elyza_prompt_is_caught_but_a_different_short_question_is_not():
    matcher = PromptMatcher({normalise_prompt(p): "elyza" for p in elyza_prompts()})
    assert matcher.match("伊勢神宮は何県？")
    assert matcher.match("伊勢神宮は何県か？")  # one character inserted
    assert matcher.match("伊勢神社は何県?")  # one changed
    assert matcher.match("出雲大社は何県？") is None
