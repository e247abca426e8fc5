"""The per-record filters on small hand-made examples: one kept and one dropped per rule."""

from __future__ import annotations

import os
import re

import pytest

from curate.config import LanguageConfig, QualityConfig
from curate.filters.record_filters import JapaneseLanguageFilter, JapaneseQualityFilter
from curate.records import content_hash, fold_indentation, make_document, normalise_text


def doc(instruction="質問です。", output="これは答えです。", input_=""):
    return make_document(record_id="t:0", source_id="t", instruction=instruction, input_=input_, output=output)


@pytest.fixture(scope="module")
def language():
    return JapaneseLanguageFilter(LanguageConfig())


@pytest.mark.parametrize("instruction, output", [
    ("日本の首都はどこですか？", "日本の首都は東京です。"),
    ("Pythonでリストを逆順にするには？", "```python\nitems = [1, 2, 3]\nitems.reverse()\nprint(items)  # [3, 2, 1]\n```\n"
                                        "`reverse()` はリストをその場で逆順にします。"),
    ("KubernetesのPodとDeploymentの違いは？", "Pod は container の最小単位で、"
                                           "Deployment は ReplicaSet を通して Pod の rolling update と scaling を管理します。"),
    ("カタカナ語を教えて", "コンピューター、インターネット、スマートフォン"),
])
def test_japanese_passes(language, instruction, output):
    assert language.filter(doc(instruction, output)) is True


@pytest.mark.parametrize("instruction, output", [
    ("中国的首都是哪里？", "中国的首都是北京。"),
    ("請介紹台灣的夜市文化。", "台灣的夜市是當地飲食文化的重要部分，販售各種小吃，例如蚵仔煎與珍珠奶茶。"),
    ("请用一句话总结", "学习使人进步。"),
    ("What is the capital of Japan?", "Tokyo is the capital of Japan."),
])
def test_chinese_and_english_do_not(language, instruction, output):
    d = doc(instruction, output)
    kept, reason = language.filter(d)
    assert not kept and reason == "not_japanese_script"
    assert "kana_ratio=0.00" in d.metadata["drop_value"]


@pytest.fixture(scope="module")
def quality():
    return JapaneseQualityFilter(QualityConfig())


@pytest.mark.parametrize("output, reason", [
    ("", "empty_output"),
    ("あ" * 9000, "output_too_long"),
    ("東京は日本の首都であり、政治と経済の中心地です。人口は約1400万人で、世界でも有数の", "truncated_output"),
    ("今だけ激安！\n" * 10, "repeated_sentences"),
    ("すごい" + "！" * 30, "repeated_characters"),
    ("よろしくお願いします。" * 60, "repeated_sentences"),
    ("この商品はおすすめです。" * 12, "repeated_sentences"),
    ("東京、大阪、名古屋、福岡、札幌、仙台、広島と続く" * 10, "repeated_ngrams"),
    ("答え: ★☆★☆◆◇◆◇■□■□※※〒〒♪♪", "too_many_symbols"),
])
def test_quality_drops(quality, output, reason):
    d = doc(output=output)
    assert quality.filter(d) == (False, reason)
    assert d.metadata["drop_value"]


def test_a_short_answer_under_a_raised_minimum_is_too_short_not_empty():
    quality = JapaneseQualityFilter(QualityConfig(min_output_chars=100))
    short = doc(output="あ" * 99)
    assert quality.filter(short) == (False, "output_too_short")
    assert short.metadata["drop_value"] == "99"
    assert quality.filter(doc(output="  ")) == (False, "empty_output")


@pytest.mark.parametrize("output", [
    "ポジティブ",
    "1. 東京タワー\n2. スカイツリー\n3. 浅草寺",
    "答え:Aさん3600円、Bさん2400円",
    "```python\nfor i in range(3):\n    print(i)\n```",
    "拝啓　時下ますますご清祥のこととお慶び申し上げます。何卒よろしくお願い申し上げます。敬具",
])
def test_quality_keeps(quality, output):
    assert quality.filter(doc(output=output)) is True


def test_normalisation_keeps_dakuten_and_folds_width():
    assert normalise_text("ダイヤモンド") == "ダイヤモンド"
    assert normalise_text("ＡＢＣ１２３　ｶﾞｲﾄﾞ") == "ABC123 ガイド"
    a = doc(output="ＡＩは　便利です。")
    b = doc(output="AIは 便利です。")
    assert a.metadata["content_hash"] == b.metadata["content_hash"] == content_hash(a.text)


