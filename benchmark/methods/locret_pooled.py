"""Locret with each new entry's head score max-pooled over its neighbours (``LocretConfig.score_pooling``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

from locret.config import LocretConfig

from .locret_trained import Locret


@dataclass
class LocretPooled(Locret):
    name: ClassVar[str] = "locret_pooled"
    description: ClassVar[str] = "Locret, trained heads, scores max-pooled over neighbouring tokens"
    score_pooling: int = 7

    def locret_config(self, *args, **kwargs) -> LocretConfig:
        return dataclasses.replace(super().locret_config(*args, **kwargs), score_pooling=self.score_pooling)
