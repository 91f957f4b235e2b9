"""Chunked SnapKV: entries are re-ranked after every chunk by the attention of the chunk's last queries
(the observation window), pooled over neighbouring positions."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .base import EntryScorer, attention_received


@dataclass
class SnapKVScorer(EntryScorer):
    """Chunked SnapKV: votes of each chunk's last ``window`` queries, average-pooled over ``kernel_size``."""

    window: int = 32
    kernel_size: int = 7

    def __post_init__(self) -> None:
        if not isinstance(self.window, int) or self.window < 1:
            raise ValueError(f"SnapKV window must be an integer >= 1, got {self.window!r}")
        if not isinstance(self.kernel_size, int) or self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f"SnapKV kernel_size must be an odd integer >= 1, got {self.kernel_size!r}")

    def score_new(self, attention, head_input, query, key, positions) -> torch.Tensor:
        return key.new_zeros(key.shape[:3], dtype=torch.float32)

    def after_attention(self, layer, query, key, scaling) -> None:
        observed = query[:, :, -self.window :]
        votes = attention_received(observed, key, scaling)
        pooled = F.avg_pool1d(votes, self.kernel_size, stride=1, padding=self.kernel_size // 2)
        protected = torch.isinf(layer.scores)
        layer.scores = torch.where(protected, layer.scores, pooled)
