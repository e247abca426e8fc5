"""Reading every source shape into the record model.

Why not datatrove's JsonlReader/ParquetReader/CsvReader: they skip a bad JSON line with a
log warning, abandon the rest of a file on a UnicodeDecodeError, and drop rows with no
text, so those rows vanish without a decision. Here every row becomes a Document; a
malformed one carries ``metadata["read_error"]`` (file, row, field, reason) and the
``ReadErrorFilter`` drops it with stage ``read``, so nothing is lost and the run goes on.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from pathlib import Path

from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.readers.base import BaseReader
from datatrove.utils.batching import batched
from datatrove.utils.logging import logger

from core.errors import JcurateError, first_line
from curate.batch_stats import count, record_doc_stats
from curate.reading.manifest import ROLE_FIELDS_NOTE, Source
from curate.records import ROLE_ALIASES, ROLES, content_hash, make_document


class RowError(ValueError):
    """A row that cannot become a record; the message names the field."""


def open_binary(path: str):
    """The file's bytes, decompressed when its name ends in .gz, .bz2 or .zst."""
    suffix = Path(path).suffix
    if suffix == ".gz":
        import gzip

        return gzip.open(path, "rb")
    if suffix == ".bz2":
        import bz2

        return bz2.open(path, "rb")
    if suffix == ".zst":
        import io

        import zstandard

        return io.BufferedReader(zstandard.open(path, "rb"))  # its reader alone cannot iterate lines
    return open(path, "rb")


# what a compressed stream raises when it is truncated or corrupt
DECOMPRESSION_ERRORS = (EOFError, OSError, ValueError)
READ_BATCH = 1000  # rows turned into records at a time (``SourceReader.run``)


def _read_prefix(path: str, limit: int) -> bytes:
    try:
        with open_binary(path) as f:
            return f.read(limit)
    except DECOMPRESSION_ERRORS:
        return b""


JAPANESE_ENCODINGS = ("cp932", "euc_jp", "iso2022_jp")
_JAPANESE = re.compile(r"[\u3041-\u30ff\u4e00-\u9fff]")


def encoding_hint(path: str, limit: int = 1 << 16) -> str:
    """For a file that is not UTF-8: ``" (the file reads as cp932: set `encoding: cp932` on the source)"``,
    naming the first Japanese legacy encoding its first bytes decode in, else ``""``."""
    raw = _read_prefix(path, limit)
    for enc in JAPANESE_ENCODINGS:
        try:
            text = raw.decode(enc)
        except UnicodeDecodeError:
            try:  # the sample may end inside a multi-byte character
                text = raw[: raw.rfind(b"\n") + 1].decode(enc)
            except UnicodeDecodeError:
                continue
        if _JAPANESE.search(text):
            return f" (the file reads as {enc}: set `encoding: {enc}` on the source)"
    return ""


def iter_jsonl(path: str, encoding: str | None = None, keep=None) -> Iterator[tuple[int, dict | None, str, str | None]]:
    """Yields (row, parsed, raw text, error). Rows are 0-based non-blank lines; with ``keep``, only
    the rows it accepts (the others are counted, not decoded: how tasks split one file).

    ``encoding`` None is UTF-8, with or without a byte-order mark. A compressed file that breaks
    off (truncated, corrupt) ends with one dropped row saying where: what follows cannot be read."""
    import orjson

    hint = None
    row, lineno = -1, 0
    with open_binary(path) as f:
        lines = iter(f)
        while True:
            try:
                raw = next(lines)
            except StopIteration:
                return
            except DECOMPRESSION_ERRORS as e:
                if keep is None or keep(row + 1):
                    yield (row + 1, None, "", f"line {lineno + 1}: the compressed file breaks off here "
                           f"({first_line(e, 150)}); the rest of it is unreadable")
                return
            lineno += 1
            if lineno == 1 and encoding is None:
                raw = raw.removeprefix(b"\xef\xbb\xbf")
            if not raw.strip():
                continue
            row += 1
            if keep is not None and not keep(row):
                continue
            try:
                text = raw.decode(encoding or "utf-8")
            except UnicodeDecodeError as e:
                if hint is None:
                    hint = encoding_hint(path) if encoding is None else ""
                yield (row, None, raw.decode(encoding or "utf-8", errors="replace"),
                       f"line {lineno}: invalid {encoding or 'UTF-8'} at byte {e.start}{hint}")
                continue
            try:
                obj = orjson.loads(text)
            except orjson.JSONDecodeError as e:
                yield row, None, text, f"line {lineno}: bad JSON ({e})"
                continue
            if not isinstance(obj, dict):
                yield row, None, text, f"line {lineno}: expected a JSON object, got {type(obj).__name__}"
                continue
            yield row, obj, text, None


def iter_json_array(path: str, encoding: str | None = None):
    try:
        with open_binary(path) as f:
            raw = f.read()
    except DECOMPRESSION_ERRORS as e:
        yield 0, None, "", f"the whole file is unreadable: the compressed file is corrupt ({first_line(e, 150)})"
        return
    try:
        data = json.loads(raw.decode(encoding or "utf-8-sig"))
    except UnicodeDecodeError as e:
        hint = encoding_hint(path) if encoding is None else ""
        yield 0, None, raw.decode("utf-8", errors="replace"), f"the whole file is not valid {encoding or 'UTF-8'} ({e}){hint}"
        return
    except json.JSONDecodeError as e:
        yield 0, None, raw.decode("utf-8", errors="replace"), f"the whole file is not valid JSON ({e})"
        return
    if not isinstance(data, list):
        yield 0, None, raw.decode("utf-8", errors="replace"), "expected a JSON array of objects"
        return
    for row, obj in enumerate(data):
        if not isinstance(obj, dict):
            yield row, None, json.dumps(obj, ensure_ascii=False), f"item {row}: expected an object"
        else:
            yield row, obj, None, None


def iter_parquet(path: str):
    """Row group by row group: a corrupt group drops its rows, each with the reason; the rest is read."""
    import pyarrow.parquet as pq

    row = 0
    with pq.ParquetFile(path) as pf:
        for group in range(pf.num_row_groups):
            try:
                rows = pf.read_row_group(group).to_pylist()
            except Exception as e:  # noqa: BLE001 - pyarrow raises OSError, ArrowInvalid, ... for corrupt pages
                n = pf.metadata.row_group(group).num_rows
                reason = f"row group {group} ({n} rows) is unreadable: {first_line(e, 200)}"
                for _ in range(n):
                    yield row, None, "", reason
                    row += 1
                continue
            for obj in rows:
                yield row, obj, None, None
                row += 1


def check_readable(sources: list[Source]) -> None:
    """Stop before any work, in one line, on a Parquet file whose footer cannot be read (empty,
    truncated, not Parquet): nothing of it could be recorded row by row."""
    import pyarrow.parquet as pq

    for source in sources:
        if source.format != "parquet":
            continue
        for file in source.files:
            try:
                pq.ParquetFile(file).close()
            except Exception as e:  # noqa: BLE001 - ArrowInvalid, OSError, ...
                raise JcurateError(f"source '{source.id}': {file} is not a readable Parquet file: {first_line(e, 200)}"
                                   ) from None


def iter_csv(path: str, encoding: str | None = None):
    import io

    hint = None
    row = -1
    with io.TextIOWrapper(open_binary(path), encoding=encoding or "utf-8-sig", errors="replace", newline="") as f:
        rows = enumerate(csv.DictReader(f))
        while True:
            try:
                row, obj = next(rows)
            except StopIteration:
                return
            except DECOMPRESSION_ERRORS as e:
                yield (row + 1, None, "", f"row {row + 1}: the compressed file breaks off here "
                       f"({first_line(e, 150)}); the rest of it is unreadable")
                return
            bad = [k for k, v in obj.items() if isinstance(v, str) and "\ufffd" in v]
            raw = json.dumps(obj, ensure_ascii=False, default=str)
            if None in obj:
                yield row, obj, raw, "more cells than header columns"
            elif bad:
                if hint is None:
                    hint = encoding_hint(path) if encoding is None else ""
                yield row, obj, raw, f"invalid {encoding or 'UTF-8'} in column '{bad[0]}'{hint}"
            else:
                yield row, obj, None, None


