"""The needle oracle: a scorer that knows where the answer is, to tell a budget limit from a scorer limit.

It keeps every token of the sample's needle spans (in every layer and KV head) and otherwise does what
StreamingLLM does (4 attention sinks, then the newest entries). If the oracle answers where a method at
the same budget does not, the budget was enough and that method's scorer dropped the needle; if the
oracle fails too, the budget (or the model) is the limit. The spans come from the task
(``needle_char_spans``) and are mapped to token positions by ``token_spans`` once the prompt is tokenized.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from locret.scorers.streaming import StreamingLLMScorer

Span = tuple[int, int]  # [start, end) positions


@dataclass
class NeedleOracleScorer(StreamingLLMScorer):
    """StreamingLLM's scores, with +inf for tokens whose absolute position lies in a needle span."""

    spans: tuple[Span, ...] = ()

    def score_new(self, attention, head_input, query, key, positions) -> torch.Tensor:
        scores = super().score_new(attention, head_input, query, key, positions)
        in_needle = torch.zeros_like(positions, dtype=torch.bool)
        for start, end in self.spans:
            in_needle |= (positions >= start) & (positions < end)
        return torch.where(in_needle, torch.full_like(scores, float("inf")), scores)


def token_spans(
    tokenizer, text: str, ids: Sequence[int], char_spans: Sequence[Span], add_special_tokens: bool
) -> list[Span]:
    """The token positions covering each ``[start, end)`` character span of ``text``, tokenized as ``ids``.

    A fast tokenizer's offsets give the exact tokens that overlap the span (a token merging the space before
    a needle counts as the needle's); other tokenizers count the tokens of the text up to each end.
    """
    if getattr(tokenizer, "is_fast", False):
        encoded = tokenizer(text, add_special_tokens=add_special_tokens, return_offsets_mapping=True)
        if list(encoded["input_ids"]) != list(ids):
            raise ValueError("the text does not tokenize to the given ids: cannot map character spans")
        # the tokens with text, in order (their offsets rise); a span's tokens are those overlapping it
        tokens = [(i, s, e) for i, (s, e) in enumerate(encoded["offset_mapping"]) if e > s]
        token_starts, token_ends = [s for _, s, _ in tokens], [e for _, _, e in tokens]
        spans = []
        for start, end in char_spans:
            first, last = bisect_right(token_ends, start), bisect_left(token_starts, end) - 1
            if first > last:
                raise ValueError(f"no token covers characters {start}..{end}")
            spans.append((tokens[first][0], tokens[last][0] + 1))
        return spans
    return [
        (
            len(tokenizer.encode(text[:start], add_special_tokens=add_special_tokens)),
            len(tokenizer.encode(text[:end], add_special_tokens=add_special_tokens)),
        )
        for start, end in char_spans
    ]


def most_likely_passages(costs: Sequence[int], weights: Sequence[float], room: int) -> list[int]:
    """The passages (indices) of largest total ``weights`` whose ``costs`` fit in ``room``: exact when the
    weights differ only at the two ends, as ``multidoc_qa``'s gold-position prior does (each choice of the
    ends, then inner passages cheapest first)."""
    if len(costs) != len(weights):
        raise ValueError(f"{len(costs)} costs but {len(weights)} weights")
    inner_weights = set(weights[1:-1])
    if len(inner_weights) > 1:
        raise ValueError("exact only for weights that differ at the two ends alone")
    inner = sorted(range(1, len(costs) - 1), key=lambda i: costs[i])
    ends = sorted({0, len(costs) - 1}) if costs else []
    best: tuple[float, list[int]] = (-1.0, [])
    for mask in range(1 << len(ends)):
        chosen = [ends[j] for j in range(len(ends)) if mask >> j & 1]
        left = room - sum(costs[i] for i in chosen)
        if left < 0:
            continue
        for i in inner:
            if costs[i] > left:
                break
            left -= costs[i]
            chosen.append(i)
        total = sum(weights[i] for i in chosen)
        if total > best[0]:
            best = (total, sorted(chosen))
    return best[1]
