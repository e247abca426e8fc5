"""Eval sets in ELYZA-tasks-100 shape (``input``, ``output``, ``eval_aspect``) or Japanese
MT-Bench shape (``turns``, ``category``, optional ``reference``). Bad rows (and a row whose id an
earlier row holds) are reported by line and skipped; a file with no usable row, or that is not
UTF-8, stops with one line."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import JcurateError

# the judge's scale of each shape: ELYZA-shape answers are graded 1-5, MT-Bench turns 1-10 (eval.grade); a mean
# or a difference over items of both shapes mixes two scales
SCALES = {"elyza": "ELYZA shape, 1-5", "mt-bench": "MT-Bench shape, 1-10"}


@dataclass
class EvalItem:
    item_id: str
    shape: str  # elyza | mt-bench
    category: str
    turns: list[str]
    reference: list[str] = field(default_factory=list)
    eval_aspect: str = ""


def _item(obj, lineno: int, stem: str) -> EvalItem:
    if not isinstance(obj, dict):
        raise ValueError("expected a JSON object")
    if "input" in obj:
        if not isinstance(obj["input"], str) or not obj["input"].strip():
            raise ValueError("field 'input' must be a non-empty string")
        ref = obj.get("output")
        if ref is not None and not isinstance(ref, str):
            raise ValueError("field 'output' must be a string")
        return EvalItem(f"{stem}:{obj.get('id', lineno)}", "elyza", str(obj.get("category", "elyza")), [obj["input"]],
                        [ref] if ref else [], str(obj.get("eval_aspect") or ""))
    if "turns" in obj:
        turns = obj["turns"]
        if not isinstance(turns, list) or not turns or not all(isinstance(t, str) and t.strip() for t in turns):
            raise ValueError("field 'turns' must be a non-empty list of strings")
        ref = obj.get("reference") or []
        if not isinstance(ref, list) or not all(isinstance(r, str) for r in ref):
            raise ValueError("field 'reference' must be a list of strings")
        return EvalItem(f"{stem}:{obj.get('question_id', lineno)}", "mt-bench", str(obj.get("category", "general")),
                        turns, ref)
    raise ValueError("needs 'input' (ELYZA shape) or 'turns' (MT-Bench shape)")


def load_tasks(path: str | Path, warn=print) -> list[EvalItem]:
    """The usable items of an eval file; bad rows (bad JSON, a missing or wrong field, an id that an
    earlier row holds) are reported by line and skipped. Text that is not UTF-8 stops with its line."""
    path = Path(path)
    if not path.is_file():
        raise JcurateError(f"eval file not found: {path}")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise JcurateError(f"eval file {path}: cannot read it ({e.strerror or e.__class__.__name__})") from None
    items, errors, seen = [], [], {}
    for lineno, raw in enumerate(data.splitlines(), start=1):
        try:
            line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
        except UnicodeDecodeError:
            raise JcurateError(f"eval file {path} line {lineno}: not UTF-8 text (save it as UTF-8; a Shift_JIS "
                               f"file reads as nonsense)") from None
        if not line.strip():
            continue
        try:
            item = _item(json.loads(line), lineno, path.stem)
        except (json.JSONDecodeError, ValueError) as e:
            errors.append(f"{path} line {lineno}: {e}")
            continue
        if item.item_id in seen:  # results are stored and paired by item id: a second one would replace the first
            errors.append(f"{path} line {lineno}: id {item.item_id.split(':', 1)[1]!r} repeats line {seen[item.item_id]}'s")
            continue
        seen[item.item_id] = lineno
        items.append(item)
    for error in errors:
        warn(f"skipped bad eval row: {error}")
    if not items:
        raise JcurateError(f"{path}: no usable eval item ({len(errors)} bad row(s))")
    return items
