"""Needle oracle: keeps the sample's needle tokens, then sinks and the newest (``benchmark/oracle.py``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from benchmark.oracle import NeedleOracleScorer, Span
from benchmark.sample import Sample
from locret.scorers import EntryScorer

from .base import NONE, ScorerMethod


@dataclass
class NeedleOracle(ScorerMethod):
    """Bound to one sample by the runner (``for_sample``): the scorer needs that sample's needle spans."""

    scorer: str = "streaming_llm"
    heads: str = NONE
    name: str = "needle_oracle"
    description: str = "oracle: the needle's tokens in every layer and KV head, 4 sinks, then the newest"
    needle_spans: tuple[Span, ...] = field(default=(), repr=False)

    def for_sample(self, sample: Sample) -> NeedleOracle:
        spans = sample.meta.get("needle_token_spans")
        if not spans:
            raise ValueError(
                f"needle_oracle needs the sample's needle token spans; task {sample.task!r} records none "
                "(natural tasks do: niah_text*, multidoc_qa)"
            )
        return dataclasses.replace(self, needle_spans=tuple((int(s), int(e)) for s, e in spans))

    def make_scorer(self) -> EntryScorer:
        return NeedleOracleScorer(spans=self.needle_spans, **self.scorer_params)

    def make_cache(self, model, config, track_positions=False):
        if not self.needle_spans:
            raise ValueError("needle_oracle is per sample: bind it with for_sample(sample) first")
        return super().make_cache(model, config, track_positions)
