"""Locret: the retaining head's prediction of each entry's causal importance, fixed once computed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from .base import EntryScorer


@dataclass
class RetainingHeadScorer(EntryScorer):
    """Locret: the retaining heads' predicted causal importance.

    The heads' raw scores; ``LocretConfig.score_pooling`` is applied by the cache (across chunks)."""

    uses_retaining_heads: ClassVar[bool] = True

    def score_new(self, attention, head_input, query, key, positions) -> torch.Tensor:
        return attention.retaining_scores(head_input).transpose(1, 2)
