"""Small JSONL files the user names (eval sets, training files): read whole, bad JSON is an error.

Source data goes through ``curate.reading.readers`` instead, where a bad row is a dropped record.
"""

from __future__ import annotations

import json
from pathlib import Path

from core.errors import JcurateError


def read_json_lines(path: str | Path, what: str = "file"):
    """(line number, object) for each non-blank line of a small JSONL file the user names
    (eval sets, training files); bad JSON stops with the file and line."""
    for lineno, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield lineno, json.loads(line)
        except json.JSONDecodeError as e:
            raise JcurateError(f"{what} {path} line {lineno}: bad JSON ({e})") from None


def json_objects(path: str | Path, what: str = "file") -> list:
    """Every line's parsed value, in order (``read_json_lines`` without the line numbers)."""
    return [obj for _, obj in read_json_lines(path, what)]
