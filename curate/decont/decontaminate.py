"""Decontamination against eval sets: copies of eval prompts of any length.

Three tests on a record's instruction side (instruction, input, each user turn), in order:

1. whole prompt: the normalised text (NFKC, lower case, no whitespace) equals an eval prompt
   or contains one (prompts of ``min_prompt_chars`` or more);
2. near copy: within ``max(near_edits, near_edit_ratio x length)`` character edits of an eval
   prompt (Levenshtein, rapidfuzz) — a short prompt with a character or two changed has
   no long n-gram left to share;
3. n-grams (datatrove's ``NGramsDecontFilter``): a shared ``n_grams``-token (fugashi)
   n-gram, for long prompts copied into a longer text.

On the n-gram part:

datatrove's ``NGramsDecontIndexer`` reads its tasks through lighteval (and requires it);
our eval sets are local files in ELYZA-tasks-100 shape (``input``) or Japanese MT-Bench
shape (``turns``), so ``build_decont_index`` writes the same ``*.index.hashes`` files from
them. The filter is datatrove's, with a fugashi tokenizer and one change: it reads the
record's instruction side (instruction + input, or the user turns), as the issue asks,
not the answer, so shared boilerplate in answers does not count as contamination.
"""

from __future__ import annotations

import json
import re
import unicodedata
from bisect import bisect_left, bisect_right
from functools import cached_property
from pathlib import Path

import numpy as np
from datatrove.data import Document
from datatrove.pipeline.decont.n_grams import NGramsDecontConfig, NGramsDecontFilter
from datatrove.pipeline.writers.disk_base import DiskWriter
from datatrove.utils.hashing import create_hash_func
from datatrove.utils.text import ngrams, simplify_text
from rapidfuzz import process
from rapidfuzz.distance import Levenshtein

from core.errors import JcurateError
from core.jsonl import read_json_lines
from curate.batch_stats import BatchStatsFilter
from curate.dedup.near_duplicates import NORM
from curate.filters.record_filters import FILTER_BATCH
from curate.text.char_ngrams import coefficients, text_windows
from curate.text.tokenizers import FugashiTokenizer


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


PROMPTS_FILE = "prompts.json"
WINDOWS_FILE = "ngram_windows.json"


def normalise_prompt(text: str) -> str:
    """NFKC, lower case, no whitespace: what a whole-prompt or near copy is compared on.

    >>> normalise_prompt("伊勢神宮は　何県？ ")
    '伊勢神宮は何県?'
    """
    return "".join(unicodedata.normalize("NFKC", text).lower().split())


def build_decont_index(eval_files: list[str], index_folder: str | Path, n_grams: int) -> int:
    """Writes ``<eval name>.index.hashes`` (uint64 n-gram hashes) per eval file and ``prompts.json``
    (the normalised prompts, for the whole-prompt and near-copy tests); returns the hash count."""
    config = decont_config(n_grams)
    hash_func = create_hash_func(config.hash_config)
    tokenizer = FugashiTokenizer()
    folder = Path(index_folder)
    folder.mkdir(parents=True, exist_ok=True)
    total = 0
    prompts: dict[str, str] = {}
    streams: list[str] = []  # the characters of the tokens of each prompt that has an n-gram
    shortest = None  # the fewest characters an eval n-gram spans
    for path in eval_files:
        hashes = set()
        for i, prompt in enumerate(eval_prompts(path)):
            tokens = tokenizer.word_tokenize(simplify_text(prompt, config.norm_config))
            hashes.update(hash_func(" ".join(g)) for g in ngrams(tokens, n_grams))
            prompts.setdefault(normalise_prompt(prompt), f"{Path(path).stem}#{i + 1}")
            if len(tokens) >= n_grams:
                streams.append("".join(tokens))
                sizes = np.cumsum([0] + [len(t) for t in tokens])
                span = int((sizes[n_grams:] - sizes[:-n_grams]).min())
                shortest = span if shortest is None else min(shortest, span)
        arr = np.array(sorted(hashes), dtype=config.hash_config.np_descr)
        arr.tofile(folder / f"{Path(path).stem}.index.hashes")
        total += len(hashes)
    (folder / PROMPTS_FILE).write_text(json.dumps(prompts, ensure_ascii=False), encoding="utf-8")
    (folder / WINDOWS_FILE).write_text(json.dumps({"chars": shortest, "streams": streams}, ensure_ascii=False),
                                       encoding="utf-8")
    return total


