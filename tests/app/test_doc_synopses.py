"""The command synopses in the docs name every flag that `--help` lists, and no other."""

from __future__ import annotations

import re

import pytest

from jcurate.cli import build_parser
from tests.conftest import ROOT


def synopsis(doc: str, command: str) -> str:
    """The code block of ``doc`` that starts with ``jcurate <command> [``."""
    text = (ROOT / doc).read_text(encoding="utf-8")
    match = re.search(rf"```\n(jcurate {command} \[.*?)```", text, re.S)
    assert match, f"{doc} has no synopsis of `jcurate {command}`"
    return match.group(1)


def flags(command: str) -> set[str]:
    sub = next(a for a in build_parser()._actions if a.dest == "command").choices[command]
    return {f for a in sub._actions for f in a.option_strings if f not in ("-h", "--help")}


@pytest.mark.parametrize("doc, command", [("docs/pipeline.md", "run"), ("docs/service.md", "serve")])
def test_the_synopsis_names_every_flag(doc, command):
    shown = set(re.findall(r"(?<![\w-])(--?[a-z][\w-]*)", synopsis(doc, command)))
    assert flags(command) <= shown, f"{doc} lacks {sorted(flags(command) - shown)}"
    assert shown <= flags(command), f"{doc} names flags that `jcurate {command}` has not: {sorted(shown - flags(command))}"
