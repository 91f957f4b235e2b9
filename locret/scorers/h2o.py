"""Chunked H2O: an entry's score is the attention it has accumulated from every later query so far."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import EntryScorer, attention_received


@dataclass
class H2OScorer(EntryScorer):
    """Chunked H2O: attention accumulated from every later query."""

    def score_new(self, attention, head_input, query, key, positions) -> torch.Tensor:
        return key.new_zeros(key.shape[:3], dtype=torch.float32)

    def after_attention(self, layer, query, key, scaling) -> None:
        received = attention_received(query, key, scaling)
        layer.scores = layer.scores + received
