"""A judge-free metric: how likely the evaluated model finds the reference answers of an eval set.

For every item with a reference answer (ELYZA-tasks-100 shape: ``input`` and ``output``; MT-Bench
shape: the first turn and its reference), the mean negative log-likelihood per token of the
reference given the prompt, the chat template applied: the prompt is the template's rendering of
the user turn with the generation prompt, the reference's tokens follow it, and only they count
(the prompt's tokens are masked). Lower is better. The prompt and the reference are tokenized
apart and their ids joined, so no token straddles the boundary and the mask is exact. No
end-of-turn token is appended: templates end a turn differently (``<|im_end|>``,
``<end_of_turn>``), and only the reference's own tokens are what the metric is about.

Beside it, ``nll_no_end``: the same NLL with the end tokens' probability (end of sequence, end of turn)
renormalised away at every reference position, ``log p(token) - log(1 - p(end))``. Per-token NLL favours
models tuned on long answers partly because a model tuned on short answers puts mass on ending early;
this variant removes that one effect, so that a selection that "wins" only by not ending is seen.
"""

from __future__ import annotations

from dataclasses import dataclass

from eval.tasks import EvalItem


@dataclass(frozen=True)
class ReferenceNLL:
    item_id: str
    nll: float  # mean over the reference's tokens, in nats
    tokens: int  # reference tokens counted (after truncation to max_tokens)
    nll_no_end: float | None = None  # with the end tokens' probability renormalised away (module docstring)


END_TOKENS = ("<end_of_turn>", "<|im_end|>", "<|eot_id|>", "<|endoftext|>")


def end_token_ids(tokenizer) -> list[int]:
    """The ids that end an answer: the tokenizer's EOS and the chat templates' end-of-turn tokens it knows."""
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    vocab = tokenizer.get_vocab()
    ids.update(vocab[t] for t in END_TOKENS if t in vocab)
    return sorted(ids)


def reference_pairs(items: list[EvalItem]) -> list[tuple[str, str, str]]:
    """(item id, prompt, reference) of the items that have a reference answer."""
    return [(it.item_id, it.turns[0], it.reference[0]) for it in items if it.reference and it.reference[0].strip()]


def reference_nll(lm, tokenizer, pairs: list[tuple[str, str, str]], batch_size: int = 4, max_tokens: int = 1024,
                  device: str = "cpu") -> list[ReferenceNLL]:
    """Mean per-token NLL of each reference given its prompt under ``lm`` (a causal LM, eval mode)."""
    import torch

    encoded = []
    for item_id, prompt, reference in pairs:
        prompt_ids = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=True,
                                                   add_generation_prompt=True)
        if isinstance(prompt_ids, dict) or hasattr(prompt_ids, "input_ids"):  # a BatchEncoding
            prompt_ids = prompt_ids["input_ids"]
        prompt_ids = list(prompt_ids)
        ref_ids = tokenizer(reference, add_special_tokens=False)["input_ids"]
        room = max(1, max_tokens - len(ref_ids))
        prompt_ids = prompt_ids[-room:]  # a long prompt loses its start, never the reference
        ref_ids = ref_ids[: max_tokens - len(prompt_ids)]
        encoded.append((item_id, prompt_ids, ref_ids))
    pad = next((t for t in (tokenizer.pad_token_id, tokenizer.eos_token_id) if t is not None), 0)
    ends = end_token_ids(tokenizer)
    results = []
    for i in range(0, len(encoded), batch_size):
        batch = encoded[i:i + batch_size]
        width = max(len(p) + len(r) for _, p, r in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        labels = torch.full((len(batch), width), -100, dtype=torch.long)
        for row, (_, p, r) in enumerate(batch):  # right padding: positions stay those of an unpadded run
            seq = p + r
            ids[row, :len(seq)] = torch.tensor(seq)
            mask[row, :len(seq)] = 1
            labels[row, len(p):len(seq)] = torch.tensor(r)
        with torch.no_grad():
            per_token = _reference_logprobs(lm, ids.to(device), mask.to(device), labels.to(device), ends)
        for row, (item_id, _, r) in enumerate(batch):
            values, not_end = per_token[row]
            n = max(len(r), 1)
            results.append(ReferenceNLL(item_id, float(-values.sum() / n), len(r),
                                        float(-(values - not_end).sum() / n)))
    return results


def _reference_logprobs(lm, ids, mask, labels, ends: list[int]) -> list:
    """Log-probabilities of the labelled tokens and ``log(1 - p(end))`` at their positions, row by row
    (pairs of tensors). The output layer runs only on the
    positions that predict a reference token: with a 262k vocabulary (Gemma) the logits of every
    position would cost most of the time and gigabytes of memory."""
    import torch

    decoder, head = lm.get_decoder(), lm.get_output_embeddings()
    if decoder is None or head is None:  # not the usual decoder + head layout: the whole forward pass
        logits = lm(input_ids=ids, attention_mask=mask).logits.float()[:, :-1]
        target = labels[:, 1:]
        rows = []
        for row in range(ids.shape[0]):
            keep = target[row] != -100
            rows.append(_token_and_not_end(torch.log_softmax(logits[row][keep], dim=-1), target[row][keep], ends))
        return rows
    hidden = decoder(input_ids=ids, attention_mask=mask).last_hidden_state
    cap = getattr(getattr(lm, "config", None), "final_logit_softcapping", None)
    rows = []
    for row in range(ids.shape[0]):
        positions = (labels[row, 1:] != -100).nonzero()[:, 0]  # position t predicts token t + 1
        logits = head(hidden[row, positions]).float()
        if cap:
            logits = torch.tanh(logits / cap) * cap
        rows.append(_token_and_not_end(torch.log_softmax(logits, dim=-1), labels[row, positions + 1], ends))
    return rows


def _token_and_not_end(logprobs, targets, ends: list[int]):
    """(log p(target), log(1 - p(end))) per position, from one row of log-probabilities."""
    import torch

    token = logprobs.gather(-1, targets.unsqueeze(-1))[:, 0]
    if not ends:
        return token, torch.zeros_like(token)
    p_end = logprobs[:, ends].exp().sum(-1).clamp(max=1 - 1e-6)
    return token, torch.log1p(-p_end)
