"""StreamingLLM: keep the first ``n_sink`` tokens (attention sinks) and the most recent ones."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import EntryScorer


@dataclass
class StreamingLLMScorer(EntryScorer):
    """StreamingLLM: ``n_sink`` attention sinks plus the most recent entries."""

    n_sink: int = 4

    def __post_init__(self) -> None:
        if not isinstance(self.n_sink, int) or self.n_sink < 0:
            raise ValueError(f"StreamingLLM n_sink must be an integer >= 0, got {self.n_sink!r}")

    def score_new(self, attention, head_input, query, key, positions) -> torch.Tensor:
        recency = positions.to(torch.float32)
        scores = torch.where(positions < self.n_sink, torch.full_like(recency, float("inf")), recency)
        return scores.expand(key.shape[0], key.shape[1], -1)
