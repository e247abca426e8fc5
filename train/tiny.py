"""A tiny causal LM built offline, for tests and the CPU smoke run: a byte-level BPE tokenizer
trained on our own Japanese sample text and a 2-layer Llama with random weights.
Nothing is downloaded; the numbers it produces mean nothing."""

from __future__ import annotations

import json
from pathlib import Path

from train.chat_template import CHATML

ROOT = Path(__file__).resolve().parents[1]

def sample_text(limit: int = 600) -> list[str]:
    lines = []
    for path in sorted((ROOT / "data/handwritten").glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines()[:80]:
            row = json.loads(line)
            lines += [row.get("instruction", ""), row.get("output", "")]
    return [x for x in lines if x][:limit]


def build_tiny_model(folder: Path, seed: int = 0, vocab_size: int = 800) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|pad|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(sample_text(), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|pad|>",
                                   bos_token="<|endoftext|>")
    fast.chat_template = CHATML
    fast.save_pretrained(folder)
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(fast), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                         tie_word_embeddings=True, bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id,
                         pad_token_id=fast.pad_token_id)
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder
