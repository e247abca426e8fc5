"""The chat template SFT falls back to when a tokenizer has none (and the tiny test model uses)."""

# ChatML, with the {% generation %} marks TRL needs for assistant-only loss
CHATML = (
    "{% for m in messages %}"
    "{% if m['role'] == 'assistant' %}<|im_start|>assistant\n{% generation %}{{ m['content'] }}<|im_end|>"
    "{% endgeneration %}\n"
    "{% else %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Gemma's turns (Gemma 2 / 3), with the {% generation %} marks; a system message is folded into the
# first user turn as Gemma's own template does. Used for the Gemma 3 270M GGUF, whose tokenizer has none.
GEMMA = (
    "{{ bos_token }}"
    "{% set ns = namespace(system='') %}"
    "{% for m in messages %}"
    "{% if m['role'] == 'system' %}{% set ns.system = m['content'] + '\n\n' %}"
    "{% elif m['role'] == 'assistant' %}<start_of_turn>model\n{% generation %}{{ m['content'] }}<end_of_turn>"
    "{% endgeneration %}\n"
    "{% else %}<start_of_turn>user\n{{ ns.system }}{{ m['content'] }}<end_of_turn>\n{% set ns.system = '' %}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)

TEMPLATES = {"chatml": CHATML, "gemma": GEMMA}