def iter_hf_disk(path: str):
    from datasets import DatasetDict, load_from_disk

    ds = load_from_disk(path)
    splits = ds.items() if isinstance(ds, DatasetDict) else [(None, ds)]
    row = 0
    for _, split in splits:
        for obj in split:
            yield row, obj, None, None
            row += 1


def read_rows(source: Source, file: str, keep=None):
    """(row, parsed, raw, error) of one file of a source, in its format and encoding; with ``keep``
    (a function of the row number), only the rows it accepts."""
    if source.format == "jsonl":
        return iter_jsonl(file, source.encoding, keep)
    rows = ITERATORS[source.format](file, source.encoding) if source.format in ("json", "csv") else \
        ITERATORS[source.format](file)
    return rows if keep is None else (r for r in rows if keep(r[0]))


ITERATORS = {"jsonl": iter_jsonl, "json": iter_json_array, "parquet": iter_parquet, "csv": iter_csv, "hf-disk": iter_hf_disk}


def _text_field(obj: dict, field: str, column: str, required: bool) -> str:
    if column not in obj or obj[column] is None:
        if required:
            raise RowError(f"missing field '{field}' (column '{column}')")
        return ""
    value = obj[column]
    if not isinstance(value, str):
        raise RowError(f"field '{field}' (column '{column}') must be a string, got {type(value).__name__}")
    return value


def _messages(obj: dict, column: str) -> list[dict]:
    value = obj.get(column)
    if isinstance(value, str):  # CSV / Parquet sources may carry the turns as a JSON string
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise RowError(f"field 'messages' (column '{column}') is a string but not JSON") from None
    if not isinstance(value, list) or not value:
        raise RowError(f"field 'messages' (column '{column}') must be a non-empty list of turns")
    turns = []
    for i, turn in enumerate(value):
        if not isinstance(turn, dict):
            raise RowError(f"field 'messages' (column '{column}') turn {i}: expected an object")
        role = turn.get("role", turn.get("from"))
        content = turn.get("content", turn.get("value"))
        role = ROLE_ALIASES.get(role, role)
        if role not in ROLES:
            raise RowError(f"field 'messages' turn {i}: unknown role {role!r} ({ROLE_FIELDS_NOTE})")
        if not isinstance(content, str):
            raise RowError(f"field 'messages' turn {i}: content must be a string, got {type(content).__name__}")
        turns.append({"role": role, "content": content})
    if not any(t["role"] == "user" for t in turns) or not any(t["role"] == "assistant" for t in turns):
        raise RowError("field 'messages' needs at least one user and one assistant turn")
    return turns


def record_fields(obj: dict, fields: dict[str, str], multi_turn: bool) -> dict:
    """The ``make_document`` keyword arguments of one row, through the field mapping;
    a RowError names the missing or mistyped field. (``jcurate serve`` parses its records here too.)"""
    if multi_turn:
        return {"messages": _messages(obj, fields["messages"])}
    return {
        "instruction": _text_field(obj, "instruction", fields["instruction"], True),
        "input_": _text_field(obj, "input", fields["input"], False) if "input" in fields else "",
        "output": _text_field(obj, "output", fields["output"], True),
    }


def _label(value, source: Source, file: str, row: int) -> float | None:
    """A quality label the source ships; an unreadable one is reported and ignored, the record stays."""
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        logger.warning(f"{file}: row {row}: label field '{source.label_field}' is not a number ({value!r}); ignored")
        return None


