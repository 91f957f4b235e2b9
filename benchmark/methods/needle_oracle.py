"""Needle oracle: keeps the sample's needle tokens, then sinks and the newest (``benchmark/oracle.py``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from benchmark.oracle import NeedleOracleScorer, Span
from benchmark.sample import Sample
from locret.scorers import EntryScorer

from .base import NONE, ScorerMethod


def recorded_spans(sample: Sample, key: str, method: str, recorded_by: str) -> tuple[Span, ...]:
    """The token spans ``sample.meta[key]`` a per-sample oracle binds to; an error naming the tasks that
    record them (``recorded_by``) where the sample has none."""
    spans = sample.meta.get(key)
    if not spans:
        what = key.replace("_", " ")
        raise ValueError(
            f"{method} needs the sample's {what}; task {sample.task!r} records none ({recorded_by})"
        )
    return tuple((int(start), int(end)) for start, end in spans)


@dataclass
class NeedleOracle(ScorerMethod):
    """Bound to one sample by the runner (``for_sample``): the scorer needs that sample's needle spans."""

    scorer: str = "streaming_llm"
    heads: str = NONE
    name: str = "needle_oracle"
    description: str = "oracle: the needle's tokens in every layer and KV head, 4 sinks, then the newest"
    needle_spans: tuple[Span, ...] = field(default=(), repr=False)

    def for_sample(self, sample: Sample) -> NeedleOracle:
        spans = recorded_spans(
            sample, "needle_token_spans", self.name, "natural tasks do: niah_text*, multidoc_qa"
        )
        return dataclasses.replace(self, needle_spans=spans)

    def make_scorer(self) -> EntryScorer:
        return NeedleOracleScorer(spans=self.needle_spans, **self.scorer_params)

    def make_cache(self, model, config, track_positions=False):
        if not self.needle_spans:
            raise ValueError("needle_oracle is per sample: bind it with for_sample(sample) first")
        return super().make_cache(model, config, track_positions)
