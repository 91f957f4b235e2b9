"""Locret with each new entry's head score max-pooled over its neighbours (``LocretConfig.score_pooling``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .locret_trained import Locret


@dataclass
class LocretPooled(Locret):
    name: ClassVar[str] = "locret_pooled"
    description: ClassVar[str] = "Locret, trained heads, scores max-pooled over 7 neighbouring tokens"
    score_pooling: int = 7
