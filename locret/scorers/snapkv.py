"""Chunked SnapKV: entries are re-ranked after every chunk by the attention of the chunk's last queries
(the observation window), pooled over neighbouring positions."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .base import EntryScorer, attention_received


@dataclass
class SnapKVScorer(EntryScorer):
    window: int = 32
    kernel_size: int = 7

    def score_new(self, attention, features, query, key, positions) -> torch.Tensor:
        return key.new_zeros(key.shape[:3], dtype=torch.float32)

    def after_attention(self, layer, query, key, scaling) -> None:
        observed = query[:, :, -self.window :]
        votes = attention_received(observed, key, scaling)
        pooled = F.avg_pool1d(votes, self.kernel_size, stride=1, padding=self.kernel_size // 2)
        protected = torch.isinf(layer.scores)
        layer.scores = torch.where(protected, layer.scores, pooled)
