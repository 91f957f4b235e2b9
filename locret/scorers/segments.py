"""Segment means: every entry scores the mean of a per-token value over its segment (a sentence, a line), the
same in every layer and KV head, so that whole segments are kept or dropped together everywhere.

The shared machinery of ``SurprisalScorer`` (sentences, the model's surprisal) and ``LineScorer`` (lines, the
retaining heads): a subclass gives each chunk's per-token values (``token_values``) and which token ids end a
segment (``segment_end_tokens``); this class averages them per segment online, chunk by chunk, rescores the
segment a chunk continues, and hands the scores to every layer.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from typing import ClassVar

import torch

from .base import ChunkRescorer

N_SINKS = 4  # the input's first tokens, always kept (attention sinks)
# With a capped budget (``surprising_share``) the other entries score position - RECENCY_BASE: below every
# segment mean (>= 0), ordered by position, exact in float32 for inputs under 2**24 tokens.
RECENCY_BASE = 2.0**24


def token_text_flags(tokenizer, vocab_size: int, ends_segment: Callable[[str], bool]) -> torch.Tensor:
    """``[max(vocab_size, len(tokenizer))]`` bool: True for the ids whose decoded text ``ends_segment``
    accepts (ids past the tokenizer's, padding of the embedding matrix, never end one)."""
    texts = tokenizer.batch_decode([[index] for index in range(len(tokenizer))])
    flags = torch.zeros(max(vocab_size, len(texts)), dtype=torch.bool)
    flags[: len(texts)] = torch.tensor([ends_segment(text) for text in texts], dtype=torch.bool)
    return flags


# Segment ends of a model's own tokenizer by (``ends_kind``, model name, vocabulary size): building them decodes
# the whole vocabulary (49K entries for SmolLM2), which every cache of a recommended scorer would repeat.
OWN_TOKENIZER_ENDS: dict[tuple[str, str, int], torch.Tensor] = {}


class SegmentMeanScorer(ChunkRescorer):
    """Scores each prefill chunk after its forward: the mean of ``token_values`` over each segment (segments end
    at the ids ``segment_end_tokens`` marks, or after ``segment_limit`` tokens). A segment still open at a
    chunk's end is scored by its tokens so far and rescored when it closes; its stored tokens are the newest
    ones, which eviction keeps (``n_stabilizers >= segment_limit``). The input's first ``N_SINKS`` tokens
    score +inf. ``prior_tokens`` and ``surprising_share``: see ``SurprisalScorer``.

    Needs ``score_pooling=1`` (the segment is the pooling), ``budget_allocation="uniform"`` and no eviction
    while decoding (tokens the prefill did not read have no value)."""

    what: ClassVar[str] = "segment"  # the scorer's name in messages
    segment: ClassVar[str] = "segment"  # what one segment is, in messages
    limit_field: ClassVar[str] = "segment_limit"  # the subclass's field that sets ``segment_limit``
    prior_tokens: float = 0.0
    surprising_share: float | None = None
    # A segment's score: the mean of its ``top_tokens`` highest values (None: of all of them).
    top_tokens: int | None = None
    _ends: torch.Tensor | None = None  # segment_end_tokens on the model's device, built once per scorer

    @property
    def segment_limit(self) -> int:
        raise NotImplementedError

    def segment_end_tokens(self, tokenizer, vocab_size: int) -> torch.Tensor:
        """``[vocab_size]`` bool: the ids that end a segment."""
        raise NotImplementedError

    def token_values(
        self, model, cache, input_ids: torch.Tensor, start: int, end: int, hidden_states: torch.Tensor
    ) -> torch.Tensor:
        """The chunk ``input_ids[:, start:end]``'s per-token values ``[B, end - start]`` (float32)."""
        raise NotImplementedError

    @property
    def ends_kind(self) -> str:
        """Which token ids end a segment, as a key of ``OWN_TOKENIZER_ENDS`` (settings that change
        ``segment_end_tokens`` must change it too)."""
        return type(self).__name__

    @property
    def needs_positions(self) -> bool:
        return self.surprising_share is not None

    def check_segment_settings(self) -> None:
        """Refuse bad shared settings when the scorer is built (subclasses call it from ``__post_init__``)."""
        if self.segment_limit < 1:
            raise ValueError(f"{self.limit_field} must be >= 1, got {self.segment_limit}")
        if self.top_tokens is not None and not (isinstance(self.top_tokens, int) and self.top_tokens >= 1):
            raise ValueError(f"top_tokens must be None or an integer >= 1, got {self.top_tokens!r}")
        if self.prior_tokens < 0:
            raise ValueError(f"prior_tokens must be >= 0, got {self.prior_tokens}")
        if self.surprising_share is not None and not 0 < self.surprising_share < 1:
            raise ValueError(f"surprising_share must be None or in (0, 1), got {self.surprising_share}")

    def check_config(self, config) -> None:
        """Refuse the settings this scorer cannot serve (see the class docstring)."""
        if config.decode_budget is not None:
            raise ValueError(f"the {self.what} scorer cannot evict while decoding: use decode_budget=None")
        if config.score_pooling != 1:
            raise ValueError(f"the {self.what} scorer pools by {self.segment}: use score_pooling=1")
        if config.budget_allocation != "uniform":
            raise ValueError(
                f"the {self.what} scorer scores every KV head alike: use budget_allocation='uniform'"
            )
        if config.n_stabilizers < self.segment_limit:
            raise ValueError(
                f"n_stabilizers ({config.n_stabilizers}) must be >= {self.limit_field} ({self.segment_limit}), so that "
                f"a {self.segment} still open at a chunk's end is stored until it is rescored"
            )
        room = config.budget - N_SINKS - config.n_stabilizers  # the stabilizers take the newest slots anyway
        surprising = self.surprising_budget(config.budget)
        if surprising is not None and not 1 <= surprising <= room:
            raise ValueError(
                f"surprising_share ({self.surprising_share}) keeps {surprising} of the budget's {config.budget} "
                f"entries; it must keep 1 to {room}, what the {N_SINKS} sinks and the {config.n_stabilizers} "
                "stabilizers leave"
            )

    def surprising_budget(self, budget: int) -> int | None:
        """Entries kept for their score at ``budget``: ``int(surprising_share * budget)``; None: all."""
        return None if self.surprising_share is None else int(self.surprising_share * budget)

    def segment_ends(self, model, device: torch.device) -> torch.Tensor:
        """``segment_end_tokens`` of the model's tokenizer on ``device``, built once (not per chunk); for the
        model's own tokenizer once per process (``OWN_TOKENIZER_ENDS``)."""
        if self._ends is None and self.tokenizer is not None:
            self._ends = self.segment_end_tokens(self.tokenizer, model.config.vocab_size)
        elif self._ends is None:
            key = (self.ends_kind, str(model.config.name_or_path), model.config.vocab_size)
            if key not in OWN_TOKENIZER_ENDS:
                OWN_TOKENIZER_ENDS[key] = self.segment_end_tokens(self.text_tokenizer(model), key[2])
            self._ends = OWN_TOKENIZER_ENDS[key]
        if self._ends.device != device:
            self._ends = self._ends.to(device)
        return self._ends

    @torch.no_grad()
    def rescore_chunk(
        self, model, cache, input_ids: torch.Tensor, start: int, end: int, hidden_states: torch.Tensor
    ) -> None:
        """Score the chunk ``input_ids[:, start:end]`` just appended to ``cache`` (its final ``hidden_states``
        ``[B, end - start, hidden]``) and rescore the segment it continues."""
        state = cache.scorer_state
        values = self.token_values(model, cache, input_ids, start, end, hidden_states)
        ends = self.segment_ends(model, input_ids.device)[input_ids[:, start:end]]
        rows = [self._score_row(state, row, values[row], ends[row]) for row in range(input_ids.shape[0])]
        scores, continued = torch.stack([scores for scores, _ in rows]), [tail for _, tail in rows]
        if start < N_SINKS:
            scores[:, : N_SINKS - start] = math.inf
        stored = cache.layers[0].scores[:, 0].clone()  # [B, S]: the same in every layer and KV head
        for row, (count, mean) in enumerate(continued):
            if count:  # the newest stored entries: tokens start - count .. start - 1 (sinks stay +inf)
                tail = stored[row, stored.shape[-1] - count :]
                tail.masked_fill_(tail.isfinite(), mean)
        self.adjust_scores(cache, stored, scores)
        if self.surprising_share is not None:
            still_open = [len(state["open"][row]) for row in range(input_ids.shape[0])]
            capped = self._cap_surprising(
                torch.cat([stored, scores], -1),
                cache.layers[0].positions[:, 0],
                still_open,
                self.surprising_budget(cache.config.budget),
            )
            stored, scores = capped.split([stored.shape[-1], scores.shape[-1]], dim=-1)
        for layer in cache.layers:
            layer.scores.copy_(stored[:, None].expand_as(layer.scores))
            layer.supply_pending_scores(scores[:, None].expand(-1, layer.keys.shape[1], -1))

    def adjust_scores(self, cache, stored: torch.Tensor, scores: torch.Tensor) -> None:
        """A subclass's last change, in place, to the stored entries' scores ``[B, S]`` and the chunk's
        ``[B, T]`` before eviction ranks them; here none."""

    def _cap_surprising(
        self, scores: torch.Tensor, positions: torch.Tensor, still_open: list[int], surprising: int
    ) -> torch.Tensor:
        """``scores`` ``[B, S]`` of every stored entry (the chunk's last; sentence means, sinks +inf) with only
        the ``surprising`` most surprising entries so far keeping their surprisal; the others score
        ``position - RECENCY_BASE`` (``positions`` ``[B, S]``), so eviction keeps the newest of them.

        A sentence competes once it is closed (an open one, each row's last ``still_open`` entries, has a
        provisional mean; the stabilizers keep it until it closes) and then with its final mean, so an entry
        loses its place only to a more surprising one and never regains it: the entries still scored by
        surprisal (finite, >= 0) and the chunk's closed sentences are all the candidates there are. The
        result: the input's top ``surprising`` closed sentences' entries, ties aside."""
        if positions.shape != scores.shape:
            raise RuntimeError("surprising_share needs the cache to track positions (new_cache does)")
        if positions[:, -1].max() >= RECENCY_BASE:
            raise ValueError(f"surprising_share supports inputs under {int(RECENCY_BASE)} tokens")
        candidate = scores.isfinite() & (scores >= 0)
        for row, count in enumerate(still_open):
            if count:
                candidate[row, scores.shape[-1] - count :] = False
        ranked = scores.masked_fill(~candidate, -math.inf)
        top = ranked.topk(min(surprising, ranked.shape[-1]), dim=-1).indices
        winners = torch.zeros_like(candidate).scatter_(-1, top, True) & candidate
        keep = winners | (scores == math.inf)
        return torch.where(keep, scores, positions.to(scores.dtype) - RECENCY_BASE)

    def segment_score(self, values: list[float], input_mean: float) -> float:
        """A segment's score from its tokens' ``values``: the mean of the ``top_tokens`` highest (all when
        None), shrunk toward ``input_mean`` (the input's mean value so far) by ``prior_tokens`` pseudo-tokens."""
        if self.top_tokens is not None and len(values) > self.top_tokens:
            values = heapq.nlargest(self.top_tokens, values)
        return (sum(values) + self.prior_tokens * input_mean) / (len(values) + self.prior_tokens)

    def _score_row(
        self, state: dict, row: int, values: torch.Tensor, ends: torch.Tensor
    ) -> tuple[torch.Tensor, tuple[int, float]]:
        """One row's segment scores ``[T]`` and, for the segment left open by the previous chunk, how many
        of its tokens are stored and their final (or provisional) score. Per row: segment ends differ."""
        segment = list(state.get("open", {}).get(row, []))  # the open segment's values so far
        input_sum, input_count = state.get("input", {}).get(row, (0.0, 0))
        stored_open = len(segment)
        scores = torch.empty_like(values)
        values, closes = values.tolist(), ends.tolist()
        first = 0
        continued = (0, 0.0)
        for index, (value, closing) in enumerate(zip(values, closes, strict=True)):
            segment.append(value)
            input_sum += value
            input_count += 1
            full = len(segment) >= self.segment_limit
            if closing or full or index == len(values) - 1:
                score = self.segment_score(segment, input_sum / input_count)
                scores[first : index + 1] = score
                if stored_open:
                    continued, stored_open = (stored_open, score), 0
                if closing or full:
                    first, segment = index + 1, []
        state.setdefault("open", {})[row] = segment
        state.setdefault("input", {})[row] = (input_sum, input_count)
        return scores, continued
