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

ROOT = Path(__file__).resolve().parents[2]
AUDIT = ROOT / "data/audit"


@lru_cache(maxsize=2)
def records(file: str = "records.jsonl") -> dict[str, dict]:
    """The audit's records (``records.jsonl``, or the gold set's ``gold_records.jsonl``) by record id."""
    out = {}
    for line in (AUDIT / file).read_text(encoding="utf-8").splitlines():
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


# ---- round 3: machine-translated Alpaca, code exercises, and the gold set (issue: filters that keep good answers)


def gold_records() -> dict[str, dict]:
    return records("gold_records.jsonl")


def gold_document(record_id: str):
    r = gold_records()[record_id]
    return make_document(record_id=record_id, source_id=record_id.split(":", 1)[0], instruction=r["instruction"],
                         input_=r.get("input", ""), output=r["output"])


@pytest.mark.parametrize("record_id", [
    "elyza-tasks-100-gold:044",  # a step-by-step enumeration 「- N番目の「X」を先頭とする場合: …です。」: structure
    "japanese-mt-bench-gold:71",  # a poem whose last line is 「…時の流れを凍らせるように」: a verse line
])
def test_every_complete_gold_reference_passes(quality, record_id):
    doc = gold_document(record_id)
    assert quality.filter(doc) is True, doc.metadata.get("drop_value")


def test_a_gold_reference_that_is_really_cut_off_is_dropped(quality):
    # 「…何か追加や修正が必要な点がありましたら、お」: stops on a prefix, mid-word
    assert quality.filter(gold_document("japanese-mt-bench-gold:72")) == (False, "truncated_output")


def test_every_gold_reference_but_the_cut_one_passes(quality):
    dropped = [rid for rid in gold_records() if quality.filter(gold_document(rid)) is not True]
    assert dropped == ["japanese-mt-bench-gold:72"]


@pytest.mark.parametrize("record_id", [
    "amenokaku-code:amenokaku_41",  # two alternative solutions (「# コード例1」「# コード例2」) share their lines
    "amenokaku-code:amenokaku_264",  # Zhang-Suen's two scans with the same conditions, as the algorithm says
    "amenokaku-code:amenokaku_2638",  # parallel Signal declarations in a bug-fix answer
    "amenokaku-code:amenokaku_97",  # a column list written out twice in two variants
    "amenokaku-code:amenokaku_299",  # an 8,929-character program: long, not runaway text
    "alpaca-jp-reasoning:math_seed_task_138",  # 0.16666666666666666: a repeating decimal, not a stuck key
])
def test_repetition_that_is_structure_or_code_is_kept(quality, record_id):
    doc = document(record_id)
    assert quality.filter(doc) is True, doc.metadata.get("drop_value")


def test_an_answer_that_restates_its_prompt_is_not_repetitive_text(quality):
    # an NLP exercise whose answer restates its long task statement, dependency paths and all: 0.196
    # compressed whole, 0.323 with the prompt and the answer compressed apart
    doc = document("amenokaku-code:amenokaku_604")
    assert quality.filter(doc) is True, doc.metadata.get("drop_value")
    assert doc.metadata["compression_ratio"] > 0.3


def test_an_answer_that_repeats_itself_is_still_repetitive_text(quality):
    # list lines with one frame: neither a repeated sentence nor a repeated n-gram outside the frames
    spam = "\n".join(f"- 商品{i}: 在庫あり、送料無料、即日発送、返品可能です" for i in range(60))
    doc = make_document(record_id="t:spam", source_id="t", instruction="商品の紹介文を書いてください。", output=spam)
    assert quality.filter(doc) == (False, "repetitive_text") and doc.metadata["compression_ratio"] < 0.1


def test_a_list_item_cut_inside_its_bracket_is_still_dropped(quality):
    # 「-K-POP Group BTS（防弾」: the list's other items close their brackets, so this one is cut (防弾少年団)
    assert quality.filter(document("instruction-ja-mt:instruction_ja.015670")) == (False, "truncated_output")


def test_a_translation_that_drops_every_closing_bracket_of_a_list_is_not_truncated():
    # the shape of an Alpaca translation (wanda-alpaca-ja:00175, Stanford Alpaca CC BY-NC 4.0, translated):
    # the titles' closing brackets are lost all through the list, the last one too
    from curate.filters.japanese import ends_mid_sentence

    answer = ("1.シャーロットのおくりもの（E.B.ホワイト著\n2.ライオンと魔女（C.S.ルイス著\n"
              "3.マチルダ（ロアルド・ダール著\n4.ケイト・ディカミロ著『デスペローの物語』（原題：The Tale of Despereaux")
    assert ends_mid_sentence(answer) is None
    # the same list with its brackets closed but the last: a cut
    closed = answer.replace("著\n", "著）\n")
    assert ends_mid_sentence(closed) == "（ not closed"


def test_a_closing_formula_after_a_finished_sentence_is_not_truncated():
    # wanda-alpaca-ja:00970 (a pizza recipe): 「…きつね色になるまで焼く。お楽しみに」
    from curate.filters.japanese import ends_mid_sentence

    assert ends_mid_sentence("生地を伸ばし、ソースを塗ってトッピングを散らします。予熱したオーブンで12分、"
                             "生地がきつね色になるまで焼く。お楽しみに") is None


@pytest.mark.parametrize("a, b", [
    ("amenokaku-code:amenokaku_64", "amenokaku-code:amenokaku_66"),  # 切り捨て (np.floor) vs 切り上げ (np.ceil)
    ("amenokaku-code:amenokaku_26", "amenokaku-code:amenokaku_27"),  # mean vs median
    ("amenokaku-code:amenokaku_16", "amenokaku-code:amenokaku_17"),  # oldest first vs youngest first
    ("amenokaku-code:amenokaku_631", "amenokaku-code:amenokaku_633"),  # checkpoints vs training on a GPU
])
def test_exercises_of_one_series_with_different_programs_are_not_near_duplicates(a, b):
    assert not near_duplicates(a, b)


def test_the_same_program_under_a_reworded_prompt_is_a_near_duplicate():
    near = NearDedupConfig()
    code = "import pandas as pd\n\ndf_receipt.groupby('store_cd').amount.sum().reset_index().head(10)"
    a = RecordParts.of("pandasで店舗ごとの売上合計を求め、先頭10件を表示せよ。", "", code)
    b = RecordParts.of("pandasで店舗ごとの売上金額の合計を求め、先頭10件を表示せよ。", "", code + "\n")
    shingles = [PartShingles.of(p, CharTokenizer(), near.n_grams) for p in (a, b)]
    assert near_duplicate_similarity(*shingles, near.min_jaccard) is not None