def _folded_reference(text: str) -> str:
    """normalise_text with every line's indentation folded away, step by step (what it returned before it kept
    indentation, and what the exact-dedup key hashes): the fast paths and the kept indentation must agree."""
    import unicodedata

    text = unicodedata.normalize("NFKC", text).replace("\r\n", "\n").replace("\r", "\n")
    lines = [line.strip() for line in re.sub(r"[ \t\u00a0\u3000]+", " ", text).split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def test_normalisation_fast_paths_agree_with_the_definition():
    """Random texts over the characters that NFKC or the spacing rules touch: full-width and
    half-width forms, combining marks (decomposed dakuten, accents), every kind of space and line end."""
    import random
    import unicodedata

    from curate.records import nfkc

    pool = list("東京タワーはあいうガパ。、abcAZ09") + list("（）：？！Ａｚ１ｶｷﾞﾟ･｡①㈱℃…㍻ﬁ½²") + [
        "\u3099", "\u309a", "\u0301", "\u0308", "\u00e9", "\u212b", "\uf900", "\U0001d400", "\U00020000"] + list(
        " \t\n\r\u00a0\u3000\u2028\x0b\x0c\x1c\u2003")
    rng = random.Random(0)
    texts = ["".join(rng.choice(pool) for _ in range(rng.randint(0, 40))) for _ in range(20_000)]
    texts += ["カ\u3099", "\u3099カ", "  東京\n\n\n\n京都  ", "a\r\nb", "\u3000", " a\n  b\n\t\tc", "\u3000a\n b"]
    for text in texts:
        assert nfkc(text) == unicodedata.normalize("NFKC", text), repr(text)
        normalised = normalise_text(text)
        assert fold_indentation(normalised) == _folded_reference(text), repr(text)
        lines = [line for line in normalised.split("\n") if line.strip()]
        assert os.path.commonprefix([line[:len(line) - len(line.lstrip())] for line in lines]) == "", (
            f"the indentation every line shares is cut: {text!r}")
        assert all(line == line.rstrip() for line in normalised.split("\n")), repr(text)


def test_normalisation_keeps_a_program_s_indentation_and_the_dedup_key_folds_it():
    program = "次のコードです。\n\ndef f(xs):\n    for x in xs:\n        if x:\n            return x\n\tpass"
    assert normalise_text(program) == program, "a program's indentation is part of it"
    assert normalise_text("    x = 1\n    y = 2") == "x = 1\ny = 2", "indentation every line shares is cut"
    assert normalise_text("  - 東京\n    - 渋谷\n  - 大阪") == "- 東京\n  - 渋谷\n- 大阪", "a nested list"
    a = doc(output="def f():\n    return 1")
    b = doc(output="def f():\n        return 1")
    assert a.metadata["output"] == "def f():\n    return 1"
    assert a.metadata["content_hash"] == b.metadata["content_hash"], "copies that differ in indentation only"


class _AlwaysLid(JapaneseLanguageFilter):
    """The language filter as it was: fastText on every record."""

    def script_decision(self, kana, ratio):
        return None


def _real_rows(*extra: str) -> list[dict]:
    """Every record of the audit, the labels and the hand-written sources (and the ``extra`` files)."""
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    rows = []
    for path in [root / "data/audit/records.jsonl", root / "data/labels/real_records.jsonl",
                 *sorted((root / "data/handwritten").glob("*.jsonl")), *(root / e for e in extra)]:
        rows += [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return rows


def _row_document(i: int, r: dict):
    """Row ``r`` as the reader makes it a record: its messages (a JSON string or a list), else its fields."""
    import json

    messages = r.get("messages")
    if isinstance(messages, str):
        messages = json.loads(messages)
    kwargs = {"messages": messages} if messages else {
        "instruction": r.get("instruction") or "", "input_": r.get("input") or "", "output": r.get("output") or ""}
    return make_document(record_id=f"r{i}", source_id="s", **kwargs)


def test_skipping_fasttext_where_the_script_decides_changes_no_decision():
    """Every record of the audit, the labels and the hand-written sources, plus the edge cases of the
    script test: the same keep/drop and reason with and without the shortcut."""
    rows = _real_rows()
    edge = ["漢字だけ", "東京", "北京是中国的首都。", "これ", "Pythonで`print('a')`と書きます", "a" * 50 + "です",
            "日本の首都は東京都千代田区霞が関周辺です", "ok"]
    rows += [{"instruction": "質問", "output": text} for text in edge]
    fast, full = JapaneseLanguageFilter(LanguageConfig()), _AlwaysLid(LanguageConfig())
    skipped = 0
    for i, r in enumerate(rows):
        a, b = _row_document(i, r), _row_document(i, r)
        assert fast.filter(a) == full.filter(b), (i, a.text[:80])
        skipped += "lid_ja" not in a.metadata
    assert len(rows) > 2500 and skipped > 0.9 * len(rows), "most records never reach fastText"


def test_the_character_run_test_is_the_regex_it_replaced():
    """``reaches_char_run`` against the backreference regex: its table of characters that may run is
    the regex's class for every code point; runs one short, with a break, at the start, middle and
    end, of run and free characters; and the real answers of the audit sample."""
    import json
    import sys
    from pathlib import Path

    from curate.filters.record_filters import _RUN_CHAR, _RUN_FREE, reaches_char_run, reaches_char_run_many

    run_char = re.compile(_RUN_CHAR)
    assert [run_char.fullmatch(chr(c)) is None for c in range(sys.maxunicode + 1)] == _RUN_FREE.tolist()
    rows = Path("data/audit/records.jsonl").read_text(encoding="utf-8").splitlines()
    answers = [json.loads(r).get("output") or "" for r in rows]
    for n in (2, 3, 16):
        regex = re.compile(_RUN_CHAR + f"\\1{{{n - 1},}}")
        texts = [c * k + tail for c in ("あ", "！", "a", "ー", "-", " ", "\u3000", "#", "😀") for k in (n - 1, n, n + 2)
                 for tail in ("", "い", "-" * n)]
        texts += ["あ" * (n - 1) + "い" + "あ", "x" + "！" * n, "ab" + "ー" * n + "cd", "", "a"] + answers
        assert [reaches_char_run(t, n) for t in texts] == [regex.search(t) is not None for t in texts]
        # many texts in one pass: a run never spans two texts (each text ends where the next one's run starts)
        split = ["あ" * (n - 1), "あ", "", "！" * (n // 2), "！" * (n - n // 2), "-" * n]
        for many in (texts, split, split[::-1], texts[::3] + split):
            assert reaches_char_run_many(many, n).tolist() == [reaches_char_run(t, n) for t in many]


def test_batched_filters_decide_as_one_record_at_a_time():
    """``filter_batch`` of the quality and language filters (kana, kanji and character runs counted for
    the whole batch in one numpy pass) against ``filter`` record by record: the same results and the same
    measurements, on every record of the audit, the labels and the hand-written sources, chats included;
    and ``kana_counts_many`` against the regex count, kana and kanji of every block boundary."""
    from curate.filters.record_filters import kana_counts, kana_counts_many

    rows = _real_rows("data/sources/chat_ja.jsonl")

    def documents():
        return [_row_document(i, r) for i, r in enumerate(rows)]

    assert any(d.metadata["messages"] for d in documents()), "chats are among them"
    for filt in (JapaneseQualityFilter(QualityConfig()), JapaneseQualityFilter(QualityConfig(max_char_run=1)),
                 JapaneseLanguageFilter(LanguageConfig())):
        one, many = documents(), documents()
        expected = [filt.filter(d) for d in one]
        got = [r for start in range(0, len(many), 97) for r in filt.filter_batch(many[start:start + 97])]
        assert got == expected, type(filt).__name__
        assert [d.metadata for d in many] == [d.metadata for d in one]
        kept = sum(r is True for r in expected)
        assert 0 < kept < len(expected) or filt.config.max_char_run == 1, "both kept and dropped records"
    edges = [chr(c) for lo, hi in ((0x3040, 0x3100), (0x31EF, 0x3200), (0x33FF, 0x3401), (0x4DBE, 0x4E01),
                                   (0x9FFE, 0xA001), (0xF8FF, 0xF901), (0xFAFE, 0xFB01)) for c in range(lo, hi + 1)]
    texts = [d.text for d in documents()] + edges + ["".join(edges), "", "東京タワーは高い。"]
    kana, han = kana_counts_many(texts)
    assert list(zip(kana.tolist(), han.tolist())) == [kana_counts(t) for t in texts]