class NgramWindows:
    """A test that rules out a shared n-gram before any tokenizing (fugashi was most of the
    filter's time, on records that almost never share one).

    MeCab's tokens are the characters of their text in order, whitespace left out (checked for
    every code point; the tests re-check the BMP; a NUL ends its input), so the tokens of a shared n-gram are one run of
    the record's non-whitespace characters, at least ``chars`` long (the shortest eval n-gram),
    that also occurs in an eval prompt's token characters. A record without any ``chars``-long
    window from an eval prompt cannot share an n-gram: the filter keeps it as it would have;
    the others go through the n-gram test as before. Same decisions, tested."""

    def __init__(self, chars: int, streams: list[str]):
        self.chars = chars
        self.windows = {s[i:i + chars] for s in streams for i in range(len(s) - chars + 1)}
        self._hashes: np.ndarray | None = None

    def may_share(self, normalised: str) -> bool:
        if not self.windows:
            return False
        text, k, windows = "".join(normalised.split()), self.chars, self.windows
        return any(text[i:i + k] in windows for i in range(len(text) - k + 1))

    def may_share_many(self, normalised: list[str]) -> list[bool]:
        """``may_share`` of each text: every window of every text hashed in one numpy pass and looked up
        among the eval windows' hashes (a fifth of the time of a set lookup per window, in Python); a text
        with a hit is checked by ``may_share`` (a hit may be a hash collision), so the answers are equal.

        >>> w = NgramWindows(3, ["あいうえお"])
        >>> w.may_share_many(["xxあいうxx", "あい う", "かきくけこ", ""])
        [True, True, False, False]
        """
        if not self.windows:
            return [False] * len(normalised)
        compact = ["".join(t.split()) for t in normalised]
        try:
            hashes, counts = text_windows(compact, self.chars, _WINDOW_COEFFS)
        except UnicodeEncodeError:  # a lone surrogate: no code points to hash
            return [self.may_share(t) for t in normalised]
        if self._hashes is None:
            self._hashes = np.unique(text_windows(sorted(self.windows), self.chars, _WINDOW_COEFFS)[0])
        at = np.minimum(np.searchsorted(self._hashes, hashes), self._hashes.size - 1)
        hit = np.zeros(len(compact), dtype=bool)
        hit[np.repeat(np.arange(len(compact)), counts)[self._hashes[at] == hashes]] = True
        return [bool(h) and self.may_share(t) for h, t in zip(hit.tolist(), normalised)]


_WINDOW_COEFFS = coefficients(13)  # the window hashes of NgramWindows.may_share_many (any fixed seed)


class PromptMatcher:
    """Whole-prompt and near-copy tests against the eval prompts (normalised text -> task name)."""

    def __init__(self, prompts: dict[str, str], min_chars: int = 8, near_edits: int = 2,
                 near_edit_ratio: float = 0.1):
        self.prompts = {p: task for p, task in prompts.items() if p}
        self.min_chars, self.near_edits, self.near_edit_ratio = min_chars, near_edits, near_edit_ratio
        self.contained = [(p, t) for p, t in self.prompts.items() if len(p) >= min_chars]
        # whether any of them occurs in a text, in one regex search (a loop of substring tests was most of
        # the filter's time); the loop then names the first
        self._any_contained = re.compile("|".join(re.escape(p) for p, _ in self.contained)) if self.contained else None
        # by length (stable: in insertion order within a length), for the near-copy test's window of lengths
        self.by_length = sorted(self.contained, key=lambda pt: len(pt[0]))
        self.lengths = [len(p) for p, _ in self.by_length]
        self.texts = [p for p, _ in self.by_length]

    def allowed_edits(self, length: int) -> int:
        return max(self.near_edits, int(self.near_edit_ratio * length))

    def match(self, text: str) -> str | None:
        """``task: how`` for the first eval prompt the text copies, else None.

        >>> m = PromptMatcher({normalise_prompt("伊勢神宮は何県？"): "elyza#7"})
        >>> m.match("伊勢神宮は何県?")
        'elyza#7: whole prompt'
        >>> m.match("次の質問に答えて。伊勢神宮は何県？")
        'elyza#7: contains the prompt'
        >>> m.match("伊勢神社は何県？")
        'elyza#7: near copy (1 edits)'
        >>> m.match("出雲大社は何県？") is None
        True
        """
        norm = normalise_prompt(text)
        if not norm:
            return None
        if norm in self.prompts:
            return f"{self.prompts[norm]}: whole prompt"
        if self._any_contained is not None and self._any_contained.search(norm):
            for p, task in self.contained:
                if len(p) < len(norm) and p in norm:
                    return f"{task}: contains the prompt"
        # the first prompt, by length then insertion, within its own allowance of edits (and the text's): the
        # distances of the prompts of a near length in one rapidfuzz call, not one call each
        reach = self.allowed_edits(len(norm))
        lo = bisect_left(self.lengths, max(self.min_chars, len(norm) - reach))
        hi = bisect_right(self.lengths, len(norm) + reach)
        if lo == hi:
            return None
        near = [(i, d) for _, d, i in process.extract(norm, self.texts[lo:hi], scorer=Levenshtein.distance,
                                                      score_cutoff=reach, limit=None)
                if d <= min(self.allowed_edits(self.lengths[lo + i]), reach)]
        if not near:
            return None
        i, d = min(near)
        return f"{self.by_length[lo + i][1]}: near copy ({d} edits)"


