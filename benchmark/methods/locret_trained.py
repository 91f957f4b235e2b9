"""Locret: eviction by the trained retaining heads' scores (docs/design.md, section 4)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .base import TRAINED, HeadScoredMethod


@dataclass
class Locret(HeadScoredMethod):
    name: ClassVar[str] = "locret"
    description: ClassVar[str] = "Locret, trained retaining heads"
    heads: ClassVar[str] = TRAINED
