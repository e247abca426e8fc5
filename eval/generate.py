"""Answers from a base model plus an optional adapter: vLLM when it is installed and a GPU is
there, else transformers (batched, greedy by default; temperature, top_p, min_p and repetition_penalty
in the config)."""

from __future__ import annotations

from dataclasses import dataclass

from core.errors import JcurateError


@dataclass
class GenerationConfig:
    max_new_tokens: int = 256
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    min_p: float | None = None
    repetition_penalty: float = 1.0  # > 1 discourages tokens already in the prompt or the answer (CTRL's penalty)
    batch_size: int = 8
    seed: int = 0


def load_causal_lm(model: str, adapter: str | None = None, device: str | None = None,
                   chat_template: str | None = None):
    """(model in eval mode, tokenizer, device): a base model (hub id or folder) with an optional
    PEFT adapter, whose folder's tokenizer (and chat template) wins when it has one."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    tokenizer = AutoTokenizer.from_pretrained(adapter or model)
    if chat_template:
        tokenizer.chat_template = chat_template
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    lm = AutoModelForCausalLM.from_pretrained(model, dtype="auto")
    if adapter:
        from peft import PeftModel

        lm = PeftModel.from_pretrained(lm, adapter)
    return lm.to(device).eval(), tokenizer, device


class TransformersGenerator:
    def __init__(self, model: str, adapter: str | None = None, device: str | None = None,
                 chat_template: str | None = None):
        import torch

        self.torch = torch
        self.lm, self.tokenizer, self.device = load_causal_lm(model, adapter, device, chat_template)
        self.tokenizer.padding_side = "left"

    def generate(self, conversations: list[list[dict]], cfg: GenerationConfig) -> list[str]:
        torch = self.torch
        torch.manual_seed(cfg.seed)
        self.generated_tokens = 0  # for throughput figures
        out = []
        for i in range(0, len(conversations), cfg.batch_size):
            texts = [self.tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True)
                     for c in conversations[i:i + cfg.batch_size]]
            enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
            kwargs = {"max_new_tokens": cfg.max_new_tokens, "do_sample": cfg.do_sample,
                      "pad_token_id": self.tokenizer.pad_token_id}
            if cfg.repetition_penalty != 1.0:
                kwargs["repetition_penalty"] = cfg.repetition_penalty
            if cfg.do_sample:
                kwargs.update(temperature=cfg.temperature, top_p=cfg.top_p)
                if cfg.min_p is not None:
                    kwargs["min_p"] = cfg.min_p
            with torch.no_grad():
                ids = self.lm.generate(**enc, **kwargs)
            new = ids[:, enc["input_ids"].shape[1]:]
            self.generated_tokens += int((new != self.tokenizer.pad_token_id).sum())
            out += [t.strip() for t in self.tokenizer.batch_decode(new, skip_special_tokens=True)]
        return out


class VLLMGenerator:  # pragma: no cover - GPU only
    def __init__(self, model: str, adapter: str | None = None, **kwargs):
        from vllm import LLM

        self.llm = LLM(model=model, enable_lora=adapter is not None, **kwargs)
        self.adapter = adapter

    def generate(self, conversations: list[list[dict]], cfg: GenerationConfig) -> list[str]:
        from vllm import SamplingParams
        from vllm.lora.request import LoRARequest

        params = SamplingParams(max_tokens=cfg.max_new_tokens, temperature=cfg.temperature if cfg.do_sample else 0.0,
                                top_p=cfg.top_p, min_p=cfg.min_p or 0.0, seed=cfg.seed,
                                repetition_penalty=cfg.repetition_penalty)
        lora = LoRARequest("adapter", 1, self.adapter) if self.adapter else None
        results = self.llm.chat(conversations, params, lora_request=lora, use_tqdm=False)
        return [r.outputs[0].text.strip() for r in results]


def make_generator(model: str, adapter: str | None, backend: str = "auto", chat_template: str | None = None):
    if backend in ("auto", "vllm"):
        try:
            import torch
            import vllm  # noqa: F401

            if torch.cuda.is_available():
                return VLLMGenerator(model, adapter)
        except ImportError:
            if backend == "vllm":
                raise JcurateError("generation backend vllm needs the 'vllm' extra and a GPU") from None
    return TransformersGenerator(model, adapter, chat_template=chat_template)