def row_to_document(source: Source, file: str, row: int, obj: dict | None, raw: str | None, error: str | None) -> Document:
    """One row -> one Document; a malformed row keeps its raw text and a ``read_error``."""
    key = str(row)
    if len(source.files) > 1:
        key = f"{Path(file).name}#{row}"
    extra = {
        "file": file,
        "row": row,
        "source_order": source.order,
        "generated_by": source.generated_by.model if source.generated_by else None,
    }
    if error and obj is not None and source.id_field and obj.get(source.id_field) not in (None, ""):
        key = str(obj[source.id_field])  # a row the reader half-parsed keeps its own id
    if obj is not None and error is None:
        try:
            if source.id_field:
                if obj.get(source.id_field) in (None, ""):
                    raise RowError(f"missing id field '{source.id_field}'")
                key = str(obj[source.id_field])
            if source.label_field:
                extra["label"] = _label(obj.get(source.label_field), source, file, row)
            return make_document(record_id=f"{source.id}:{key}", source_id=source.id, extra=extra,
                                 **record_fields(obj, source.fields, source.multi_turn))
        except (RowError, ValueError, TypeError) as e:
            error = f"row {row}: {e}"
        raw = json.dumps(obj, ensure_ascii=False, default=str)
    elif not error.startswith(("line", "row", "item", "the whole")):
        error = f"row {row}: {error}"
    message = f"{file}: {error}"
    logger.warning(f"malformed row in source '{source.id}': {message}")
    text = raw or "<empty row>"
    metadata = {"source_id": source.id, "read_error": message, "content_hash": content_hash(text), **extra}
    return Document(text=text, id=f"{source.id}:{key}", metadata=metadata)


class SourceReader(BaseReader):
    """Reads all sources of the manifest, split over the tasks: by (source, file) where there are at
    least as many files as tasks, else by rows within each file (row ``r`` to task ``r % tasks``), so
    ``--workers N`` speeds up a single large file too. Row numbers, record ids and decisions do not
    depend on the split."""

    name = "📖 jcurate sources"

    def __init__(self, sources: list[Source]):
        super().__init__()
        self.sources = sources

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        if data:
            yield from data
        work = [(s, f) for s in self.sources for f in s.files]
        by_rows = world_size > 1 and len(work) < world_size
        keep = (lambda row: row % world_size == rank) if by_rows else None
        for i, (source, file) in enumerate(work):
            if not by_rows and i % world_size != rank:
                continue
            self.stat_update("input_files")
            logger.info(f"reading source '{source.id}' ({source.format}), file {i + 1} of {len(work)}: {file}"
                        + (f" (rows r % {world_size} == {rank})" if by_rows else ""))
            # a batch of rows at a time, their statistics recorded at once (``curate.batch_stats``): a timer
            # and three statistics per record were a tenth of the reader's time
            for rows in batched(read_rows(source, file, keep), READ_BATCH):
                with self.track_time("batch"):
                    docs = [row_to_document(source, file, *row) for row in rows]
                count(self, "documents", len(docs))
                record_doc_stats(self, docs)
                yield from docs


def _first_columns(source: Source, file: str, sample: int = 50) -> set[str] | None:
    """The column names of a file, from its schema or its first rows; None if unknown."""
    if source.format == "parquet":
        import pyarrow.parquet as pq

        return set(pq.read_schema(file).names)
    if source.format == "hf-disk":
        from datasets import DatasetDict, load_from_disk

        ds = load_from_disk(file)
        return set(next(iter(ds.values())).column_names if isinstance(ds, DatasetDict) else ds.column_names)
    columns: set[str] = set()
    for i, (_, obj, _, _) in enumerate(read_rows(source, file)):
        if obj is not None:
            columns |= set(obj)
        if i >= sample:
            break
    return columns or None


def check_field_mappings(sources: list[Source]) -> None:
    """Stop before any work when a mapped column exists in none of a source's first rows."""
    for source in sources:
        columns = _first_columns(source, source.files[0])
        if columns is None:
            continue
        wanted = dict(source.fields)
        if source.id_field:
            wanted["id_field"] = source.id_field
        missing = [f"{field} -> '{col}'" for field, col in wanted.items() if col not in columns]
        if missing:
            raise JcurateError(
                f"source '{source.id}': field mapping {', '.join(missing)} names a column that {source.files[0]} "
                f"does not have (columns: {', '.join(sorted(columns))})"
            )
