"""Locret: eviction by the trained retaining heads' scores (SPEC section 4)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from locret.cache import LocretCache
from locret.config import LocretConfig
from locret.generation import new_cache

from .base import TRAINED, ScorerMethod


@dataclass
class Locret(ScorerMethod):
    name: ClassVar[str] = "locret"
    description: ClassVar[str] = "Locret, trained retaining heads"
    scorer: ClassVar[str] = "locret"
    heads: ClassVar[str] = TRAINED

    def make_cache(self, model, config: LocretConfig) -> LocretCache:
        return new_cache(model, config)  # the retaining heads, pooled as config.score_pooling says
