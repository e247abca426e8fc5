"""Eval sets in ELYZA-tasks-100 shape (``input``, ``output``, ``eval_aspect``) or Japanese
MT-Bench shape (``turns``, ``category``, optional ``reference``). Bad rows are reported by
line and skipped; a file with no usable row stops with one line."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import JcurateError


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
    path = Path(path)
    if not path.is_file():
        raise JcurateError(f"eval file not found: {path}")
    items, errors = [], []
    for lineno, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            items.append(_item(json.loads(line), lineno, path.stem))
        except (json.JSONDecodeError, ValueError) as e:
            errors.append(f"{path} line {lineno}: {e}")
    for error in errors:
        warn(f"skipped bad eval row: {error}")
    if not items:
        raise JcurateError(f"{path}: no usable eval item ({len(errors)} bad row(s))")
    return items
