"""Full cache: the same chunked loop with a budget no prompt reaches, so nothing is evicted."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import ClassVar

from locret.cache import LocretCache
from locret.config import LocretConfig
from locret.prefill import new_cache
from locret.scorers import StreamingLLMScorer

from .base import Method, model_window


@dataclass
class FullCache(Method):
    name: ClassVar[str] = "full"
    description: ClassVar[str] = "full KV cache (chunked prefill, nothing evicted)"
    budget_independent: ClassVar[bool] = True

    def locret_config(self, budget, chunk_size, n_stabilizers, n_local, prompt_length) -> LocretConfig:
        # Every token stays: a budget above any prompt (the same for every question on a shared context).
        return LocretConfig(budget=sys.maxsize, chunk_size=chunk_size, n_stabilizers=0, n_local=n_local)

    def make_cache(self, model, config: LocretConfig, track_positions: bool = False) -> LocretCache:
        """Nothing is evicted, so no positions are recorded: every needle is held."""
        return new_cache(model, config, scorer=StreamingLLMScorer())  # cheapest; never consulted

    def fits(self, prompt_length: int, max_new_tokens: int, model) -> bool:
        """Plain positions: only prompts that fit the model's window (else "n/a (exceeds window)")."""
        return prompt_length + max_new_tokens <= model_window(model)
