"""The record model of DESIGN.md: one normalised record per example.

A record travels through the pipeline as a datatrove ``Document``: ``doc.text`` is the
rendered record (what filters and dedup read), ``doc.id`` is the ``record_id`` and the
record fields live in ``doc.metadata``.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

from datatrove.data import Document

_SPACES = re.compile(r"[ \t\u00a0\u3000]+")
_MANY_NEWLINES = re.compile(r"\n{3,}")

ROLES = ("system", "user", "assistant")
# ShareGPT-style role names, mapped onto the chat roles.
ROLE_ALIASES = {"human": "user", "gpt": "assistant", "bot": "assistant", "model": "assistant"}


def normalise_text(text: str) -> str:
    """NFKC, one newline convention, runs of spaces folded, blank-line runs capped at one.

    NFKC folds full-width ASCII and half-width katakana, so ``ＡＩ`` and ``AI`` hash the same.
    Dakuten are kept (unlike datatrove's default ``simplify_text``).

    >>> normalise_text("ＡＩは　すごい。\\r\\n\\r\\n\\r\\nｶﾀｶﾅ  です ")
    'AIは すごい。\\n\\nカタカナ です'
    """
    text = unicodedata.normalize("NFKC", text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = [line.strip() for line in _SPACES.sub(" ", text).split("\n")]  # _SPACES never spans a newline
    return _MANY_NEWLINES.sub("\n\n", "\n".join(lines)).strip()


def content_hash(text: str) -> str:
    """Hash of the normalised rendered text (exact dedup key)."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


def render_text(instruction: str, input_: str, output: str, messages: list[dict] | None) -> str:
    """What filters and dedup read: the turns of the record, in order, separated by blank lines."""
    if messages:
        return "\n\n".join(m["content"] for m in messages if m["content"])
    return "\n\n".join(part for part in (instruction, input_, output) if part)


def make_document(
    *,
    record_id: str,
    source_id: str,
    instruction: str = "",
    input_: str = "",
    output: str = "",
    messages: list[dict] | None = None,
    extra: dict | None = None,
) -> Document:
    """Normalise the fields and build the Document that carries the record through the pipeline."""
    instruction, input_, output = (normalise_text(x) for x in (instruction, input_, output))
    if messages:
        messages = [{"role": m["role"], "content": normalise_text(m["content"])} for m in messages]
        # the single-turn view of a conversation: first user turn -> first assistant turn
        instruction = next((m["content"] for m in messages if m["role"] == "user"), "")
        output = next((m["content"] for m in messages if m["role"] == "assistant"), "")
    text = render_text(instruction, input_, output, messages)
    metadata = {
        "source_id": source_id,
        "instruction": instruction,
        "input": input_,
        "output": output,
        "messages": messages or None,
        "content_hash": content_hash(text),
    }
    if extra:
        metadata.update(extra)
    return Document(text=text or " ", id=record_id, metadata=metadata)
