"""Decontamination in one process (the service, the eval's overlap check): loaded from the eval files,
nothing left on disk."""

from __future__ import annotations

import json
import tempfile

from curate.config import DecontaminationConfig
from curate.decont import loaded_decont_filter
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
