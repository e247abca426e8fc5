"""Parquet shards of records: kept, dropped (with stage, reason, value) and intermediates.

One fixed schema for every shard, so DuckDB reads them all with one ``read_parquet`` glob.
Measurements the filters leave in ``doc.metadata`` go to the ``signals`` JSON column.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa
from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.readers.parquet import ParquetReader
from datatrove.pipeline.writers.parquet import ParquetWriter
from datatrove.utils.batching import batched
from datatrove.utils.typeshelper import StatHints

from curate.batch_stats import count, record_doc_stats
from curate.columns import _NUMBERS, arrow_numbers, arrow_strings, numpy_of  # noqa: F401 (numpy_of: re-exported)

RECORD_COLUMNS = {
    "record_id": pa.string(),
    "source_id": pa.string(),
    "file": pa.string(),
    "row": pa.int64(),
    "source_order": pa.int32(),
    "instruction": pa.string(),
    "input": pa.string(),
    "output": pa.string(),
    "messages": pa.string(),  # JSON list of {role, content}, or null
    "text": pa.string(),
    "content_hash": pa.string(),
    "generated_by": pa.string(),
    "label": pa.float64(),
    "stage": pa.string(),  # null for kept records
    "reason": pa.string(),
    "value": pa.string(),
    "signals": pa.string(),  # JSON: kana_ratio, lid_ja, ...
    "shipped_score": pa.float64(),  # kept records: the shipped scorer's score (null where it is off)
    "shipped_model": pa.string(),  # and its model id
}
RECORD_SCHEMA = pa.schema(list(RECORD_COLUMNS.items()))
_FIXED = set(RECORD_COLUMNS) - {"record_id", "text", "stage", "reason", "value", "signals"}
_NOT_SIGNALS = _FIXED | {"read_error", "read_reason", "drop_value", "filter_reason", "file_path"}
# json.dumps(x, ensure_ascii=False[, default=str]) without building an encoder per call (a quarter of its time)
_messages_json = json.JSONEncoder(ensure_ascii=False).encode
_signals_json = json.JSONEncoder(ensure_ascii=False, default=str).encode


def record_batch(columns: dict[str, list], schema: pa.Schema = None) -> pa.RecordBatch:
    """``pa.RecordBatch.from_pydict(columns, schema)`` (``RECORD_SCHEMA`` by default) for Python lists
    of strings and numbers, without pyarrow's list converter (``arrow_strings``); Arrow arrays pass as
    they are."""
    schema = schema or RECORD_SCHEMA
    arrays = []
    for f in schema:
        values = columns[f.name]
        if isinstance(values, pa.Array):
            arrays.append(values)
        elif f.type == pa.string():
            arrays.append(arrow_strings(values))
        elif f.type in _NUMBERS:
            arrays.append(arrow_numbers(values, f.type))
        else:
            arrays.append(pa.array(values, f.type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def document_to_row(doc: Document, stage: str | None = None) -> dict:
    meta = doc.metadata
    row = {key: meta.get(key) for key in _FIXED}
    row["messages"] = _messages_json(meta["messages"]) if meta.get("messages") else None
    row["record_id"] = doc.id
    row["text"] = doc.text
    row["stage"] = stage
    row["reason"] = meta.get("filter_reason") if stage else None
    row["value"] = meta.get("drop_value") if stage else None
    signals = {k: v for k, v in meta.items() if k not in _NOT_SIGNALS}
    row["signals"] = _signals_json(signals) if signals else None
    return row


def documents_to_columns(docs: list[Document], stage: str | None = None) -> dict[str, list]:
    """``document_to_row`` of many documents, as columns (one Arrow batch, no dict per row)."""
    metas = [d.metadata for d in docs]
    columns = {key: [m.get(key) for m in metas] for key in _FIXED}
    columns["messages"] = [_messages_json(m["messages"]) if m.get("messages") else None for m in metas]
    columns["record_id"] = [d.id for d in docs]
    columns["text"] = [d.text for d in docs]
    columns["stage"] = [stage] * len(docs)
    columns["reason"] = [m.get("filter_reason") for m in metas] if stage else [None] * len(docs)
    columns["value"] = [m.get("drop_value") for m in metas] if stage else [None] * len(docs)
    signals = []
    for m in metas:
        found = {k: v for k, v in m.items() if k not in _NOT_SIGNALS}
        signals.append(_signals_json(found) if found else None)
    columns["signals"] = signals
    return columns


def row_to_document(self, data: dict, path: str, id_in_file) -> dict:
    """ParquetReader adapter: the inverse of ``document_to_row`` for intermediate shards."""
    metadata = {key: data.get(key) for key in _FIXED}
    metadata["messages"] = json.loads(data["messages"]) if data.get("messages") else None
    if data.get("signals"):
        metadata.update(json.loads(data["signals"]))
    return {"text": data["text"], "id": data["record_id"], "metadata": metadata}


class RecordWriter(ParquetWriter):
    """Writes records with the fixed schema; ``stage`` set means these are dropped records."""

    name = "📒 jcurate records"

    def __init__(self, output_folder: str, stage: str | None = None, compression: str = "snappy"):
        super().__init__(
            output_folder,
            output_filename="${rank}.parquet",
            compression=compression,
            schema=RECORD_SCHEMA,
            max_file_size=-1,
            use_content_defined_chunking=False,
        )
        self.stage = stage
        self.adapter = self._to_row
        self._pending: dict[str, list[Document]] = {}  # write_documents' rows not yet in a row group

    def _to_row(self, document: Document) -> dict:
        return document_to_row(document, self.stage)

    def _get_output_filename(self, document: Document, rank: int | str = 0, **kwargs) -> str:
        """``${rank}.parquet`` names the file by the task only: substituting the template with every
        record's metadata, as datatrove does, was ~4% of the filter stage."""
        if kwargs:
            return super()._get_output_filename(document, rank, **kwargs)
        return f"{str(rank).zfill(5)}.parquet"

    def write_documents(self, docs: list[Document], rank: int = 0) -> None:
        """``write`` of each document, a batch at a time: rows built as Arrow columns, a row group per
        ``batch_size`` rows (as datatrove's writer), statistics recorded at once (``curate.batch_stats``).
        The same file, rows and statistics."""
        if not docs:
            return
        filename = self._get_output_filename(docs[0], rank)
        pending = self._pending.setdefault(filename, [])
        pending.extend(docs)
        if len(pending) >= self.batch_size:
            self._flush_pending(filename)
        count(self, self._get_output_filename(docs[0], "XXXXX"), len(docs))
        count(self, StatHints.total, len(docs))
        record_doc_stats(self, docs)

    def _flush_pending(self, filename: str) -> None:
        import pyarrow.parquet as pq

        docs = self._pending.pop(filename, None)
        if not docs:
            return
        handle = self._get_output_file_with_retry(filename)
        if filename not in self._writers:
            self._writers[filename] = pq.ParquetWriter(
                handle, schema=self.schema, compression=self.compression,
                use_content_defined_chunking=self.use_content_defined_chunking, write_page_index=self.write_page_index)
        self._write_batch(filename)  # rows ``write`` collected before, if any, first
        self._writers[filename].write_batch(
            record_batch(documents_to_columns(docs, self.stage), self.schema))

    def close_file(self, filename: str) -> None:
        self._flush_pending(filename)
        super().close_file(filename)

    def close(self) -> None:
        for filename in list(self._pending):  # a file with only pending rows has no writer yet
            self._flush_pending(filename)
        super().close()

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        """datatrove's ``DiskWriter.run`` (write each document, then pass it on) a batch at a time."""
        with self:
            for docs in batched(data, self.batch_size):
                with self.track_time("batch"):
                    self.write_documents(docs, rank)
                yield from docs


