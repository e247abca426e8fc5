"""The record model of DESIGN.md: one normalised record per example.

A record travels through the pipeline as a datatrove ``Document``: ``doc.text`` is the
rendered record (what filters and dedup read), ``doc.id`` is the ``record_id`` and the
record fields live in ``doc.metadata``.
"""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata

from datatrove.data import Document

_SPACES = re.compile(r"[ \t\u00a0\u3000]+")
_MANY_NEWLINES = re.compile(r"\n{3,}")

ROLES = ("system", "user", "assistant")
# ShareGPT-style role names, mapped onto the chat roles.
ROLE_ALIASES = {"human": "user", "gpt": "assistant", "bot": "assistant", "model": "assistant"}


def _compatibility_forms() -> tuple[re.Pattern, dict[str, str]]:
    """The characters below U+3400 and in U+F900-U+FFFF whose NFKC is their compatibility
    decomposition (full-width ！？（）：, U+3000, …, ①, ℃, half-width katakana letters), and that form."""
    forms = {}
    for cp in (*range(0x80, 0x3400), *range(0xF900, 0x10000)):
        ch = chr(cp)
        decomposed = unicodedata.normalize("NFKD", ch)
        if decomposed != ch and unicodedata.normalize("NFKC", ch) == decomposed:
            forms[ch] = decomposed
    return re.compile("[" + "".join(map(re.escape, sorted(forms))) + "]"), forms


_COMPAT, _COMPAT_FORMS = _compatibility_forms()


def nfkc(text: str) -> str:
    """``unicodedata.normalize("NFKC", text)``, 6x faster on instruction data.

    Half of real records are not NFKC only because of a few full-width forms (（）：？！), and
    ``normalize`` then decomposes and recomposes the whole text. Replacing each such character by
    its compatibility decomposition leaves the text's NFKD, hence its NFKC, unchanged; when the
    result is then already normalised (the quick check), it is the NFKC. Otherwise ``normalize``.

    >>> all(nfkc(t) == unicodedata.normalize("NFKC", t) for t in ["（株）ｶﾞｽ①℃　…", "ガ", "e\u0301", ""])
    True
    """
    if unicodedata.is_normalized("NFKC", text):
        return text
    replaced = _COMPAT.sub(lambda m: _COMPAT_FORMS[m.group()], text)
    return replaced if unicodedata.is_normalized("NFKC", replaced) else unicodedata.normalize("NFKC", replaced)


# whitespace other than space and newline (after NFKC: tab, CR, VT, FF, U+001C-U+001F, U+0085, U+1680,
# U+2028, U+2029): rare, so a text holding one takes the slow path
_OTHER_SPACE = re.compile(r"[^\S \n]")


def _spacing_unchanged(text: str) -> bool:
    """True when the steps after NFKC would leave ``text`` as it is: no other whitespace than single
    spaces inside lines and at most two newlines in a row, none at a line's or the text's edge.
    (Substring tests: one regex with these alternatives cost as much as the NFKC.)"""
    return not (text and (text[0].isspace() or text[-1].isspace()) or "  " in text or " \n" in text
                or "\n " in text or "\n\n\n" in text or _OTHER_SPACE.search(text))


def normalise_text(text: str) -> str:
    """NFKC, one newline convention, runs of spaces inside a line folded, trailing spaces and blank-line
    runs cut, and each line's indentation kept *relative to the text's common indentation*.

    NFKC folds full-width ASCII and half-width katakana, so ``ＡＩ`` and ``AI`` hash the same.
    Dakuten are kept (unlike datatrove's default ``simplify_text``). Indentation is kept because a
    program or a nested list means it (every line used to be stripped, so every indented program was
    stored, exported and trained on unrunnable); what all lines share (a quoted block, a paragraph indent
    on every line, a stray space before a one-line answer) is cut as before, so a text whose lines are not
    indented relative to each other normalises exactly as it did. The exact-dedup key still folds
    indentation away (``content_hash``).

    >>> normalise_text("ＡＩは　すごい。\\r\\n\\r\\n\\r\\nｶﾀｶﾅ  です ")
    'AIは すごい。\\n\\nカタカナ です'
    >>> normalise_text("  def f(x):\\n      if x:   # 正\\n\\t\\n          return  x\\n")
    'def f(x):\\n    if x: # 正\\n\\n        return x'
    """
    text = nfkc(text)
    if _spacing_unchanged(text):
        return text  # most fields: nothing below would change them
    lines = [(_as_spaces(line[:len(line) - len(line.lstrip())]), line.strip())
             for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    common = len(os.path.commonprefix([indent for indent, body in lines if body]))
    # _SPACES never spans a newline
    out = [indent[common:] + _SPACES.sub(" ", body) if body else "" for indent, body in lines]
    return _MANY_NEWLINES.sub("\n\n", "\n".join(out)).strip("\n")


def _as_spaces(indent: str) -> str:
    """A kept indentation: tabs stay tabs, any other whitespace (U+3000 after NFKC is a space already) a space."""
    return "".join("\t" if c == "\t" else " " for c in indent)


def fold_indentation(text: str) -> str:
    """The text with every line's indentation cut: what ``normalise_text`` returned before it kept
    indentation, and what the exact-dedup key hashes (two copies of a program that differ only in how
    they are indented are the same record)."""
    if "\n " not in text and "\n\t" not in text and not text[:1].isspace():
        return text
    return "\n".join(line.lstrip(" \t") for line in text.split("\n"))


def content_hash(text: str) -> str:
    """Hash of the normalised rendered text with indentation folded (exact dedup key)."""
    return hashlib.blake2b(fold_indentation(text).encode("utf-8"), digest_size=16).hexdigest()


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
