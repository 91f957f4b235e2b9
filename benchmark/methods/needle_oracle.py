"""Needle oracle: keeps the sample's needle tokens, then sinks and the newest (``benchmark/oracle.py``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import ClassVar

from benchmark.oracle import NeedleOracleScorer, Span
from benchmark.sample import Sample
from locret.cache import LocretCache
from locret.config import LocretConfig
from locret.generation import new_cache

from .base import ScorerMethod


@dataclass
class NeedleOracle(ScorerMethod):
    """Bound to one sample by the runner (``for_sample``): the scorer needs that sample's needle spans."""

    name: ClassVar[str] = "needle_oracle"
    description: ClassVar[str] = (
        "oracle: the needle's tokens in every layer and KV head, 4 sinks, then the newest"
    )
    scorer: ClassVar[str] = "streaming_llm"
    needle_spans: tuple[Span, ...] = field(default=(), repr=False)

    def params(self) -> dict:
        params = super().params()
        del params["needle_spans"]  # per sample: recorded with each prediction, not the case
        return params

    def for_sample(self, sample: Sample) -> NeedleOracle:
        spans = sample.meta.get("needle_token_spans")
        if not spans:
            raise ValueError(
                f"needle_oracle needs the sample's needle token spans; task {sample.task!r} records none "
                "(natural tasks do: niah_text*, multidoc_qa)"
            )
        return dataclasses.replace(self, needle_spans=tuple((int(s), int(e)) for s, e in spans))

    def make_cache(self, model, config: LocretConfig) -> LocretCache:
        if not self.needle_spans:
            raise ValueError("needle_oracle is per sample: bind it with for_sample(sample) first")
        return new_cache(model, config, scorer=NeedleOracleScorer(spans=self.needle_spans))
