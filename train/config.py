"""``jcurate train`` configuration: TRL's own ``ModelConfig`` and ``SFTConfig`` plus our ``data:`` block.

Validated before any model is loaded: unknown keys (naming the section and the key), the
method, the subset (it must exist in the store) or the file.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from core.config import from_dict, load_yaml
from core.errors import JcurateError

METHODS = ("lora", "qlora", "full", "prompt-tuning")
TOP_KEYS = {"method", "model", "training", "data", "prompt_tuning", "build_tiny_model"}


@dataclass
class DataConfig:
    subset: str | None = None  # a subset in the store ...
    file: str | None = None  # ... or a JSONL file (instruction/input/output or messages)
    db: str = "jcurate.duckdb"
    # chatml | gemma (both with generation marks) | model (the tokenizer's own) | a .jinja file
    chat_template: str = "chatml"
    system_prompt: str | None = None
    eval_fraction: float = 0.1
    seed: int = 0

    def validate(self, key: str = "data") -> None:
        if bool(self.subset) == bool(self.file):
            raise JcurateError(f"config key '{key}': name exactly one of 'subset' or 'file'")
        if not 0 <= self.eval_fraction < 1:
            raise JcurateError(f"config key '{key}.eval_fraction': must be in [0, 1), got {self.eval_fraction}")
        if self.file and not Path(self.file).is_file():
            raise JcurateError(f"config key '{key}.file': file not found: {self.file}")
        if self.chat_template not in ("chatml", "gemma", "model") and not Path(self.chat_template).is_file():
            raise JcurateError(f"config key '{key}.chat_template': chatml, gemma, model, or a template file; "
                               f"{self.chat_template!r} is none of these")


@dataclass
class PromptTuningOptions:
    num_virtual_tokens: int = 16
    init_text: str | None = None  # e.g. "次の指示に日本語で丁寧に答えてください。"; None = random init


@dataclass
class TrainJob:
    method: str
    model: object  # trl.ModelConfig
    training: object  # trl.SFTConfig
    data: DataConfig
    prompt_tuning: PromptTuningOptions = field(default_factory=PromptTuningOptions)
    build_tiny_model: bool = False  # build the tiny offline model at model_name_or_path when it is missing
    raw: dict = field(default_factory=dict)


def _known(section: str, data: dict, cls) -> None:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise JcurateError(f"config key '{section}.{unknown[0]}': unknown key for {cls.__name__}"
                           + (f" (and {', '.join(unknown[1:])})" if len(unknown) > 1 else ""))


SCALARS = (bool, int, float, str)


def _scalar_value(key: str, value, tp):
    """``value`` checked against a field typed with scalars only (``float``, ``int | None``, ``bool``...),
    before any model loads: TRL's dataclasses take a wrong type as it is and fail deep in training. A
    number written as a string is taken as the number: YAML reads ``3e-4`` (no dot) as a string. Fields
    of other types (dicts, lists, enums) are left to TRL."""
    options = typing.get_args(tp) if typing.get_origin(tp) in (typing.Union, types.UnionType) else (tp,)
    if value is None and type(None) in options:
        return value
    scalars = [o for o in options if o is not type(None)]
    if not scalars or any(o not in SCALARS for o in scalars):
        return value
    if type(value) in scalars or isinstance(value, int) and not isinstance(value, bool) and float in scalars:
        return value
    if isinstance(value, str) and str not in scalars and (int in scalars or float in scalars):
        try:
            number = float(value)
        except ValueError:
            number = None
        if number is not None and float in scalars:
            return number
        if number is not None and number.is_integer():
            return int(number)
    wanted = " or ".join({bool: "true/false", int: "an integer", float: "a number", str: "a string"}[o]
                         for o in scalars) + (" or null" if type(None) in options else "")
    raise JcurateError(f"config key '{key}': expected {wanted}, got {value!r}")


def _typed(section: str, data: dict, cls) -> dict:
    fields = {f.name: f.type for f in dataclasses.fields(cls)}
    return {k: _scalar_value(f"{section}.{k}", v, fields[k]) for k, v in data.items()}


def load_train_config(path: str | Path) -> TrainJob:
    from trl import ModelConfig, SFTConfig

    path = Path(path)
    raw = load_yaml(path, "train config") or {}
    try:
        unknown = sorted(set(raw) - TOP_KEYS)
        if unknown:
            raise JcurateError(f"config key '{unknown[0]}': unknown (known: {', '.join(sorted(TOP_KEYS))})")
        method = raw.get("method", "lora")
        if method not in METHODS:
            raise JcurateError(f"config key 'method': one of {', '.join(METHODS)}, got {method!r}")
        model_d = dict(raw.get("model") or {})
        training_d = dict(raw.get("training") or {})
        _known("model", model_d, ModelConfig)
        _known("training", training_d, SFTConfig)
        model_d, training_d = _typed("model", model_d, ModelConfig), _typed("training", training_d, SFTConfig)
        if not model_d.get("model_name_or_path"):
            raise JcurateError("config key 'model.model_name_or_path': name the base model (hub id or folder)")
        model_d["use_peft"] = method in ("lora", "qlora")
        model_d["load_in_4bit"] = method == "qlora"
        training_d.setdefault("output_dir", f"runs/{path.stem}")
        training_d.setdefault("assistant_only_loss", True)
        training_d.setdefault("report_to", "none")
        training_d.setdefault("save_strategy", "no")
        training_d.setdefault("include_num_input_tokens_seen", True)
        import torch

        on_gpu = torch.cuda.is_available()
        training_d.setdefault("use_cpu", not on_gpu)
        training_d.setdefault("bf16", on_gpu and torch.cuda.is_bf16_supported())
        training_d.setdefault("gradient_checkpointing", False)
        data = from_dict(DataConfig, raw.get("data") or {}, "data")
        data.validate()
        prompt_tuning = from_dict(PromptTuningOptions, raw.get("prompt_tuning") or {}, "prompt_tuning")
        try:
            model = ModelConfig(**model_d)
        except (TypeError, ValueError) as e:
            raise JcurateError(f"config section 'model': {e}") from None
        try:
            training = SFTConfig(**training_d)
        except (TypeError, ValueError) as e:
            raise JcurateError(f"config section 'training': {e}") from None
    except JcurateError as e:
        raise JcurateError(f"{path}: {e}") from None
    return TrainJob(method=method, model=model, training=training, data=data, prompt_tuning=prompt_tuning,
                    build_tiny_model=bool(raw.get("build_tiny_model", False)), raw=raw)
