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
from array import array
from collections.abc import Iterator
from pathlib import Path

from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.readers.base import BaseReader
from datatrove.utils.batching import batched
from datatrove.utils.logging import logger

from core.errors import JcurateError, first_line
from curate.batch_stats import count, record_doc_stats
from curate.reading.manifest import ROLE_FIELDS_NOTE, Source
from curate.reading.record_ids import file_labels, given_key, own_key, position, row_number_key
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


def iter_jsonl(path: str, encoding: str | None = None, keep=None) -> Iterator[tuple]:
    """Yields (row, parsed, raw text, error, lines): rows are 0-based non-blank lines (what record ids
    count), ``lines`` the row's line in the file, 1-based (what messages say); with ``keep``, only the
    rows it accepts (the others are counted, not decoded: how tasks split one file).

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
                    yield (row + 1, None, "", f"the compressed file breaks off here ({first_line(e, 150)}); "
                           "the rest of it is unreadable", (lineno + 1, lineno + 1))
                return
            lineno += 1
            if lineno == 1 and encoding is None:
                raw = raw.removeprefix(b"\xef\xbb\xbf")
            if not raw.strip():
                continue
            row += 1
            if keep is not None and not keep(row):
                continue
            at = (lineno, lineno)
            try:
                text = raw.decode(encoding or "utf-8")
            except UnicodeDecodeError as e:
                if hint is None:
                    hint = encoding_hint(path) if encoding is None else ""
                yield (row, None, raw.decode(encoding or "utf-8", errors="replace"),
                       f"invalid {encoding or 'UTF-8'} at byte {e.start}{hint}", at)
                continue
            try:
                obj = orjson.loads(text)
            except orjson.JSONDecodeError as e:
                yield row, None, text, f"bad JSON ({e})", at
                continue
            if not isinstance(obj, dict):
                yield row, None, text, f"expected a JSON object, got {type(obj).__name__}", at
                continue
            yield row, obj, text, None, at


def iter_json_array(path: str, encoding: str | None = None):
    try:
        with open_binary(path) as f:
            raw = f.read()
    except DECOMPRESSION_ERRORS as e:
        yield 0, None, "", f"the whole file is unreadable: the compressed file is corrupt ({first_line(e, 150)})", None
        return
    try:
        data = json.loads(raw.decode(encoding or "utf-8-sig"))
    except UnicodeDecodeError as e:
        hint = encoding_hint(path) if encoding is None else ""
        yield (0, None, raw.decode("utf-8", errors="replace"),
               f"the whole file is not valid {encoding or 'UTF-8'} ({e}){hint}", None)
        return
    except json.JSONDecodeError as e:
        yield 0, None, raw.decode("utf-8", errors="replace"), f"the whole file is not valid JSON ({e})", None
        return
    if not isinstance(data, list):
        yield 0, None, raw.decode("utf-8", errors="replace"), "the whole file is not a JSON array of objects", None
        return
    for row, obj in enumerate(data):
        if not isinstance(obj, dict):
            yield row, None, json.dumps(obj, ensure_ascii=False), "expected an object", None
        else:
            yield row, obj, None, None, None


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
                    yield row, None, "", reason, None
                    row += 1
                continue
            for obj in rows:
                yield row, obj, None, None, None
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


def _csv_rows(f) -> Iterator[tuple[dict, tuple[int, int]]]:
    """``csv.DictReader``'s rows (blank lines skipped, a short row's missing cells None, extra cells
    under the key None), each with the file's lines it spans, 1-based: a quoted field may hold line
    breaks, and a quote that is never closed joins the lines after it into one row."""
    reader = csv.reader(f)
    header = next(reader, None)
    if header is None:
        return
    end = reader.line_num
    for cells in reader:
        first, end = end + 1, reader.line_num
        if not cells:
            continue
        obj = dict(zip(header, cells))
        if len(cells) > len(header):
            obj[None] = cells[len(header):]
        for key in header[len(cells):]:
            obj[key] = None
        yield obj, (first, end)


def iter_csv(path: str, encoding: str | None = None):
    import io

    hint = None
    row, end = -1, 0
    with io.TextIOWrapper(open_binary(path), encoding=encoding or "utf-8-sig", errors="replace", newline="") as f:
        rows = _csv_rows(f)
        while True:
            try:
                obj, lines = next(rows)
            except StopIteration:
                return
            except DECOMPRESSION_ERRORS as e:
                yield (row + 1, None, "", f"the compressed file breaks off here ({first_line(e, 150)}); "
                       "the rest of it is unreadable", (end + 1, end + 1))
                return
            row, end = row + 1, lines[1]
            bad = [k for k, v in obj.items() if isinstance(v, str) and "\ufffd" in v]
            raw = json.dumps(obj, ensure_ascii=False, default=str)
            if None in obj:
                yield row, obj, raw, "more cells than header columns", lines
            elif bad:
                if hint is None:
                    hint = encoding_hint(path) if encoding is None else ""
                yield row, obj, raw, f"invalid {encoding or 'UTF-8'} in column '{bad[0]}'{hint}", lines
            else:
                yield row, obj, None, None, lines


def iter_hf_disk(path: str):
    from datasets import DatasetDict, load_from_disk

    ds = load_from_disk(path)
    splits = ds.items() if isinstance(ds, DatasetDict) else [(None, ds)]
    row = 0
    for _, split in splits:
        for obj in split:
            yield row, obj, None, None, None
            row += 1


def read_rows(source: Source, file: str, keep=None):
    """(row, parsed, raw, error, lines) of one file of a source, in its format and encoding (``iter_jsonl``);
    with ``keep`` (a function of the row number), only the rows it accepts."""
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


def _label(value, source: Source, file: str, row: int, lines: tuple[int, int] | None) -> float | None:
    """A quality label the source ships; an unreadable one is reported and ignored, the record stays."""
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        logger.warning(f"{file}: {position(row, lines)}: label field '{source.label_field}' is not a number "
                       f"({value!r}); ignored")
        return None


def row_to_document(source: Source, file: str, row: int, obj: dict | None, raw: str | None, error: str | None,
                    lines: tuple[int, int] | None, file_label: str | None = None, repeats: str | None = None
                    ) -> Document:
    """One row (``read_rows``) -> one Document. A row that cannot become a record keeps its raw text
    and a ``read_error`` (dropped at stage ``read``, reason ``malformed_row``). ``repeats``: the row's own
    id is an earlier row's (``find_repeated_ids``); it gets a key of its own and is dropped, reason
    ``duplicate_id``, with its fields where they parse. Record ids: ``curate.reading.record_ids``."""
    own = None if repeats else own_key(source.id_field, obj)
    if own is not None:
        key = own  # a row the reader half-parsed keeps its own id too
    elif source.id_field:
        key = given_key(row, lines, file_label)
    else:
        key = row_number_key(row, file_label)
    extra = {
        "file": file,
        "row": row,
        "source_order": source.order,
        "generated_by": source.generated_by.model if source.generated_by else None,
    }
    if obj is not None and error is None:
        try:
            if source.id_field and own is None and not repeats:
                raise RowError(f"missing id field '{source.id_field}'")
            if source.label_field:
                extra["label"] = _label(obj.get(source.label_field), source, file, row, lines)
            doc = make_document(record_id=f"{source.id}:{key}", source_id=source.id, extra=extra,
                                **record_fields(obj, source.fields, source.multi_turn))
        except (RowError, ValueError, TypeError) as e:
            error = str(e)
        else:
            if not repeats:
                return doc
            message = f"{file}: {repeats}"
            logger.warning(f"row with a duplicate id in source '{source.id}': {message}")
            doc.metadata.update(read_error=message, read_reason="duplicate_id")
            return doc
        raw = json.dumps(obj, ensure_ascii=False, default=str)
    where = position(row, lines)
    if not error.startswith("the whole file"):
        error = f"{where}: {error}"
        if lines is not None and lines[0] != lines[1]:  # a CSV row with line breaks in a field
            error += (f" (if lines {lines[0]}-{lines[1]} should be several rows, a quote in them is never closed: "
                      f"look from line {lines[0]} on)")
    message = f"{file}: {error}" + (f"; {repeats.removeprefix(f'{where}: ')}" if repeats else "")
    logger.warning(f"malformed row in source '{source.id}': {message}")
    text = raw or "<empty row>"
    metadata = {"source_id": source.id, "read_error": message, "content_hash": content_hash(text), **extra}
    return Document(text=text, id=f"{source.id}:{key}", metadata=metadata)


class SourceReader(BaseReader):
    """Reads all sources of the manifest, split over the tasks: by (source, file) where there are at
    least as many files as tasks, else by rows within each file (row ``r`` to task ``r % tasks``), so
    ``--workers N`` speeds up a single large file too. Row numbers, record ids and decisions do not
    depend on the split: the rows whose id repeats an earlier row's are found before (``repeated_ids``,
    from ``find_repeated_ids``)."""

    name = "📖 jcurate sources"

    def __init__(self, sources: list[Source], repeated_ids: dict | None = None):
        super().__init__()
        self.sources = sources
        self.repeated_ids = repeated_ids or {}
        self.file_labels = {s.id: file_labels(s.files) for s in sources}

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
            label = self.file_labels[source.id][file]
            repeated = self.repeated_ids.get(source.id, {}).get(file)
            # a batch of rows at a time, their statistics recorded at once (``curate.batch_stats``): a timer
            # and three statistics per record were a tenth of the reader's time
            for rows in batched(read_rows(source, file, keep), READ_BATCH):
                with self.track_time("batch"):
                    docs = [row_to_document(source, file, *row, file_label=label,
                                            repeats=repeated.get(row[0]) if repeated else None) for row in rows]
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
    for i, (_, obj, *_) in enumerate(read_rows(source, file)):
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


def find_repeated_ids(sources: list[Source]) -> dict[str, dict[str, dict[int, str]]]:
    """Before any work: the rows of each ``id_field`` source whose own id an earlier row of the source
    holds already, as {source id: {file: {row: where it is and what its dropped record says}}} (plain
    keys: datatrove saves the steps as JSON). The first row keeps
    the id; ``SourceReader`` drops the later ones at stage ``read`` (reason ``duplicate_id``).

    Why a pass of its own, before the stages: the filter stage's tasks read shares of the files, or of one
    file's rows, so no task knows whether another one met an id first, and a record id must be settled
    when the record is made. (Found when the store is written, as until 2026-12-07, a repeated id failed
    the whole run at its end.) The pass parses every row of these sources once more: about 1 s per 300,000
    JSONL rows of 550 bytes (``_own_keys``), a few percent of a run."""
    found = {source.id: _repeated_ids_of(source) for source in sources if source.id_field}
    return {sid: files for sid, files in found.items() if files}


def _own_keys(source: Source, file: str) -> Iterator[str | None]:
    """Each row's own id (``own_key``), for the first pass of ``_repeated_ids_of``. A UTF-8 JSONL file is
    parsed as bytes, twice as fast as ``iter_jsonl`` (0.5 against 1.1 s per 300,000 rows): orjson takes
    exactly the lines that decode as UTF-8, so the two find the same ids."""
    if source.format != "jsonl" or source.encoding is not None:
        for _, obj, *_ in read_rows(source, file):
            yield own_key(source.id_field, obj)
        return
    import orjson

    with open_binary(file) as f:
        try:
            for i, raw in enumerate(f):
                if not raw.strip():
                    continue
                try:
                    obj = orjson.loads(raw.removeprefix(b"\xef\xbb\xbf") if i == 0 else raw)
                except orjson.JSONDecodeError:
                    obj = None
                yield own_key(source.id_field, obj) if isinstance(obj, dict) else None
        except DECOMPRESSION_ERRORS:  # iter_jsonl ends there too, with a row that has no id
            yield None


# CPython's hash() never returns -1 (it stands for an error in its C API): the mark of a row without an id
_NO_ID = -1


def _repeated_ids_of(source: Source) -> dict[str, dict[int, str]]:
    """Two passes, so that memory stays at 8 bytes a row (a dict of 10 million ids would take 1.3 GB): the
    hash of every row's id, then, only where a hash repeats, the ids themselves, compared exactly."""
    import numpy as np

    hashes, files_at = array("q"), []
    for file in source.files:
        files_at.append(len(hashes))
        hashes.extend(_NO_ID if key is None else hash(key) for key in _own_keys(source, file))
    values = np.frombuffer(hashes, dtype=np.int64) if hashes else np.zeros(0, dtype=np.int64)
    unique, counts = np.unique(values[values != _NO_ID], return_counts=True)
    suspects = unique[counts > 1]
    if not len(suspects):
        return {}
    is_suspect = np.isin(values, suspects)
    bounds = [*files_at, len(values)]
    suspect_files = [f for f, lo, hi in zip(source.files, bounds, bounds[1:]) if is_suspect[lo:hi].any()]
    suspect_hashes = set(suspects.tolist())
    labels = file_labels(source.files)
    first: dict[str, tuple[str, str]] = {}
    found: dict[str, dict[int, str]] = {}
    for file in suspect_files:
        for row, obj, _, _, lines in read_rows(source, file):
            key = own_key(source.id_field, obj)
            if key is None or hash(key) not in suspect_hashes:
                continue
            where = position(row, lines)
            if key not in first:
                first[key] = (file, where)
                continue
            first_file, first_where = first[key]
            there = first_where if first_file == file else f"{labels[first_file] or first_file} {first_where}"
            found.setdefault(file, {})[row] = (
                f"{where}: duplicate id {obj[source.id_field]!r}: the first, {there}, keeps it")
    return found
