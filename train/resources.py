"""Memory estimate before training, and the peaks measured during it.

The estimate counts: weights (bytes per parameter of the load dtype; 0.5 for 4-bit), the
gradients and Adam moments of the trainable parameters (fp32: 4 + 8 bytes), the logits
(batch x sequence x vocabulary, plus their fp32 copy for the loss), and activations at
about 34 x batch x sequence x hidden bytes per layer in 16-bit (Korthikanti et al. 2022,
without recomputation), divided by the number of layers with gradient checkpointing. A rough
guide, meant to say whether a run fits, not to the megabyte.
"""

from __future__ import annotations

import resource
from dataclasses import asdict, dataclass


@dataclass
class MemoryEstimate:
    params: int
    trainable: int
    weights_gb: float
    optimizer_gb: float
    activations_gb: float
    logits_gb: float = 0.0

    @property
    def total_gb(self) -> float:
        return round(self.weights_gb + self.optimizer_gb + self.activations_gb + self.logits_gb, 3)

    def to_dict(self) -> dict:
        return {**asdict(self), "total_gb": self.total_gb}

    def table(self) -> str:
        return (f"memory estimate: weights {self.weights_gb:.3f} GB ({self.params / 1e6:.1f}M params), "
                f"optimizer+grads {self.optimizer_gb:.3f} GB ({self.trainable / 1e6:.2f}M trainable), "
                f"activations {self.activations_gb:.3f} GB, logits {self.logits_gb:.3f} GB, "
                f"total ~{self.total_gb:.3f} GB")


def estimate(params: int, trainable: int, bytes_per_param: float, batch: int, seq_len: int, hidden: int,
             layers: int, gradient_checkpointing: bool, act_bytes: int = 2, vocab: int = 0) -> MemoryEstimate:
    gb = 1024 ** 3
    activations = 34 * batch * seq_len * hidden * layers * act_bytes / 2
    if gradient_checkpointing:
        activations /= max(layers, 1)
    logits = batch * seq_len * vocab * (act_bytes + 4)  # the logits, and their fp32 copy for the loss
    return MemoryEstimate(params=params, trainable=trainable, weights_gb=round(params * bytes_per_param / gb, 3),
                          optimizer_gb=round(trainable * 12 / gb, 3), activations_gb=round(activations / gb, 3),
                          logits_gb=round(logits / gb, 3))


def peak_ram_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_vram_mb() -> float | None:
    import torch

    return torch.cuda.max_memory_allocated() / 1024 ** 2 if torch.cuda.is_available() else None
