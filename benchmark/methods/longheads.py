"""LongHeads: per-head chunk selection at query time (docs/design.md, section 7); keeps ALL KV, saves no memory.

The benchmark budget is used as LongHeads' attention span L (tokens each query attends to per head),
capped to the model's window; the chunk length is 256, or ``budget // 4`` for budgets below 1024 so that
at least four chunks fit the span. Nothing is evicted and the question is seen when chunks are chosen, so
LongHeads is *not* budget-comparable in memory: its cache is the whole prompt (reported as such).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from benchmark import longheads
from locret.config import LocretConfig
from locret.generation import LocretOutput

from .base import Method, model_window


@dataclass
class LongHeads(Method):
    name: ClassVar[str] = "longheads"
    description: ClassVar[str] = "LongHeads: per-head top-k chunk attention, full KV kept (span = budget)"
    window_size: int = 256

    def longheads_config(self, budget: int, model) -> longheads.LongHeadsConfig:
        span = min(budget, model_window(model))
        window = min(self.window_size, max(1, span // 4))
        return longheads.LongHeadsConfig(window_size=window, span=span // window * window)

    def make_cache(self, model, config: LocretConfig, track_positions: bool = False):
        raise TypeError("LongHeads keeps its own state (benchmark.longheads), not a LocretCache")

    def prefill_context(
        self, model, input_ids: torch.Tensor, config: LocretConfig, track_positions=False
    ) -> None:
        """Not shared: LongHeads picks its chunks with the question (every prompt runs whole)."""
        return None

    def generate(
        self,
        model,
        input_ids: torch.Tensor,
        config: LocretConfig,
        max_new_tokens: int,
        eos_token_id=None,
        context_cache=None,
        track_positions: bool = False,
    ) -> LocretOutput:
        """LongHeads' own loop; it keeps no LocretCache, so nothing records positions."""
        return longheads.generate(
            model,
            input_ids,
            self.longheads_config(config.budget, model),
            max_new_tokens,
            chunk_size=config.chunk_size,
            eos_token_id=eos_token_id,
        )
