"""Locret with random (untrained) retaining heads: the ablation showing that training matters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .base import RANDOM, HeadScoredMethod


@dataclass
class LocretRandomHeads(HeadScoredMethod):
    name: ClassVar[str] = "locret_random"
    description: ClassVar[str] = "Locret loop with random retaining heads (same width as --heads, seed 0)"
    heads: ClassVar[str] = RANDOM


@dataclass
class LocretRandomHeadsPooled(LocretRandomHeads):
    """The control for ``locret_pooled``: does pooling alone, without trained heads, keep a needle?"""

    name: ClassVar[str] = "locret_random_pooled"
    description: ClassVar[str] = "random retaining heads, scores max-pooled over 7 neighbouring tokens"
    score_pooling: int = 7
