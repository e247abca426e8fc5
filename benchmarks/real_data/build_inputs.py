#!/usr/bin/env python3
"""Rebuild jcurate benchmark inputs from real, public Japanese instruction data.

Every dataset below was written by someone other than the jcurate team and is read
straight out of a fetched git snapshot ("mirror") of its public GitHub repository, pinned
to one commit:

    git --git-dir=<mirror-root>/<owner>+<name>/repo show <commit>:<path>

(RealPersonaChat keeps one dialogue per file, 13,583 files; those are listed with
``git ls-tree <commit>`` and read through one ``git cat-file --batch`` process, which returns
the same bytes as ``git show <commit>:<path>``.)

Each dataset is converted to JSONL with the fields ``id``, ``instruction``, ``input``,
``output`` (single turn) or ``id``, ``messages`` (a list of ``{role, content}``; multi-turn),
deterministically subsampled to at most ``--max-per-dataset`` records (the records whose
sha256("<dataset id>:<record id>") is smallest, kept in source order), and written to
``<out>/<id>.jsonl``. ``<out>/sources.yaml`` is a jcurate sources manifest over those files
(see docs/manifest.md), and the ELYZA-tasks-100
benchmark goes to ``<out>/eval/elyza_tasks_100.jsonl`` in its own shape (``input``,
``output``, ``eval_aspect``).

Provenance, licenses and field mappings: benchmarks/real_data/sources.md.

Usage:
    python benchmarks/real_data/build_inputs.py [--mirror-root DIR] [--out DIR] [--max-per-dataset 15000]

(defaults: $JCURATE_MIRRORS or runs/mirrors; $JCURATE_REALDATA or runs/realdata). A repository missing from
the mirror folder is cloned from GitHub (``git clone --bare``) unless ``--no-clone``.

Only the standard library and PyYAML are used.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
# project-relative and git-ignored (runs/), or where the environment says
DEFAULT_MIRRORS = Path(os.environ.get("JCURATE_MIRRORS") or ROOT / "runs" / "mirrors")
DEFAULT_REALDATA = Path(os.environ.get("JCURATE_REALDATA") or ROOT / "runs" / "realdata")


class BuildError(Exception):
    """A problem that stops the build, with a message meant for the person running it."""


# ---------------------------------------------------------------- reading the mirrors


def mirror_dir(root: Path, repo: str) -> Path:
    """Where ``fetch github:<owner>/<name>`` leaves the bare git directory."""
    return root / repo.replace("/", "+") / "repo"


def check_mirror(root: Path, repo: str, commit: str) -> Path:
    """The mirror's git directory; a clear error when it or the pinned commit is absent."""
    git_dir = mirror_dir(root, repo)
    how = (f"clone it: git clone --bare https://github.com/{repo} {git_dir} (this script does so unless "
           f"--no-clone), or give --mirror-root (or $JCURATE_MIRRORS) where you keep such clones")
    if not (git_dir / "HEAD").is_file():
        raise BuildError(f"mirror of {repo} not found at {git_dir}; {how}")
    probe = subprocess.run(["git", f"--git-dir={git_dir}", "cat-file", "-e", f"{commit}^{{commit}}"],
                           capture_output=True)
    if probe.returncode != 0:
        raise BuildError(f"mirror of {repo} at {git_dir} lacks the pinned commit {commit}; "
                         f"the snapshot may be older or newer than the one recorded - {how}, "
                         f"or update the commit in this script and in sources.md")
    return git_dir