class IntermediateReader(ParquetReader):
    """Reads the shards ``RecordWriter`` wrote, back into the same documents (``row_to_document``),
    a batch of rows at a time: datatrove's reader made a dict per row, resolved the file's path
    per document and recorded statistics per document (a third of the dedup stage's time)."""

    name = "📒 Parquet (jcurate records)"

    def __init__(self, folder: str, duplicates_folder: str | None = None, dropped_folder: str | None = None):
        super().__init__(folder, adapter=row_to_document, read_metadata=True, glob_pattern="*.parquet")
        self.add_file_path = False  # no ``file_path`` per document: nothing reads it
        # the dedup plan's duplicates per shard (``curate.dedup.plan.write_duplicate_lists``): copied to
        # ``dropped_folder/<stage>/`` as rows, in bulk, and not turned into documents
        self.duplicates_folder, self.dropped_folder = duplicates_folder, dropped_folder

    def _duplicates(self, filepath: str) -> tuple[np.ndarray, pa.Table | None]:
        if not self.duplicates_folder:
            return np.zeros(0, dtype=np.int64), None
        import pyarrow.parquet as pq

        from curate.dedup.plan import duplicates_path

        # a ParquetFile, not read_table: that imports pyarrow.dataset, which imports pandas (curate.running.worker_server)
        with pq.ParquetFile(duplicates_path(self.duplicates_folder, filepath)) as listed_file:
            listed = listed_file.read()
        return numpy_of(listed.column("row")), listed

    def _copy_duplicates(self, batch: pa.RecordBatch, rows: np.ndarray, listed: pa.Table, writers: dict,
                         filepath: str) -> None:
        """The batch's rows at ``rows`` to ``dropped/<stage>/``, with the plan's stage, reason and value."""
        import pyarrow.parquet as pq

        from curate.dedup.plan import DUPLICATE_REASONS

        picked = batch.take(pa.array(rows))
        stages = np.array(listed.column("stage").to_pylist(), dtype=object)
        for stage, reason in DUPLICATE_REASONS.items():
            mine = stages == stage
            if not mine.any():
                continue
            part = picked.filter(pa.array(mine))
            columns = {name: part.column(name) for name in RECORD_SCHEMA.names}
            columns.update(stage=arrow_strings([stage] * len(part)), reason=arrow_strings([reason] * len(part)),
                           value=listed.column("value").filter(pa.array(mine)).combine_chunks())
            if stage not in writers:
                target = f"{self.dropped_folder}/{stage}/{filepath.rsplit('/', 1)[-1]}"
                os.makedirs(os.path.dirname(target), exist_ok=True)
                writers[stage] = pq.ParquetWriter(target, RECORD_SCHEMA, compression="snappy")
            writers[stage].write_batch(record_batch(columns))
            self.stat_update(f"dropped_{stage}", value=len(part))

    def read_file(self, filepath: str):
        import pyarrow.parquet as pq

        duplicates, listed = self._duplicates(filepath)
        writers: dict = {}
        offset = 0
        try:
            with self.data_folder.open(filepath, "rb") as f, pq.ParquetFile(f) as pqf:
                for batch in pqf.iter_batches(batch_size=self.batch_size):
                    with self.track_time("batch"):
                        start, offset = offset, offset + batch.num_rows
                        a, b = np.searchsorted(duplicates, [start, offset])
                        if a < b:
                            rows = duplicates[a:b] - start
                            self._copy_duplicates(batch, rows, listed.slice(a, b - a), writers, filepath)
                            keep = np.ones(batch.num_rows, dtype=bool)
                            keep[rows] = False
                            batch = batch.filter(pa.array(keep))
                        columns = batch.to_pydict()
                        fixed = {key: columns[key] for key in _FIXED if key != "messages"}
                        docs = []
                        for i, (text, rid, messages, signals) in enumerate(
                                zip(columns["text"], columns["record_id"], columns["messages"], columns["signals"])):
                            if not text:
                                continue  # as datatrove's reader: a row without text is no document
                            metadata = {key: values[i] for key, values in fixed.items()}
                            metadata["messages"] = json.loads(messages) if messages else None
                            if signals:
                                metadata.update(json.loads(signals))
                            docs.append(Document(text=text, id=rid, metadata=metadata))
                        record_doc_stats(self, docs)
                    yield from docs
        finally:
            for writer in writers.values():
                writer.close()

    def update_doc_stats(self, document: Document) -> None:
        """Recorded per batch in ``read_file``."""


def dropped_writer(out_dir: str, stage: str) -> RecordWriter:
    return RecordWriter(f"{out_dir}/dropped/{stage}", stage=stage)


def intermediate_reader(folder: str, duplicates_folder: str | None = None, dropped_folder: str | None = None
                        ) -> IntermediateReader:
    return IntermediateReader(folder, duplicates_folder, dropped_folder)
