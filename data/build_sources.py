"""Builds the embedded default sources in data/sources/ from the hand-written records.

    uv run python data/build_sources.py

Deterministic (fixed seed). The hand-written records live in data/handwritten/ (written by
us; see data/README.md). This script only (1) distributes them over five sources of
different shapes and licenses and (2) plants the cases the pipeline must catch, listing
every planted record in data/planted.jsonl with the stage and reason we expect.
"""

from __future__ import annotations

import csv
import json
import random
import re
import shutil
from pathlib import Path

HERE = Path(__file__).parent
HW = HERE / "handwritten"
OUT = HERE / "sources"
rng = random.Random(20261125)


def load(name: str) -> list[dict]:
    path = HW / f"{name}.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()] if path.exists() else []


planted: list[dict] = []


def plant(record_id: str, case: str, stage: str | None, reason: str | None, note: str = "") -> None:
    planted.append({"record_id": record_id, "case": case, "expect_stage": stage, "expect_reason": reason, "note": note})


# ---------------------------------------------------------------- perturbations
FULLWIDTH = {c: chr(ord(c) + 0xFEE0) for c in "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"}
HALFWIDTH_KATA = dict(zip("アイウエオカキクケコサシスセソタチツテトナニヌネノハヒフヘホマミムメモヤユヨラリルレロワヲンー",
                          "ｱｲｳｴｵｶｷｸｹｺｻｼｽｾｿﾀﾁﾂﾃﾄﾅﾆﾇﾈﾉﾊﾋﾌﾍﾎﾏﾐﾑﾒﾓﾔﾕﾖﾗﾘﾙﾚﾛﾜｦﾝｰ"))


def to_width_variant(text: str) -> str:
    return "".join(FULLWIDTH.get(c, HALFWIDTH_KATA.get(c, c)) for c in text)


def change_punctuation(text: str) -> str:
    return text.replace("。", "．").replace("、", "，").replace("？", "?").replace("！", "!")


WORD_SWAPS = [("とても", "非常に"), ("重要", "大切"), ("簡単", "容易"), ("方法", "やり方"), ("しかし", "ですが"),
              ("ください", "下さい"), ("できます", "可能です"), ("例えば", "たとえば"), ("場合", "とき"),
              ("必要", "不可欠"), ("使います", "用います"), ("まず", "最初に"), ("最後に", "終わりに"),
              ("理由", "わけ"), ("多く", "たくさん"), ("すべて", "全部"), ("考えます", "思います")]


def change_words(text: str) -> tuple[str, int]:
    changed = 0
    for old, new in WORD_SWAPS:
        if old in text and changed < 3:
            text = text.replace(old, new, 1)
            changed += 1
    return text, changed


def reorder_sentences(text: str) -> str | None:
    sentences = [s for s in re.split(r"(?<=。)", text) if s.strip()]
    if len(sentences) < 3 or "\n" in text:
        return None
    return "".join(sentences[1:] + sentences[:1])


def truncate(text: str) -> str | None:
    cut = int(len(text) * 0.55)
    while cut < len(text) - 5 and not re.match(r"[\u3041-\u309f\u4e00-\u9fff]", text[cut - 1]):
        cut += 1
    if "```" in text or "\n" in text[:cut] or cut >= len(text) - 5:
        return None
    return text[:cut]


# ---------------------------------------------------------------- sources
def alpaca_row(rid: str, r: dict) -> dict:
    return {"id": rid, "instruction": r["instruction"], "input": r.get("input", ""), "output": r["output"],
            "quality": r.get("quality"), "task": r.get("task"), "topic": r.get("topic")}


