"""Locret: the retaining head's prediction of each entry's causal importance, fixed once computed."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .base import EntryScorer


@dataclass
class RetainingHeadScorer(EntryScorer):
    """``pool_kernel > 1`` max-pools the chunk's scores over that many neighbours (``score_pooling``)."""

    pool_kernel: int = 1

    def score_new(self, attention, features, query, key, positions) -> torch.Tensor:
        scores = attention.retaining_head(features).transpose(1, 2)
        if self.pool_kernel == 1:
            return scores
        batch, heads, length = scores.shape
        pooled = F.max_pool1d(
            scores.reshape(batch * heads, 1, length),
            self.pool_kernel,
            stride=1,
            padding=self.pool_kernel // 2,
        )
        return pooled.view(batch, heads, length)
