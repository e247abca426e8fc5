"""Statistics recorded a batch at a time equal datatrove's, recorded one document at a time."""

from __future__ import annotations

import math

from datatrove.pipeline.filters.base_filter import BaseFilter
from datatrove.pipeline.writers.parquet import ParquetWriter

from curate.config import QualityConfig
from curate.filters.record_filters import JapaneseQualityFilter
from curate.records import make_document
from curate.running.outputs import RecordWriter


def _docs():
    answers = ["東京は日本の首都です。", "はい", "あ" * 30, "富士山は日本一高い山で、標高は3776メートルです。", ""]
    return [make_document(record_id=f"s:{i}", source_id="s", instruction="質問です。" * (1 + i % 3),
                          output=answers[i % len(answers)] * (1 + i % 4)) for i in range(600)]


def _close(a, b) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, float | int) and isinstance(b, float | int):
        return type(a) is type(b) and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return a == b


class _PerDocument(JapaneseQualityFilter):
    run = BaseFilter.run


class _PerDocumentWriter(RecordWriter):
    run = ParquetWriter.run


def test_filter_and_writer_statistics_match_datatrove_s_per_document_updates(tmp_path):
    batched, one_by_one = JapaneseQualityFilter(QualityConfig()), _PerDocument(QualityConfig())
    kept = [d.id for d in batched.run(iter(_docs()))]
    assert kept == [d.id for d in one_by_one.run(iter(_docs()))] and 0 < len(kept) < 600
    a, b = batched.stats.to_dict()["stats"], one_by_one.stats.to_dict()["stats"]
    assert _close(a, b), (a, b)
    assert {"total", "forwarded", "dropped", "doc_len"} <= a.keys() and any(k.startswith("dropped_") for k in a)

    writers = RecordWriter(str(tmp_path / "a")), _PerDocumentWriter(str(tmp_path / "b"))
    for w in writers:
        list(w.run(iter(_docs())))
    a, b = (w.stats.to_dict()["stats"] for w in writers)
    assert _close(a, b), (a, b)
    import pyarrow.parquet as pq

    assert pq.read_table(tmp_path / "a/00000.parquet").equals(pq.read_table(tmp_path / "b/00000.parquet"))


def test_intermediate_reader_gives_back_the_documents_datatrove_s_reader_gives(tmp_path):
    from datatrove.pipeline.readers.parquet import ParquetReader

    from curate.running.outputs import intermediate_reader, row_to_document

    docs = _docs()
    for i, d in enumerate(docs):
        d.metadata.update(kana_ratio=i / 600, label=None if i % 2 else 3.0)
        if i % 5 == 0:
            d.metadata["messages"] = [{"role": "user", "content": "質問"}, {"role": "assistant", "content": f"答え{i}"}]
    list(RecordWriter(str(tmp_path / "shards")).run(iter(docs)))
    ours = list(intermediate_reader(str(tmp_path / "shards")).run())
    reader = ParquetReader(str(tmp_path / "shards"), adapter=row_to_document, read_metadata=True,
                           glob_pattern="*.parquet")
    reader.add_file_path = False
    theirs = list(reader.run())
    assert [(d.id, d.text, d.metadata) for d in ours] == [(d.id, d.text, d.metadata) for d in theirs]
    assert len(ours) == 600 and ours[5].metadata["messages"][1]["content"] == "答え5"