def obtain_mirror(root: Path, repo: str, commit: str) -> Path:
    """The ordinary way: ``git clone --bare https://github.com/<repo>`` into the mirror folder when it is not
    there yet (files of any size, unlike a snapshot), then make sure the pinned commit is in it."""
    git_dir = mirror_dir(root, repo)
    if not (git_dir / "HEAD").is_file():
        git_dir.parent.mkdir(parents=True, exist_ok=True)
        print(f"cloning https://github.com/{repo} into {git_dir} ...", flush=True)
        done = subprocess.run(["git", "clone", "--bare", "--quiet", f"https://github.com/{repo}", str(git_dir)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise BuildError(f"cannot clone https://github.com/{repo} into {git_dir}: {done.stderr.strip()}; "
                             f"clone it yourself (git clone --bare) or give --mirror-root")
    probe = subprocess.run(["git", f"--git-dir={git_dir}", "cat-file", "-e", f"{commit}^{{commit}}"], capture_output=True)
    if probe.returncode != 0:  # a branch other than the default (FastChat's jp-stable): fetch the commit itself
        subprocess.run(["git", f"--git-dir={git_dir}", "fetch", "--quiet", "origin", commit], capture_output=True)
    return git_dir


def git_show(git_dir: Path, commit: str, path: str) -> bytes:
    """``git show <commit>:<path>``: the file's bytes at that commit."""
    done = subprocess.run(["git", f"--git-dir={git_dir}", "show", f"{commit}:{path}"], capture_output=True)
    if done.returncode != 0:
        raise BuildError(f"{git_dir}: cannot read {commit}:{path} "
                         f"({done.stderr.decode(errors='replace').strip()}); snapshots lack files of "
                         f"4 MiB and more and Git LFS content")
    return done.stdout


def git_ls(git_dir: Path, commit: str, folder: str) -> list[tuple[str, str]]:
    """(path, blob id) of every file under a folder at a commit, sorted by path."""
    done = subprocess.run(["git", f"--git-dir={git_dir}", "ls-tree", "-r", commit, "--", folder],
                          capture_output=True, check=True)
    entries = []
    for line in done.stdout.decode().splitlines():
        meta, path = line.split("\t", 1)
        _, kind, blob = meta.split()
        if kind == "blob":
            entries.append((path, blob))
    return sorted(entries)


def git_show_many(git_dir: Path, entries: list[tuple[str, str]]) -> Iterator[tuple[str, bytes]]:
    """The bytes of many files, given as (path, blob id) from ``git_ls``, through one
    ``git cat-file --batch`` process: the same bytes ``git show <commit>:<path>`` prints, without
    one process, or one tree walk, per file."""
    proc = subprocess.Popen(["git", f"--git-dir={git_dir}", "cat-file", "--batch"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    # the requests go in from a thread, so that git never waits on a full pipe
    feeder = threading.Thread(target=lambda: (proc.stdin.write("".join(f"{blob}\n" for _, blob in entries).encode()),
                                              proc.stdin.close()), daemon=True)
    feeder.start()
    try:
        for path, blob in entries:
            header = proc.stdout.readline().decode().split()
            if len(header) != 3 or header[0] != blob:  # "<blob> missing"
                raise BuildError(f"{git_dir}: cannot read {path} (blob {blob}: {' '.join(header)}); "
                                 f"snapshots lack files of 4 MiB and more and Git LFS content")
            body = proc.stdout.read(int(header[2]))
            proc.stdout.read(1)  # the newline after each object
            yield path, body
    finally:
        feeder.join()
        proc.stdout.close()
        proc.wait()


# ---------------------------------------------------------------- the datasets


@dataclass
class Dataset:
    id: str
    name: str
    kind: str
    repo: str
    commit: str
    paths: list[str]  # files (or, for RealPersonaChat, one folder) read from the snapshot
    license: str  # an id in licenses/catalogue.yaml
    url: str
    license_stated: str
    attribution: str
    convert: Callable[[Path, Dataset], Iterator[dict]]
    multi_turn: bool = False
    generated_by: dict | None = None
    notes: str = ""
    extra: dict = field(default_factory=dict)


def turn(role: str, content: str) -> dict:
    return {"role": role, "content": content}


def merge_same_speaker(turns: list[dict]) -> list[dict]:
    """Consecutive utterances by one speaker become one turn (joined by a newline)."""
    merged: list[dict] = []
    for t in turns:
        if merged and merged[-1]["role"] == t["role"]:
            merged[-1]["content"] += "\n" + t["content"]
        else:
            merged.append(dict(t))
    return merged


def convert_jsquad(git_dir: Path, ds: Dataset) -> Iterator[dict]:
    """JSQuAD (SQuAD v1 JSON): question -> instruction, paragraph -> input, first gold answer -> output."""
    for path in ds.paths:
        data = json.loads(git_show(git_dir, ds.commit, path))
        for article in data["data"]:
            for para in article["paragraphs"]:
                # JGLUE writes every context as "<article title> [SEP] <paragraph>"; the title is dropped
                context = para["context"].split(" [SEP] ", 1)[-1]
                for qa in para["qas"]:
                    if qa.get("is_impossible") or not qa["answers"]:
                        continue
                    yield {"id": qa["id"], "instruction": qa["question"], "input": context,
                           "output": qa["answers"][0]["text"]}


def convert_real_persona_chat(git_dir: Path, ds: Dataset) -> Iterator[dict]:
    """One dialogue per file (id: the file name); the first speaker becomes 'user', the other 'assistant'."""
    files = [(p, blob) for p, blob in git_ls(git_dir, ds.commit, ds.paths[0]) if p.endswith(".json")]
    for path, raw in git_show_many(git_dir, files):
        dialogue = json.loads(raw)
        utterances = sorted(dialogue["utterances"], key=lambda u: u["utterance_id"])
        if not utterances:
            continue
        first = utterances[0]["interlocutor_id"]
        turns = [turn("user" if u["interlocutor_id"] == first else "assistant", u["text"]) for u in utterances]
        # the file name, not dialogue_id: two pairs of files hold the same dialogue (same dialogue_id)
        yield {"id": Path(path).stem, "messages": merge_same_speaker(turns)}


def convert_jdd(git_dir: Path, ds: Dataset) -> Iterator[dict]:
    """Japanese Daily Dialogue: speaker A -> 'user', speaker B -> 'assistant'."""
    for path in ds.paths:
        for dialogue in json.loads(git_show(git_dir, ds.commit, path)):
            utterances = sorted(dialogue["utterances"], key=lambda u: u["turn_num"])
            turns = [turn("user" if u["speaker"] == "A" else "assistant", u["utterance"]) for u in utterances]
            yield {"id": f"{dialogue['topic_id']}-{dialogue['dialogue_id']:04d}",
                   "messages": merge_same_speaker(turns)}


def _megagon(git_dir: Path, ds: Dataset, which: str) -> Iterator[dict]:
    """megagonlabs/instruction_ja: one user turn and one agent turn per example.

    which='machine_translated_ja': the machine translation of hh-rlhf kept under original_info;
    which='utterances': the manually rewritten Japanese (empty for the skipped examples)."""
    for path in ds.paths:
        for line in git_show(git_dir, ds.commit, path).decode("utf-8").splitlines():
            if not line.strip():
                continue
            ex = json.loads(line)
            utts = ex["utterances"] if which == "utterances" else ex["original_info"]["utterances"][which]
            if len(utts) != 2 or [u["name"] for u in utts] != ["user", "agent"]:
                continue
            yield {"id": ex["id"], "instruction": utts[0]["text"], "input": "", "output": utts[1]["text"]}


def convert_megagon_mt(git_dir: Path, ds: Dataset) -> Iterator[dict]:
    return _megagon(git_dir, ds, "machine_translated_ja")


def convert_megagon_edited(git_dir: Path, ds: Dataset) -> Iterator[dict]:
    return _megagon(git_dir, ds, "utterances")


def convert_multialpaca(git_dir: Path, ds: Dataset) -> Iterator[dict]:
    """MultiAlpaca (Alpaca JSONL, no ids): the 0-based line number is the id; a null input becomes ''."""
    lines = git_show(git_dir, ds.commit, ds.paths[0]).decode("utf-8").splitlines()
    for n, line in enumerate(lines):
        if not line.strip():
            continue
        ex = json.loads(line)
        yield {"id": f"{n:05d}", "instruction": ex["instruction"] or "", "input": ex.get("input") or "",
               "output": ex["output"] or ""}


def _alpaca_seed_tasks(git_dir: Path, ds: Dataset) -> Iterator[dict]:
    """Alpaca seed-task JSONL (self-instruct's shape): one record per instance; the id is the task's
    ``id``, with ``#<n>`` for a task's second and later instances."""
    for path in ds.paths:
        for line in git_show(git_dir, ds.commit, path).decode("utf-8").splitlines():
            if not line.strip():
                continue
            task = json.loads(line)
            for n, inst in enumerate(task.get("instances") or []):
                yield {"id": task["id"] if n == 0 else f"{task['id']}#{n}", "instruction": task["instruction"] or "",
                       "input": inst.get("input") or "", "output": inst.get("output") or ""}


def convert_alpaca_json(git_dir: Path, ds: Dataset) -> Iterator[dict]:
    """Alpaca JSON (one list, no ids): the 0-based position is the id."""
    for n, ex in enumerate(json.loads(git_show(git_dir, ds.commit, ds.paths[0]))):
        yield {"id": f"{n:05d}", "instruction": ex.get("instruction") or "", "input": ex.get("input") or "",
               "output": ex.get("output") or ""}


# CC BY-NC-ND 4.0, and its README forbids redistribution: its records are never copied into the repo
NO_REDISTRIBUTION = {"japanese-daily-dialogue", "wanda-alpaca-ja"}  # and Alpaca's translation: provenance weak

DATASETS = [
    Dataset(
        id="jsquad-ja",
        name="JSQuAD v1.3 (JGLUE) validation + test: crowdsourced reading-comprehension QA",
        kind="human-written (crowdsourced QA over Wikipedia paragraphs)",
        repo="yahoojapan/JGLUE",
        commit="6f071c09316baae89c3d083a90985b4b1cb9968c",
        paths=["datasets/jsquad-v1.3/valid-v1.3.json", "datasets/jsquad-v1.3/test-v1.3.json"],
        license="CC-BY-SA-4.0",
        url="https://github.com/yahoojapan/JGLUE",
        license_stated="README.md '## License' (CC BY-SA 4.0) and LICENSE",
        attribution="JGLUE (JSQuAD) by Kurihara, Kawahara and Shibata / Yahoo Japan, "
                    "https://github.com/yahoojapan/JGLUE, licensed under CC BY-SA 4.0",
        convert=convert_jsquad,
        notes="question -> instruction, paragraph (title prefix '<title> [SEP] ' removed) -> input, "
              "first gold answer -> output; answers are short spans",
    ),
    Dataset(
        id="real-persona-chat",
        name="RealPersonaChat: Japanese chit-chat between crowd workers with their own personas",
        kind="human-written multi-turn dialogue (two people, no assistant)",
        repo="nu-dialogue/real-persona-chat",
        commit="28d0b6b3865b29cabc26c230a2db37cdf315e937",
        paths=["real_persona_chat/dialogues"],
        license="CC-BY-SA-4.0",
        url="https://github.com/nu-dialogue/real-persona-chat",
        license_stated="README.md '## ライセンス' (本コーパスは CC BY-SA 4.0 の下で提供されます) and LICENSE",
        attribution="RealPersonaChat by Yamashita, Inoue, Guo, Mochizuki, Kawahara and Higashinaka, "
                    "https://github.com/nu-dialogue/real-persona-chat, licensed under CC BY-SA 4.0",
        convert=convert_real_persona_chat,
        multi_turn=True,
        notes="first speaker -> user, second -> assistant (both are people); ~30 short turns per dialogue",
    ),
    Dataset(
        id="japanese-daily-dialogue",
        name="Japanese Daily Dialogue (日本語日常対話コーパス), five topics",
        kind="human-written multi-turn dialogue (manually created)",
        repo="jqk09a/japanese-daily-dialogue",
        commit="5e612e02da1228e22d2c8eec6aebe6eaa15b48f9",
        paths=[f"data/topic{i}.json" for i in range(1, 6)],
        license="CC-BY-NC-ND-4.0",
        url="https://github.com/jqk09a/japanese-daily-dialogue",
        license_stated="README.md '## License' (CC BY-NC-ND 4.0) and LICENSE; README '## Copyright' adds: "
                       "research purposes only, not to be used as a service, not to be distributed to others",
        attribution="Japanese Daily Dialogue by Akama, Isobe, Suzuki and Inui, "
                    "https://github.com/jqk09a/japanese-daily-dialogue, licensed under CC BY-NC-ND 4.0",
        convert=convert_jdd,
        multi_turn=True,
        notes="speaker A -> user, B -> assistant; local benchmarking only: the README forbids redistribution",
    ),
    Dataset(
        id="instruction-ja-edited",
        name="megagonlabs/instruction_ja: hh-rlhf dialogues rewritten by hand into natural Japanese",
        kind="human post-edited machine translation",
        repo="megagonlabs/instruction_ja",
        commit="a72a5d05fd1486c1c3b1e51eb2f362d66e8589dc",
        paths=["data/data.jsonl"],
        license="MIT",
        url="https://github.com/megagonlabs/instruction_ja",
        license_stated="README.md '## License' (MIT) and LICENSE",
        attribution="megagonlabs/instruction_ja by Yuta Hayashibe, https://github.com/megagonlabs/instruction_ja, MIT",
        convert=convert_megagon_edited,
        notes="utterances[0] (user) -> instruction, utterances[1] (agent) -> output; the same examples' "
              "raw machine translation is in instruction-ja-mt (cross-source near duplicates)",
    ),
    Dataset(
        id="instruction-ja-mt",
        name="megagonlabs/instruction_ja: raw machine translation (kunishou/hh-rlhf-49k-ja) of hh-rlhf",
        kind="machine-translated",
        repo="megagonlabs/instruction_ja",
        commit="a72a5d05fd1486c1c3b1e51eb2f362d66e8589dc",
        paths=["data/data.jsonl", "data/skipped.jsonl"],
        license="MIT",
        url="https://github.com/megagonlabs/instruction_ja",
        license_stated="README.md '## License' (MIT) and LICENSE; the translation comes from "
                       "kunishou/hh-rlhf-49k-ja of anthropics/hh-rlhf (README, .gitmodules)",
        attribution="megagonlabs/instruction_ja by Yuta Hayashibe (machine translation from kunishou/hh-rlhf-49k-ja "
                    "of Anthropic hh-rlhf), https://github.com/megagonlabs/instruction_ja, MIT",
        convert=convert_megagon_mt,
        notes="original_info.utterances.machine_translated_ja: user -> instruction, agent -> output",
    ),
    Dataset(
        id="multialpaca-ja",
        name="MultiAlpaca (PolyLM), Japanese part: self-instruct data generated with ChatGPT",
        kind="LLM-generated (self-instruct)",
        repo="DAMO-NLP-MT/PolyLM",
        commit="a8b49866ef90ec2db7972d34dececec35bd2df62",
        paths=["multialpaca/ja.jsonl"],
        license="Apache-2.0",
        url="https://huggingface.co/datasets/DAMO-NLP-MT/multialpaca",
        license_stated="Hugging Face dataset card of DAMO-NLP-MT/multialpaca ('License: apache-2.0', same ja.jsonl, "
                       "3.9 MB); the GitHub README states no data license",
        attribution="MultiAlpaca (PolyLM) by Wei et al. / Alibaba DAMO Academy, "
                    "https://github.com/DAMO-NLP-MT/PolyLM, Apache-2.0",
        convert=convert_multialpaca,
        generated_by={"model": "gpt-3.5-turbo", "license": "OpenAI-ToU"},
        notes="Alpaca fields as they are; 460 instructions are wrapped in literal double quotes, "
              "5,391 inputs are null (written as '')",
    ),
    Dataset(
        id="wanda-alpaca-ja",
        name="Stanford Alpaca machine-translated into Japanese (alpaca_data_ja.json in if001/wanda)",
        kind="machine-translated (Alpaca, text-davinci-003 self-instruct, translated)",
        repo="if001/wanda",
        commit="d01c30751803c01f3ffe957ca704055c22de8b61",
        paths=["alpaca_data_ja.json"],
        license="CC-BY-NC-4.0",
        url="https://github.com/if001/wanda",
        license_stated="not stated for the file (the repository's LICENSE is the Wanda code's); the records are "
                       "Stanford Alpaca's, whose data is CC BY-NC 4.0 (tatsu-lab/stanford_alpaca DATA_LICENSE): "
                       "recorded as CC-BY-NC-4.0, provenance weak",
        attribution="Stanford Alpaca by Taori et al. (https://github.com/tatsu-lab/stanford_alpaca, CC BY-NC 4.0), "
                    "Japanese translation as found in https://github.com/if001/wanda (alpaca_data_ja.json)",
        convert=convert_alpaca_json,
        generated_by={"model": "text-davinci-003", "license": "OpenAI-ToU"},
        notes="Alpaca fields as they are; the 0-based position is the id; translator unknown",
    ),
    Dataset(
        id="alpaca-jp-seeds",
        name="Stanford Alpaca's 175 seed tasks, DeepL-translated and corrected by hand (Hajime-Y/Alpaca-jp)",
        kind="machine-translated, post-edited (human-written seed tasks)",
        repo="Hajime-Y/Alpaca-jp",
        commit="668ef87b910b1718c18b1db7c33041fd8053cec0",
        paths=["seed_tasks/seed_tasks_jp_cleaned.jsonl"],
        license="Apache-2.0",
        url="https://github.com/Hajime-Y/Alpaca-jp",
        license_stated="LICENSE.txt (Apache-2.0); README.md 'Seed tasks': Stanford Alpaca's seed_tasks.jsonl "
                       "(Apache-2.0) translated with DeepL and corrected by hand",
        attribution="Alpaca-jp seed tasks by Hajime-Y (https://github.com/Hajime-Y/Alpaca-jp, Apache-2.0), "
                    "from Stanford Alpaca's seed tasks (Taori et al.)",
        convert=_alpaca_seed_tasks,
        notes="instruction, instances[].input, instances[].output; id <- the task id (#n for later instances)",
    ),
    Dataset(
        id="amenokaku-code",
        name="Amenokaku-Code-Instruct seeds: Japanese data-science coding exercises with Python answers",
        kind="human-written code (exercise collections), instruction form",
        repo="Hajime-Y/Alpaca-jp",
        commit="668ef87b910b1718c18b1db7c33041fd8053cec0",
        paths=["seed_tasks/seed_tasks_amenokaku_mit_python_450.jsonl"],
        license="MIT",
        url="https://github.com/Hajime-Y/Alpaca-jp",
        license_stated="each record's 'liscence' field is MIT (the MIT-licensed part of kunishou/amenokaku-code-"
                       "instruct: datascience_100_knocks_python and similar); the repository is Apache-2.0",
        attribution="amenokaku-code-instruct (kunishou), MIT part, as collected in "
                    "https://github.com/Hajime-Y/Alpaca-jp (seed_tasks_amenokaku_mit_python_450.jsonl)",
        convert=_alpaca_seed_tasks,
        notes="instruction, instances[].input, instances[].output (mostly bare pandas / SQL / Python code)",
    ),
    Dataset(
        id="alpaca-jp-reasoning",
        name="Alpaca-jp math and Python seed tasks: word problems solved with code, and Python tasks",
        kind="LLM-written reasoning and code (math word problems with <llm-code> solutions; Python tasks)",
        repo="Hajime-Y/Alpaca-jp",
        commit="668ef87b910b1718c18b1db7c33041fd8053cec0",
        paths=["seed_tasks/seed_tasks_jp_math_143.jsonl", "seed_tasks/seed_tasks_jp_python_97.jsonl"],
        license="Apache-2.0",
        url="https://github.com/Hajime-Y/Alpaca-jp",
        license_stated="LICENSE.txt (Apache-2.0); the files' own origin is not stated (the math solutions follow "
                       "OpenMathInstruct's <llm-code> format)",
        attribution="Alpaca-jp math and Python seed tasks by Hajime-Y, https://github.com/Hajime-Y/Alpaca-jp, Apache-2.0",
        convert=_alpaca_seed_tasks,
        notes="instruction, instances[].input, instances[].output; two files, ids distinct (math_seed_task_*, "
              "python_seed_task_*)",
    ),
]

# the two pools of the selection benchmark (benchmarks/selection/): instruction data as users bring it,
# and the earlier mixed pool with chat and span QA
POOLS = {
    "instruction": ["multialpaca-ja", "instruction-ja-mt", "instruction-ja-edited", "wanda-alpaca-ja",
                    "alpaca-jp-seeds", "amenokaku-code", "alpaca-jp-reasoning"],
    "mixed": ["jsquad-ja", "real-persona-chat", "japanese-daily-dialogue", "instruction-ja-mt",
              "instruction-ja-edited", "multialpaca-ja"],
}


@dataclass
class Benchmark:
    id: str
    repo: str
    commit: str
    path: str
    license: str
    url: str


BENCHMARK = Benchmark(
    id="elyza_tasks_100",
    repo="YoutechA320U/ELYZA-tasks-100-AutoEval",
    commit="6fef053b2eb8b7952d873a4bb45000a515785745",
    path="test.csv",  # same blob (ad695f09...) as wmoto-ai/elyza-tasks-100-humanevaluator data/elyza_tasks_100.csv
    license="CC-BY-SA-4.0",
    url="https://huggingface.co/datasets/elyza/ELYZA-tasks-100",
)


@dataclass
class MTBench:
    """Japanese MT-Bench: 80 questions and gpt-4o reference answers (checked by people), the dev set of the
    selection benchmark (first turns) and, with ELYZA-tasks-100, the gold answers of the audit."""
    repo: str = "Stability-AI/FastChat"
    commit: str = "e37eb28ee490480f6f4989274ed47c55f7dfce82"  # branch jp-stable
    questions: str = "fastchat/llm_judge/data/japanese_mt_bench/question_full.jsonl"
    references: str = "fastchat/llm_judge/data/japanese_mt_bench/reference_answer/base-gpt4o-with-human-annotation.jsonl"
    license: str = "Apache-2.0"
    url: str = "https://github.com/Stability-AI/FastChat/tree/jp-stable/fastchat/llm_judge/data/japanese_mt_bench"


MT_BENCH = MTBench()


# ---------------------------------------------------------------- building


def subsample(records: list[dict], dataset_id: str, limit: int) -> list[dict]:
    """At most ``limit`` records: those with the smallest sha256("<dataset>:<id>"), in source order."""
    if len(records) <= limit:
        return records
    def key(i: int) -> str:
        return hashlib.sha256(f"{dataset_id}:{records[i]['id']}".encode()).hexdigest()
    keep = sorted(sorted(range(len(records)), key=key)[:limit])
    return [records[i] for i in keep]


def valid(rec: dict, multi_turn: bool) -> bool:
    """A record jcurate can read: text in instruction and output, or a user and an assistant turn."""
    if multi_turn:
        roles = {t["role"] for t in rec["messages"] if t["content"].strip()}
        return {"user", "assistant"} <= roles
    return bool(rec["instruction"].strip()) and bool(rec["output"].strip())


def write_jsonl(path: Path, rows: list[dict]) -> None:
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def build_dataset(ds: Dataset, root: Path, out: Path, limit: int) -> dict:
    git_dir = check_mirror(root, ds.repo, ds.commit)
    records, seen, skipped = [], set(), 0
    for rec in ds.convert(git_dir, ds):
        if rec["id"] in seen:
            raise BuildError(f"{ds.id}: duplicate record id {rec['id']!r}")
        seen.add(rec["id"])
        if valid(rec, ds.multi_turn):
            records.append(rec)
        else:
            skipped += 1
    kept = subsample(records, ds.id, limit)
    write_jsonl(out / f"{ds.id}.jsonl", kept)
    print(f"{ds.id:<26} {ds.kind:<60} read {len(records) + skipped:>6}  "
          f"unusable {skipped:>3}  written {len(kept):>6}  ({ds.license})", flush=True)
    entry = {
        "id": ds.id,
        "name": ds.name,
        "path": f"{ds.id}.jsonl",
        "format": "jsonl",
        "license": ds.license,
        "url": ds.url,
        "attribution": ds.attribution,
        "fields": {"messages": "messages"} if ds.multi_turn
        else {"instruction": "instruction", "input": "input", "output": "output"},
        "id_field": "id",
    }
    if ds.generated_by:
        entry["generated_by"] = ds.generated_by
    # jcurate's manifest loader refuses keys it does not know, so the provenance goes in 'notes'
    entry["notes"] = (f"{ds.kind}. From https://github.com/{ds.repo} at {ds.commit}: {', '.join(ds.paths)}. "
                      f"License stated in: {ds.license_stated}. Records: {len(records) + skipped} in the source, "
                      f"{skipped} unusable, {len(kept)} written. Mapping: {ds.notes}.")
    return entry


def build_benchmark(bm: Benchmark, root: Path, out: Path) -> int:
    git_dir = check_mirror(root, bm.repo, bm.commit)
    text = git_show(git_dir, bm.commit, bm.path).decode("utf-8-sig")
    rows = [{"input": r["input"], "output": r["output"], "eval_aspect": r["eval_aspect"]}
            for r in csv.DictReader(io.StringIO(text))]
    (out / "eval").mkdir(parents=True, exist_ok=True)
    write_jsonl(out / "eval" / f"{bm.id}.jsonl", rows)
    print(f"eval/{bm.id}.jsonl: {len(rows)} tasks ({bm.license}, {bm.repo}@{bm.commit[:12]}:{bm.path})")
    return len(rows)


def build_mt_bench(bm: MTBench, root: Path, out: Path) -> int:
    """``eval/japanese_mt_bench.jsonl`` (MT-Bench shape: ``question_id``, ``category``, ``turns``, ``reference``
    with the first turn's reference answer)."""
    git_dir = check_mirror(root, bm.repo, bm.commit)
    refs = {}
    for line in git_show(git_dir, bm.commit, bm.references).decode("utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            refs[row["question_id"]] = row["choices"][0]["turns"]
    rows = []
    for line in git_show(git_dir, bm.commit, bm.questions).decode("utf-8").splitlines():
        if not line.strip():
            continue
        q = json.loads(line)
        ref = refs.get(q["question_id"])
        if ref:
            rows.append({"question_id": q["question_id"], "category": q["category"], "turns": q["turns"][:1],
                         "reference": ref[:1]})
    (out / "eval").mkdir(parents=True, exist_ok=True)
    write_jsonl(out / "eval" / "japanese_mt_bench.jsonl", rows)
    print(f"eval/japanese_mt_bench.jsonl: {len(rows)} first turns with references ({bm.license}, "
          f"{bm.repo}@{bm.commit[:12]})")
    return len(rows)


def build_gold(out: Path) -> dict:
    """The gold set of the audit: every reference answer of ELYZA-tasks-100 and of Japanese MT-Bench (first
    turn) as an SFT record (prompt -> instruction, reference -> output), one source each."""
    gold = out / "gold"
    gold.mkdir(parents=True, exist_ok=True)
    elyza = [json.loads(line) for line in (out / "eval" / f"{BENCHMARK.id}.jsonl").read_text(encoding="utf-8").splitlines()]
    mtb = [json.loads(line) for line in (out / "eval" / "japanese_mt_bench.jsonl").read_text(encoding="utf-8").splitlines()]
    write_jsonl(gold / "elyza-tasks-100-gold.jsonl",
                [{"id": f"{i:03d}", "instruction": r["input"], "input": "", "output": r["output"]} for i, r in enumerate(elyza)])
    write_jsonl(gold / "japanese-mt-bench-gold.jsonl",
                [{"id": str(r["question_id"]), "instruction": r["turns"][0], "input": "", "output": r["reference"][0]}
                 for r in mtb])
    fields = {"instruction": "instruction", "input": "input", "output": "output"}
    sources = [
        {"id": "elyza-tasks-100-gold", "path": "elyza-tasks-100-gold.jsonl", "format": "jsonl", "license": BENCHMARK.license,
         "url": BENCHMARK.url, "fields": dict(fields), "id_field": "id",
         "notes": f"ELYZA-tasks-100 reference answers as records ({BENCHMARK.repo}@{BENCHMARK.commit}:{BENCHMARK.path})"},
        {"id": "japanese-mt-bench-gold", "path": "japanese-mt-bench-gold.jsonl", "format": "jsonl",
         "license": MT_BENCH.license, "url": MT_BENCH.url, "fields": dict(fields), "id_field": "id",
         "generated_by": {"model": "gpt-4o", "license": "OpenAI-ToU"},
         "notes": f"Japanese MT-Bench first-turn gpt-4o references, checked by people "
                  f"({MT_BENCH.repo}@{MT_BENCH.commit}:{MT_BENCH.references})"},
    ]
    write_manifest(gold / "sources.yaml", sources, "the gold set of the audit (reference answers as SFT records)")
    print(f"gold/: {len(elyza)} ELYZA-tasks-100 and {len(mtb)} Japanese MT-Bench reference answers")
    return {"elyza": len(elyza), "mt_bench": len(mtb)}


def write_manifest(path: Path, entries: list[dict], what: str) -> None:
    header = ("# jcurate sources manifest over real public Japanese datasets, written by\n"
              "# benchmarks/real_data/build_inputs.py (provenance: benchmarks/real_data/sources.md).\n"
              f"# {what}. Paths are relative to this file.\n")
    path.write_text(header + yaml.safe_dump({"sources": entries}, allow_unicode=True, sort_keys=False, width=100),
                    encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mirror-root", type=Path, default=DEFAULT_MIRRORS,
                        help="folder holding <owner>+<name>/repo bare git repositories (default: $JCURATE_MIRRORS, "
                             "else runs/mirrors in the project)")
    parser.add_argument("--out", type=Path, default=DEFAULT_REALDATA,
                        help="output folder (default: $JCURATE_REALDATA, else runs/realdata in the project)")
    parser.add_argument("--no-clone", dest="clone", action="store_false",
                        help="do not git clone a repository missing under --mirror-root (stop with its name instead)")
    parser.add_argument("--max-per-dataset", type=int, default=15000,
                        help="deterministic subsample size per dataset (default: 15000)")
    args = parser.parse_args(argv)
    if args.max_per_dataset < 1:
        parser.error("--max-per-dataset must be at least 1")
    try:
        # every mirror is checked first, so that one message lists all that are missing
        problems = []
        pinned = [(d.repo, d.commit) for d in DATASETS] + [(BENCHMARK.repo, BENCHMARK.commit), (MT_BENCH.repo, MT_BENCH.commit)]
        for repo, commit in dict.fromkeys(pinned):
            if args.clone:
                obtain_mirror(args.mirror_root, repo, commit)
            try:
                check_mirror(args.mirror_root, repo, commit)
            except BuildError as e:
                problems.append(str(e))
        if problems:
            raise BuildError("\n".join(problems))
        args.out.mkdir(parents=True, exist_ok=True)
        entries = [build_dataset(ds, args.mirror_root, args.out, args.max_per_dataset) for ds in DATASETS]
        build_benchmark(BENCHMARK, args.mirror_root, args.out)
        build_mt_bench(MT_BENCH, args.mirror_root, args.out)
        build_gold(args.out)
    except BuildError as e:
        print(f"build_inputs: error: {e}", file=sys.stderr)
        return 1
    write_manifest(args.out / "sources.yaml", entries,
                   "Every dataset. Eval sets: eval/elyza_tasks_100.jsonl (test), eval/japanese_mt_bench.jsonl (dev)")
    for pool, ids in POOLS.items():
        write_manifest(args.out / f"pool-{pool}.yaml", [e for e in entries if e["id"] in ids],
                       f"The selection benchmark's {pool} pool")
    print(f"wrote {args.out}/sources.yaml ({len(entries)} sources), pool-{{{','.join(POOLS)}}}.yaml")
    return 0


if __name__ == "__main__":
    sys.exit(main())
