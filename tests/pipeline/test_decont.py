"""Decontamination in one process (the service, the eval's overlap check): loaded from the eval files,
nothing left on disk."""

from __future__ import annotations

import json
import tempfile

from curate.config import DecontaminationConfig
from curate.decont.decontaminate import loaded_decont_filter
from curate.records import make_document


def test_loaded_filter_catches_a_shared_ngram_and_leaves_no_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    c = DecontaminationConfig()
    filt = loaded_decont_filter(c.eval_files, c)
    assert list(tmp_path.iterdir()) == []  # index and prompts are in memory, the folder is gone

    first = json.loads(open(c.eval_files[0], encoding="utf-8").readline())["input"]
    # a long window of the prompt inside a longer, different question: only the n-gram index can see it
    leak = make_document(record_id="leak", source_id="t", instruction="次の問題を友達に出したいです。"
                         + first[:60] + "この問題の難しさを教えてください。", output="はい。")
    clean = make_document(record_id="clean", source_id="t", instruction="日本の首都はどこですか。", output="東京です。")
    verdict = filt.filter(leak)
    assert verdict == (False, "contaminated")
    assert leak.metadata["drop_value"].startswith("elyza_style: ")
    assert filt.filter(clean) is True


def test_mecab_tokens_are_the_text_without_whitespace_for_every_character():
    """What NgramWindows rests on: fugashi's tokens, joined, are the text's characters in order with
    only whitespace left out (a NUL ends MeCab's input), for every code point of the BMP."""
    from curate.text.tokenizers import FugashiTokenizer

    tokenizer = FugashiTokenizer()
    differ = []
    for code in range(1, 0x10000):
        if 0xD800 <= code <= 0xDFFF:
            continue
        text = "東" + chr(code) + "b" + chr(code) + "京"
        if "".join(tokenizer.word_tokenize(text)) != "".join(text.split()):
            differ.append(hex(code))
    assert differ == []
    assert tokenizer.word_tokenize("東京\x00大阪") == ["東京"]


def _decisions(filt, docs):
    out = []
    for doc in docs:
        verdict = filt.filter(doc)
        out.append((doc.id, verdict, doc.metadata.get("drop_value") if verdict is not True else None))
    return out


def test_ngram_windows_change_no_decision_on_real_records_and_leaks(tmp_path):
    """Records of public datasets (the audit and label samples) and leaks of every eval prompt cut
    around the window length, with spaces put in, decided with and without the window test."""
    import random

    from curate.decont.decontaminate import InstructionDecontFilter, build_decont_index, eval_prompts
    from curate.records import make_document
    from tests.conftest import ROOT

    eval_files = [str(ROOT / "data/eval" / f) for f in ("elyza_tasks_100.jsonl", "elyza_style.jsonl",
                                                          "mt_bench_style.jsonl")]
    build_decont_index(eval_files, tmp_path, 13)
    with_windows = InstructionDecontFilter(str(tmp_path), 13)
    without = InstructionDecontFilter(str(tmp_path), 13)
    without.ngram_windows = None  # every record through the n-gram test
    windows = with_windows.ngram_windows
    assert windows is not None and windows.chars >= 13 and windows.windows

    docs = []
    for name in ("data/audit/records.jsonl", "data/labels/real_records.jsonl"):
        for line in (ROOT / name).read_text(encoding="utf-8").splitlines():
            r = json.loads(line)
            docs.append(make_document(record_id=f"{name}:{r['id']}", source_id=r["source_id"],
                                      instruction=r.get("instruction") or "", input_=r.get("input") or "",
                                      output=r.get("output") or ""))
    rng = random.Random(0)
    prompts = [p for f in eval_files for p in eval_prompts(f) if len(p) > 40]
    for i, prompt in enumerate(prompts):
        length = windows.chars + rng.randint(-4, 40)
        start = rng.randint(0, max(len(prompt) - length, 0))
        piece = list(prompt[start:start + length])
        for _ in range(rng.randint(0, 3)):  # whitespace inside the copy: MeCab leaves it out
            piece.insert(rng.randint(0, len(piece)), rng.choice([" ", "\u3000", "\n"]))
        docs.append(make_document(record_id=f"leak{i}", source_id="t", output="はい。",
                                  instruction="以下について説明してください。" + "".join(piece) + "よろしくお願いします。"))
    assert len(docs) > 2000
    first, second = _decisions(with_windows, docs), _decisions(without, docs)
    assert first == second
    dropped = [d for d in first if d[1] is not True]
    assert any(d[0].startswith("leak") and "contaminated" in str(d[1]) and ": " in d[2] for d in dropped)


def test_the_first_prompt_by_length_then_order_is_named_for_a_near_copy():
    from curate.decont.decontaminate import PromptMatcher, normalise_prompt

    prompts = {normalise_prompt(p): t for p, t in [("伊勢神宮は何県にありますか", "long"), ("伊勢神宮は何県か", "a"),
                                                   ("伊勢神社は何県か", "b"), ("出雲大社は何県か", "c")]}
    m = PromptMatcher(prompts, min_chars=8, near_edits=2)
    # within two edits of both a and b (same length): a, listed first; not c (three edits); not the long one
    assert m.match("伊勢神宫は何県か") == "a: near copy (1 edits)"
    assert m.match("伊勢神社は何県か") == "b: whole prompt"
    assert m.match("出雲大社はどの県?") is None


def test_the_batch_windows_test_answers_as_the_one_text_test():
    from curate.decont.decontaminate import NgramWindows

    windows = NgramWindows(4, ["東京タワーの高さは何メートル", "富士山に登る方法"])
    texts = ["東京タワーの高さ", "とうきょう", "富士山に登", "富士 山に登る", "", "abc", "高さは何メ"]
    assert windows.may_share_many(texts) == [windows.may_share(t) for t in texts] == [
        True, False, True, True, False, False, True]
    assert NgramWindows(4, []).may_share_many(texts) == [False] * len(texts)