def build() -> None:
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    qa, reasoning, writing = load("qa_knowledge"), load("reasoning"), load("writing")
    text_tasks, code, general = load("text_tasks"), load("code_tech"), load("general_mixed")
    chats, chinese, english = load("multiturn"), load("chinese"), load("english")
    mixed_code, contaminated = load("mixed_code_ja"), load("contaminated")
    daily = load("daily_business")

    # 1. Alpaca JSONL, CC BY 4.0: knowledge QA + reasoning, and most planted cases
    alpaca = [alpaca_row(f"qa-{i:04d}", r) for i, r in enumerate(qa)]
    alpaca += [alpaca_row(f"rs-{i:04d}", r) for i, r in enumerate(reasoning)]
    originals = list(alpaca)
    for i, r in enumerate(english):
        rid = f"en-{i:02d}"
        alpaca.append(alpaca_row(rid, r))
        plant(f"jcurate-alpaca:{rid}", "English record", "language", "not_japanese_script")
    for i, r in enumerate(chinese[: len(chinese) // 2]):
        rid = f"zh-{i:02d}"
        alpaca.append(alpaca_row(rid, r))
        plant(f"jcurate-alpaca:{rid}", f"Chinese record ({r.get('script')})", "language", "not_japanese_script")
    empties = rng.sample(originals, 4)
    for i, r in enumerate(empties):
        rid = f"empty-{i}"
        alpaca.append({**r, "id": rid, "output": "" if i < 2 else "  \n "})
        plant(f"jcurate-alpaca:{rid}", "empty output", "quality", "empty_output")
    n_trunc = 0
    for r in rng.sample(originals, len(originals)):
        cut = truncate(r["output"])
        if cut and len(cut) >= 40 and n_trunc < 6:
            rid = f"trunc-{n_trunc}"
            alpaca.append({**r, "id": rid, "output": cut})
            plant(f"jcurate-alpaca:{rid}", "truncated output", "quality", "truncated_output", f"cut from {r['id']}")
            n_trunc += 1
    spam = [
        ("おすすめの商品を教えて", "今すぐクリック！激安セール開催中！\n" * 12, "repeated_sentences"),
        ("自己紹介をしてください", "よろしくお願いします。" * 60, "repeated_sentences"),
        ("感想を一言で", "すごい" + "！" * 40, "repeated_characters"),
        ("おすすめのサイトは？", "www" * 20 + "見てね", "repeated_characters"),
        ("宣伝文を書いて", "\n".join(["限定価格でご提供！今だけ！"] * 6 + ["詳しくはこちら"]), "repeated_sentences"),
    ]
    for i, (ins, out, reason) in enumerate(spam):
        rid = f"spam-{i}"
        alpaca.append({"id": rid, "instruction": ins, "input": "", "output": out, "quality": 1, "task": "writing", "topic": "spam"})
        plant(f"jcurate-alpaca:{rid}", "repetitive spam", "quality", reason)
    for i, r in enumerate(contaminated):
        rid = f"contam-{i}"
        alpaca.append(alpaca_row(rid, r))
        plant(f"jcurate-alpaca:{rid}", f"eval-set {r.get('kind', 'copy')} (ELYZA-style item {r.get('eval_index')})",
              "decontamination", "contaminated")
    for i, r in enumerate(mixed_code[:6]):
        rid = f"codeja-{i}"
        alpaca.append(alpaca_row(rid, r))
        plant(f"jcurate-alpaca:{rid}", "Japanese dominated by code / English terms", None, None, "must pass")
    rng.shuffle(alpaca)
    # copies after their originals: the dedup rule keeps the earlier row
    for i, r in enumerate(rng.sample(originals, 5)):
        rid = f"dup-within-{i}"
        alpaca.append({**r, "id": rid})
        plant(f"jcurate-alpaca:{rid}", "exact duplicate within a source", "exact_dedup", "exact_duplicate", f"copy of {r['id']}")
    lines = [json.dumps(r, ensure_ascii=False) for r in alpaca]
    # malformed rows: bad JSON, missing field, wrong type, not an object, invalid UTF-8
    bad = [
        ('{"id": "bad-json", "instruction": "東京の人口は？", "output": "約1400万人です。', "bad JSON"),
        (json.dumps({"id": "bad-missing", "instruction": "日本の首都はどこですか？"}, ensure_ascii=False), "missing output field"),
        (json.dumps({"id": "bad-type", "instruction": "1+1は？", "output": 2}, ensure_ascii=False), "wrong type"),
        (json.dumps(["not", "an", "object"]), "not an object"),
    ]
    data = [line.encode("utf-8") for line in lines]
    for line, _ in bad + [("", "")]:  # inserted, never replacing a record
        data.insert(rng.randrange(len(data)), line.encode("utf-8"))
    positions = [data.index(line.encode("utf-8")) for line, _ in bad] + [data.index(b"")]
    utf8_pos = positions[-1]
    data[utf8_pos] = json.dumps({"id": "bad-utf8", "instruction": "富士山の高さは？", "output": "3776メートルです。"},
                                ensure_ascii=False).encode("utf-8").replace("メートル".encode(), b"\xff\xfe\x80")
    (OUT / "alpaca_ja.jsonl").write_bytes(b"\n".join(data) + b"\n")
    for (line, case), pos in zip(bad, positions):
        # a row without a readable id is named by its line (curate/reading/record_ids.py)
        rid = "jcurate-alpaca:" + (json.loads(line)["id"] if case not in ("bad JSON", "not an object") else f"#line-{pos + 1}")
        plant(rid, f"malformed row: {case}", "read", "malformed_row", f"line {pos + 1}")
    plant(f"jcurate-alpaca:#line-{utf8_pos + 1}", "malformed row: invalid UTF-8", "read", "malformed_row",
          f"line {utf8_pos + 1}")

    # 2. Parquet with its own column names, CC BY-SA 4.0: text tasks + writing (hand labels)
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"uid": f"tx-{i:04d}", "prompt": r["instruction"], "context": r.get("input", ""), "response": r["output"],
             "quality": r.get("quality")} for i, r in enumerate(text_tasks)]
    rows += [{"uid": f"wr-{i:04d}", "prompt": r["instruction"], "context": r.get("input", ""), "response": r["output"],
              "quality": r.get("quality")} for i, r in enumerate(writing)]
    rows += [{"uid": f"db-{i:04d}", "prompt": r["instruction"], "context": r.get("input", ""), "response": r["output"],
              "quality": r.get("quality")} for i, r in enumerate(daily)]
    for i, r in enumerate(rng.sample(originals, 5)):
        uid = f"xdup-{i}"
        rows.append({"uid": uid, "prompt": r["instruction"], "context": r["input"], "response": r["output"], "quality": r["quality"]})
        plant(f"jcurate-labelled:{uid}", "exact duplicate across sources", "exact_dedup", "exact_duplicate", f"copy of jcurate-alpaca:{r['id']}")
    long_originals = [r for r in originals if len(r["output"]) >= 120]
    picks = rng.sample(long_originals, 24)
    for i, r in enumerate(picks[:5]):
        uid = f"width-{i}"
        rows.append({"uid": uid, "prompt": to_width_variant(r["instruction"]), "context": to_width_variant(r["input"]),
                     "response": to_width_variant(r["output"]), "quality": r["quality"]})
        plant(f"jcurate-labelled:{uid}", "full-width / half-width variant", "exact_dedup", "exact_duplicate",
              f"of jcurate-alpaca:{r['id']}; NFKC makes it identical")
    for i, r in enumerate(picks[5:10]):
        uid = f"punct-{i}"
        rows.append({"uid": uid, "prompt": change_punctuation(r["instruction"]), "context": r["input"],
                     "response": change_punctuation(r["output"]), "quality": r["quality"]})
        plant(f"jcurate-labelled:{uid}", "near-duplicate: changed punctuation", "near_dedup", "near_duplicate", f"of jcurate-alpaca:{r['id']}")
    n_words = 0
    for r in picks[10:]:
        out, changed = change_words(r["output"])
        if changed >= 2 and n_words < 5:
            uid = f"words-{n_words}"
            rows.append({"uid": uid, "prompt": r["instruction"], "context": r["input"], "response": out, "quality": r["quality"]})
            plant(f"jcurate-labelled:{uid}", f"near-duplicate: {changed} words changed", "near_dedup", "near_duplicate", f"of jcurate-alpaca:{r['id']}")
            n_words += 1
    n_reorder = 0
    for r in long_originals:
        out = reorder_sentences(r["output"])
        if out and n_reorder < 5:
            uid = f"reorder-{n_reorder}"
            rows.append({"uid": uid, "prompt": r["instruction"], "context": r["input"], "response": out, "quality": r["quality"]})
            plant(f"jcurate-labelled:{uid}", "near-duplicate: re-ordered sentences", "near_dedup", "near_duplicate", f"of jcurate-alpaca:{r['id']}")
            n_reorder += 1
    for i, r in enumerate(chinese[len(chinese) // 2:]):
        uid = f"zh-{i:02d}"
        rows.append({"uid": uid, "prompt": r["instruction"], "context": r.get("input", ""), "response": r["output"], "quality": None})
        plant(f"jcurate-labelled:{uid}", f"Chinese record ({r.get('script')})", "language", "not_japanese_script")
    rows.append({"uid": "null-output", "prompt": "日本で一番高い山は？", "context": "", "response": None, "quality": None})
    plant("jcurate-labelled:null-output", "malformed row: null output", "read", "malformed_row")
    rng.shuffle(rows)
    schema = pa.schema([("uid", pa.string()), ("prompt", pa.string()), ("context", pa.string()),
                        ("response", pa.string()), ("quality", pa.int64())])
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), OUT / "labelled_ja.parquet")

    # 3. Multi-turn, ShareGPT-style JSONL, CC BY-NC-SA 4.0
    with open(OUT / "chat_ja.jsonl", "w", encoding="utf-8") as f:
        for c in chats:
            conv = [{"from": {"user": "human", "assistant": "gpt"}.get(m["role"], m["role"]), "value": m["content"]}
                    for m in c["messages"]]
            f.write(json.dumps({"conversation_id": c["id"], "topic": c.get("topic"), "conversations": conv},
                               ensure_ascii=False) + "\n")

    # 4. CSV, Apache-2.0: programming Q&A (Japanese with code)
    with open(OUT / "code_ja.csv", "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "question", "code", "answer", "quality"])
        for i, r in enumerate(code):
            w.writerow([f"code-{i:04d}", r["instruction"], r.get("input", ""), r["output"], r.get("quality")])
        for i, r in enumerate(mixed_code[6:]):
            w.writerow([f"codeja-{i}", r["instruction"], r.get("input", ""), r["output"], ""])
            plant(f"jcurate-code:codeja-{i}", "Japanese dominated by code / English terms", None, None, "must pass")
        w.writerow(["code-extra-cells", "質問", "", "回答です。", "3", "余分なセル"])
    plant("jcurate-code:code-extra-cells", "malformed row: more cells than columns", "read", "malformed_row")

    # 5. HF datasets save_to_disk, outputs declared as written by Gemma (model terms)
    from datasets import Dataset

    gen = [{"id": f"gm-{i:04d}", "instruction": r["instruction"], "input": r.get("input", ""), "output": r["output"],
            "quality": r.get("quality")} for i, r in enumerate(general)]
    Dataset.from_list(gen).save_to_disk(str(OUT / "synthetic_gemma"))

    # not planted: overlaps our own writers made by accident, found by the decontamination stage
    plant("jcurate-alpaca:rs-0029", "accidental eval overlap: same puzzle set-up as an ELYZA-style item",
          "decontamination", "contaminated", "found, not planted")
    plant("jcurate-synthetic:gm-0027",
          "same prompt, a different answer: kept (near_dedup.same_prompt_different_answer: keep)", None, None,
          "same dice question as jcurate-alpaca:rs-0002, answer reworded and extended (answer 5-gram Jaccard 0.43)")
    plant("jcurate-synthetic:gm-0109", "accidental eval overlap: shares a sentence of the food-loss passage",
          "decontamination", "contaminated", "found, not planted")

    with open(HERE / "planted.jsonl", "w", encoding="utf-8") as f:
        for p in planted:
            f.write(json.dumps(p, ensure_ascii=False) + "\n")
    total = len(alpaca) + len(bad) + 1 + len(rows) + len(chats) + len(code) + len(mixed_code[6:]) + 1 + len(gen)
    print(f"wrote {OUT}: {total} rows in 5 sources, {len(planted)} planted cases -> data/planted.jsonl")


if __name__ == "__main__":
    build()
