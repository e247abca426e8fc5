"""Record ids and row positions: what names a record, and how a message points at its row.

A record id is ``{source id}:{key}`` (a source id holds no ':'). The key is, in order:

* the row's own id, from the source's ``id_field``;
* for a row of an ``id_field`` source without a usable own id (a malformed row, a missing id, an id an
  earlier row of the source holds already), a key only jcurate gives: ``#line-N`` (JSONL, CSV: the
  file's line where the row starts, 1-based) or ``#row-N`` (Parquet, JSON arrays, HF datasets folders: the
  file's N-th record, 1-based), with ``@FILE`` after it in a source of several files. A source's own id
  never takes this form: one that starts with ``#line-`` or ``#row-`` after any number of ``#`` is kept
  with one ``#`` more. So such a row can never take a real record's id (until 2026-12-07 it got its row
  number, ``ids:2``, which could be another row's own id, and the whole run failed at its end);
* without ``id_field``: the row number, 0-based among the file's rows (blank lines skipped), with
  ``FILE#`` before it in a source of several files. Messages count differently (``position``); these
  keys stay as they are, because stores and subsets refer to them.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

# the keys jcurate gives, after any number of '#': a source's own id of this form gets one '#' more
_RESERVED = re.compile(r"#+(?:line|row)-")


def position(row: int, lines: tuple[int, int] | None) -> str:
    """Where a row is, as a message says it: ``line 7`` or ``lines 52-57`` (a CSV row with line breaks
    in a field) in a file of lines, 1-based as editors count them, blank lines included; ``row 3``
    (1-based: the file's third record) in a Parquet file, a JSON array or an HF datasets folder."""
    if lines is None:
        return f"row {row + 1}"
    first, last = lines
    return f"line {first}" if first == last else f"lines {first}-{last}"


def own_key(id_field: str | None, obj: dict | None) -> str | None:
    """The key of a row's own id (``id_field``), or None where it has none."""
    if not id_field or obj is None:
        return None
    value = obj.get(id_field)
    if value is None or value == "":
        return None
    key = str(value)
    return "#" + key if key.startswith("#") and _RESERVED.match(key) else key


def given_key(row: int, lines: tuple[int, int] | None, file_label: str | None) -> str:
    """The key jcurate gives a row of an ``id_field`` source that has no usable id of its own:
    ``#line-N`` / ``#row-N``, ``@FILE`` added where the source has several files."""
    where = f"#row-{row + 1}" if lines is None else f"#line-{lines[0]}"
    return where if file_label is None else f"{where}@{file_label}"


def row_number_key(row: int, file_label: str | None) -> str:
    """The key of a row of a source without ``id_field``: its 0-based row number."""
    return str(row) if file_label is None else f"{file_label}#{row}"


def file_labels(files: tuple[str, ...] | list[str]) -> dict[str, str | None]:
    """How keys name each file of a source: None for a source of one file; else the file's name, or, where
    two files share a name (``a/train.jsonl``, ``b/train.jsonl``), the path below their common folder."""
    if len(files) < 2:
        return {f: None for f in files}
    names = [Path(f).name for f in files]
    if len(set(names)) == len(names):
        return dict(zip(files, names))
    common = os.path.commonpath([os.path.dirname(os.path.abspath(f)) for f in files])
    return {f: os.path.relpath(os.path.abspath(f), common) for f in files}
