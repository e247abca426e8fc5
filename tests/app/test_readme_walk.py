"""The README's walk, run as written: every ```bash block of its "## A walk through" section, in order,
in a scratch folder holding copies of what the walk reads (the embedded default in data/, the train and
eval configs), so the repository is never written to. ``uv run `` is dropped and the commands find this
interpreter's environment first on PATH, so the test does not call uv. The only change to the walk: the
copied CPU smoke configs train for a few steps and evaluate two items per eval file, so that the test
takes a couple of minutes on 2 cores. Also checked: the README stays a front door (at most 250 lines),
and every relative link of the README and of docs/*.md points at a file, and an anchor at a heading."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
WALK_HEADING = "## A walk through"


def walk_blocks(text: str) -> list[str]:
    """The ```bash blocks between the walk's heading and the next level-2 heading."""
    start = text.index(WALK_HEADING + "\n")
    end = text.find("\n## ", start + len(WALK_HEADING))
    section = text[start:end if end != -1 else len(text)]
    return re.findall(r"^```bash\n(.*?)^```$", section, flags=re.S | re.M)


def without_uv(block: str) -> str:
    """``uv run jcurate ...`` -> ``jcurate ...``, also inside ``$(...)``."""
    return re.sub(r"(?<![\w-])uv run (?:--\S+ )*", "", block)


def shorten_smoke_configs(folder: Path) -> None:
    """A few training steps and two eval items per file: the same commands, a fraction of the time."""
    train = folder / "train/configs/cpu-smoke.yaml"
    cfg = yaml.safe_load(train.read_text(encoding="utf-8"))
    cfg["training"].update(max_steps=4, logging_steps=2, disable_tqdm=True)
    train.write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False), encoding="utf-8")
    ev = folder / "eval/configs/eval-cpu-smoke.yaml"
    cfg = yaml.safe_load(ev.read_text(encoding="utf-8"))
    cfg["limit"] = 2
    cfg["generation"]["max_new_tokens"] = 8
    ev.write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False), encoding="utf-8")
    exp = folder / "eval/configs/experiment-cpu-smoke.yaml"
    cfg = yaml.safe_load(exp.read_text(encoding="utf-8"))
    cfg["k"] = 30
    exp.write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False), encoding="utf-8")


def test_the_walk_has_its_steps():
    blocks = [without_uv(b) for b in walk_blocks(README.read_text(encoding="utf-8"))]
    text = "\n".join(blocks)
    for command in ("jcurate run", "jcurate sql", "jcurate subset", "jcurate train", "jcurate eval", "jcurate compare"):
        assert command in text, f"the walk lost its `{command}` step"
    assert "uv run" not in text


@pytest.mark.skipif(importlib.util.find_spec("trl") is None or importlib.util.find_spec("matplotlib") is None,
                    reason="the walk trains and evaluates: needs the 'train' and 'eval' extras (the dev group)")
def test_the_readme_walk_runs(tmp_path):
    work = tmp_path / "walk"
    work.mkdir()
    shutil.copytree(ROOT / "data", work / "data", ignore=shutil.ignore_patterns("audit", "labels"))
    for folder in ("train/configs", "eval/configs"):
        shutil.copytree(ROOT / folder, work / folder)
    shorten_smoke_configs(work)
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1")
    env.setdefault("OMP_NUM_THREADS", "2")
    blocks = walk_blocks(README.read_text(encoding="utf-8"))
    assert len(blocks) >= 5
    for i, block in enumerate(blocks, 1):
        res = subprocess.run(["bash", "-euo", "pipefail", "-c", without_uv(block)], cwd=work, env=env,
                             capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, (f"walk block {i} of {len(blocks)} exited {res.returncode}:\n{block}\n"
                                     f"--- stdout ---\n{res.stdout[-6000:]}\n--- stderr ---\n{res.stderr[-6000:]}")
    assert (work / "subsets/commercial-top200.NOTICE.md").is_file()
    assert (work / "subsets/commercial-top200.README.md").is_file()


def test_the_readme_is_a_front_door():
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= 250, f"README.md has {lines} lines: move the detail to a page under docs/"


def anchors(path: Path) -> set[str]:
    """GitHub's heading anchors of a Markdown file (outside code blocks)."""
    found, fenced = set(), False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (m := re.match(r"#{1,6} (.*)", line)):
            slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
            found.add(slug)
    return found


def test_links_between_the_readme_and_docs_resolve():
    pages = [README, *sorted((ROOT / "docs").glob("*.md"))]
    bad = []
    for page in pages:
        text = re.sub(r"^```.*?^```", "", page.read_text(encoding="utf-8"), flags=re.S | re.M)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue  # http(s), mailto
            file, _, anchor = target.partition("#")
            dest = (page.parent / file).resolve() if file else page
            if not dest.exists():
                bad.append(f"{page.relative_to(ROOT)}: {target}: no such file")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                bad.append(f"{page.relative_to(ROOT)}: {target}: no such heading")
    assert bad == []
