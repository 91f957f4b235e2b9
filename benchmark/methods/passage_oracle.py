"""Passage oracle: the best a cache that never sees the question can do on ``multidoc_qa``.

Every passage of a ``multidoc_qa`` prompt is some question's gold passage and the gold position is drawn blind
to the text, so a scorer that reads only the context cannot tell the gold passage from a distractor: the
chance that it holds the gold passage whole is the prior weight of the positions it holds whole. This oracle
keeps the passages of largest prior weight that fit the budget (in every layer and KV head; the shortest ones,
as the weights are equal but at the ends), the sinks and the newest entries: its accuracy is what a
question-agnostic cache at that bound answers. It knows the passage boundaries and the task's gold-position
prior, which no product scorer does (``benchmark/results/multidoc_question_agnostic_bound/``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from benchmark.natural.multidoc import gold_position_weights
from benchmark.oracle import Span, most_likely_passages
from benchmark.sample import Sample
from locret.config import LocretConfig
from locret.scorers.segments import N_SINKS

from .base import ScorerMethod
from .needle_oracle import NeedleOracle, recorded_spans


def passages_to_keep(documents: tuple[Span, ...], budget: int, n_stabilizers: int) -> tuple[Span, ...]:
    """The document spans of largest prior weight that fit in ``budget`` besides the sinks and the newest
    ``n_stabilizers`` context tokens (kept anyway: a passage among them costs only its older part). The
    context ends with its last document, as ``multidoc_qa``'s does."""
    window = documents[-1][1] - n_stabilizers  # the oldest context token the stabilizers keep
    costs = [max(min(end, window) - start, 0) for start, end in documents]
    chosen = most_likely_passages(
        costs, gold_position_weights(len(documents)), budget - N_SINKS - n_stabilizers
    )
    return tuple(documents[i] for i in chosen)


@dataclass
class PassageOracle(NeedleOracle):
    """Bound to one sample by the runner (``for_sample``): the scorer needs that sample's document spans."""

    name: str = "passage_oracle"
    description: str = (
        "oracle without the question: the whole passages most likely to be the gold one (multidoc_qa's prior), "
        "4 sinks, then the newest"
    )
    document_spans: tuple[Span, ...] = field(default=(), repr=False)

    def for_sample(self, sample: Sample) -> PassageOracle:
        spans = recorded_spans(sample, "document_token_spans", self.name, "multidoc_qa does")
        return dataclasses.replace(self, document_spans=spans)

    def make_cache(self, model, config: LocretConfig, track_positions=False):
        if not self.document_spans:
            raise ValueError("passage_oracle is per sample: bind it with for_sample(sample) first")
        kept = passages_to_keep(self.document_spans, config.budget, config.n_stabilizers)
        bound = dataclasses.replace(self, needle_spans=kept)
        return ScorerMethod.make_cache(bound, model, config, track_positions)
