"""Code outside a fenced block: which lines are code, and whether an answer is a program.

Japanese instruction data writes code bare far more often than in a Markdown fence (exercise collections
such as amenokaku-code: 「pandasを用いて…せよ」 -> ``df_receipt.head(10)``). Two stages need to know: the
quality filter measures repetition on the prose only (a program repeats its names by design), and
near-duplicate detection compares programs exactly (a different token is a different program:
``np.floor`` vs ``np.ceil`` answers a different exercise).
"""

from __future__ import annotations

import re

_JAPANESE_LETTER = re.compile(r"[\u3041-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
# a statement's shape: a keyword first, an assignment, a call, brackets, a semicolon; a quoted literal in a
# list or dict, an indented line, a line continued by a comma or a backslash
_CODE_SHAPE = re.compile(r"^\s*(?:import|from|def|class|return|for|while|if|elif|else|try|except|with|print|"
                         r"SELECT|FROM|WHERE|#|//|@)\b|[=;{}]|\w\(|\)\s*$|\[[\w'\"]*\]"
                         r"|['\"][^'\"]*['\"]\s*[,:\])}]|^\s{2,}\S|[,\\]\s*$")


_CODE_SHAPE_ANY_LINE = re.compile(_CODE_SHAPE.pattern, re.M)


def code_lines(lines: list[str]) -> list[bool]:
    """``is_code_line`` of each line; a line with a Japanese letter is answered without the shape regex."""
    return [bool(line.strip()) and not _JAPANESE_LETTER.search(line) and bool(_CODE_SHAPE.search(line))
            for line in lines]


def is_code_line(line: str) -> bool:
    """A line of code: no Japanese letter, and a statement's shape.

    >>> is_code_line("df_receipt.head(10)"), is_code_line("東京は日本の首都です。"), is_code_line("Hello, world")
    (True, False, False)
    """
    return bool(line.strip()) and not _JAPANESE_LETTER.search(line) and bool(_CODE_SHAPE.search(line))


def is_program(text: str) -> bool:
    """An answer that is a program: at least 60% of its non-empty lines are code (a fenced block's lines
    count as code), and it has one.

    >>> is_program("import pandas as pd\\n\\ndf_receipt.head(10)\\nprint(df.shape)")
    True
    >>> is_program("手順は次のとおりです。\\n1. 材料を切る\\n2. 煮る"), is_program("パリです。"), is_program("55")
    (False, False, False)
    """
    lines = [line for line in text.split("\n") if line.strip()]
    if not lines:
        return False
    allowed = len(lines) - 0.6 * len(lines)  # prose lines a program may hold; past it, stop reading
    if "```" not in text:
        # without a fence a line with a Japanese letter is prose: most Japanese answers end here, on the
        # first letter of each line (the shape regex below scans all of a text that has no code: ~10x slower)
        if sum(1 for line in lines if _JAPANESE_LETTER.search(line)) > allowed:
            return False
        if not _CODE_SHAPE_ANY_LINE.search(text):  # no line shaped like code
            return False
    prose, fenced = 0, False
    for line in lines:
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced and not is_code_line(line):
            prose += 1
            if prose > allowed:
                return False
    return True