class InstructionDecontFilter(BatchStatsFilter, NGramsDecontFilter):
    """Drops a record whose instruction side copies an eval prompt (whole, near, or by a shared n-gram)."""

    name = "🦠 decontamination (eval prompts)"

    def __init__(self, index_folder: str, n_grams: int, exclusion_writer: DiskWriter | None = None,
                 min_prompt_chars: int = 8, near_edits: int = 2, near_edit_ratio: float = 0.1):
        super().__init__(index_folder, config=decont_config(n_grams), exclusion_writer=exclusion_writer,
                         language=FugashiTokenizer())
        self.batch_size = FILTER_BATCH
        self.prompts_folder = str(index_folder)
        self.matcher_args = (min_prompt_chars, near_edits, near_edit_ratio)
        self._matcher: PromptMatcher | None = None

    @classmethod
    def from_config(cls, index_folder: str, c, exclusion_writer: DiskWriter | None = None):
        """From a ``DecontaminationConfig``."""
        return cls(index_folder, c.n_grams, exclusion_writer=exclusion_writer, min_prompt_chars=c.min_prompt_chars,
                   near_edits=c.near_edits, near_edit_ratio=c.near_edit_ratio)

    @property
    def matcher(self) -> PromptMatcher:
        if self._matcher is None:
            path = Path(self.prompts_folder) / PROMPTS_FILE
            prompts = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
            self._matcher = PromptMatcher(prompts, *self.matcher_args)
        return self._matcher

    @cached_property
    def ngram_windows(self) -> NgramWindows | None:
        """None where the index has no windows file (an index built before it existed): every
        record then takes the n-gram test. Read on first use, in the worker."""
        path = Path(self.prompts_folder) / WINDOWS_FILE
        if not path.is_file():
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
        # no eval prompt long enough for an n-gram: no windows, nothing to share
        return NgramWindows(data["chars"] or 1, data["streams"])

    @staticmethod
    def prompt_parts(doc: Document) -> list[str]:
        """A record's instruction side: its instruction and input, or its user turns."""
        meta = doc.metadata
        if meta.get("messages"):
            return [t["content"] for t in meta["messages"] if t["role"] == "user"]
        return [p for p in (meta.get("instruction"), meta.get("input")) if p]

    def filter_batch(self, batch: list[Document]) -> list[bool | tuple[bool, str]]:
        """``filter`` of each document, the n-gram windows test of the batch in one numpy pass."""
        windows = self.ngram_windows
        if windows is None:
            return [self.filter(doc) for doc in batch]
        probes = ["\n".join(self.prompt_parts(doc)) or doc.text for doc in batch]
        shares = windows.may_share_many([simplify_text(p, self.config.norm_config) for p in probes])
        return [self.filter(doc, share) for doc, share in zip(batch, shares)]

    def filter(self, doc: Document, may_share: bool | None = None) -> bool | tuple[bool, str]:
        """``may_share``: the n-gram windows test of the record's instruction side, where known (``filter_batch``)."""
        meta = doc.metadata
        parts = self.prompt_parts(doc)
        prompt = "\n".join(parts)
        for candidate in ([prompt] + parts if len(parts) > 1 else [prompt]):
            hit = self.matcher.match(candidate)
            if hit:
                meta["drop_value"] = hit
                return False, "contaminated"
        probe = Document(text=prompt or doc.text, id=doc.id, metadata={})
        windows = self.ngram_windows
        if may_share is None and windows is not None:
            may_share = windows.may_share(simplify_text(probe.text, self.config.norm_config))
        if may_share is False:
            return True
        result = super().filter(probe)
        if result is True:
            return True
        meta["drop_value"] = f"{probe.metadata['contaminated_task']}: {probe.metadata['contaminated_ngram']}"
        return result


def loaded_decont_filter(eval_files: list[str], c) -> InstructionDecontFilter:
    """A filter for one process (the service, an eval check): its index built in a temporary folder,
    loaded into memory, and the folder removed (it was left behind in /tmp by every service start)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="jcurate-decont-") as folder:
        build_decont_index(eval_files, folder, c.n_grams)
        filt = InstructionDecontFilter.from_config(folder, c)
        filt.load_index_hashes()
        _ = filt.matcher, filt.ngram_windows
    return filt
