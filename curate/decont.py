"""Decontamination against eval sets, on datatrove's ``NGramsDecontFilter``.

datatrove's ``NGramsDecontIndexer`` reads its tasks through lighteval (and requires it);
our eval sets are local files in ELYZA-tasks-100 shape (``input``) or Japanese MT-Bench
shape (``turns``), so ``build_decont_index`` writes the same ``*.index.hashes`` files from
them. The filter is datatrove's, with a fugashi tokenizer and one change: it reads the
record's instruction side (instruction + input, or the user turns), as the issue asks,
not the answer, so shared boilerplate in answers does not count as contamination.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from datatrove.data import Document
from datatrove.pipeline.decont.n_grams import NGramsDecontConfig, NGramsDecontFilter
from datatrove.pipeline.writers.disk_base import DiskWriter
from datatrove.utils.hashing import create_hash_func
from datatrove.utils.text import ngrams, simplify_text

from core.errors import JcurateError
from core.jsonl import read_json_lines
from curate.dedup import NORM
from curate.tokenizers import FugashiTokenizer


def decont_config(n_grams: int) -> NGramsDecontConfig:
    return NGramsDecontConfig(n_grams=n_grams, find_query_ngrams=True, find_overlap_ngrams=False, norm_config=NORM)


def eval_prompts(path: str | Path) -> list[str]:
    """The prompts of an eval file: ``input`` (ELYZA shape) or every turn of ``turns`` (MT-Bench shape)."""
    prompts = []
    for lineno, item in read_json_lines(path, "eval file"):
        if isinstance(item.get("input"), str):
            prompts.append(item["input"])
        elif isinstance(item.get("turns"), list):
            prompts.extend(t for t in item["turns"] if isinstance(t, str))
        else:
            raise JcurateError(f"eval file {path} line {lineno}: needs 'input' (ELYZA shape) or 'turns' (MT-Bench shape)")
    return prompts


def build_decont_index(eval_files: list[str], index_folder: str | Path, n_grams: int) -> int:
    """Writes ``<eval name>.index.hashes`` (uint64 n-gram hashes) per eval file; returns the hash count."""
    config = decont_config(n_grams)
    hash_func = create_hash_func(config.hash_config)
    tokenizer = FugashiTokenizer()
    folder = Path(index_folder)
    folder.mkdir(parents=True, exist_ok=True)
    total = 0
    for path in eval_files:
        hashes = set()
        for prompt in eval_prompts(path):
            tokens = tokenizer.word_tokenize(simplify_text(prompt, config.norm_config))
            hashes.update(hash_func(" ".join(g)) for g in ngrams(tokens, n_grams))
        arr = np.array(sorted(hashes), dtype=config.hash_config.np_descr)
        arr.tofile(folder / f"{Path(path).stem}.index.hashes")
        total += len(hashes)
    return total


class InstructionDecontFilter(NGramsDecontFilter):
    """Drops a record whose instruction side shares an n-gram with an eval prompt."""

    name = "🦠 decontamination (eval n-grams)"

    def __init__(self, index_folder: str, n_grams: int, exclusion_writer: DiskWriter | None = None):
        super().__init__(index_folder, config=decont_config(n_grams), exclusion_writer=exclusion_writer,
                         language=FugashiTokenizer())

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        meta = doc.metadata
        if meta.get("messages"):
            prompt = "\n".join(t["content"] for t in meta["messages"] if t["role"] == "user")
        else:
            prompt = "\n".join(p for p in (meta.get("instruction"), meta.get("input")) if p)
        probe = Document(text=prompt or doc.text, id=doc.id, metadata={})
        result = super().filter(probe)
        if result is True:
            return True
        meta["drop_value"] = f"{probe.metadata['contaminated_task']}: {probe.metadata['contaminated_ngram']}"
        return result
