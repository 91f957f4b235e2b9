"""Question focus: once the bounded cache has read the context and the question has arrived, keep only the
context entries the question attends to most, then read the question again over them.

Why: a question-agnostic score that keeps the fact a question needs also keeps other salient text, and a small
model reading a patchwork of salient sentences answers from the wrong one (sentence surprisal, SmolLM2, 8K
validation prompts: the needle kept in 7 of 10, answered in 1-3 of those 7, where the needle oracle's cache of
the needle and recent text is answered in 7 of 10). The context is still evicted before the question is seen:
focusing only drops more of what the bounded cache kept, the way SnapKV (Li et al., 2024) selects a prompt's
entries by the attention of its last tokens. Memory stays within the budget; the cost is one extra forward
over the question.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .cache import LocretCache
from .compat import CACHE_KWARG
from .scorers.base import EntryScorer, attention_received

KERNEL_SIZE = 7  # votes average-pooled over neighbouring entries (SnapKV's), so phrases are kept whole


class _QuestionVotes(EntryScorer):
    """Records, per layer, the attention each stored entry receives from the question's tokens."""

    def __init__(self) -> None:
        self.votes: dict[int, torch.Tensor] = {}

    def score_new(self, attention, head_input, query, key, positions) -> torch.Tensor:
        return key.new_zeros(key.shape[:3], dtype=torch.float32)  # scratch entries: never stored

    def after_attention(self, layer, query, key, scaling) -> None:
        self.votes[id(layer)] = attention_received(query, key, scaling)[
            ..., : key.shape[-2] - query.shape[-2]
        ]


@torch.no_grad()
def focus_on_question(model, cache: LocretCache, question_ids: torch.Tensor, keep: int) -> None:
    """Keep in every layer and KV head of ``cache`` (the context, read) its protected entries (the sinks) and
    the other entries that the ``question_ids`` ``[B, T]`` (the tokens that follow, not yet read) attend to
    most, ``keep`` in all, pooled over ``KERNEL_SIZE`` neighbours; the question is read in a throwaway pass
    (``LocretCache.scratch_tokens``), so the caller reads it again over the focused cache."""
    if keep < 1:
        raise ValueError(f"question_focus must be >= 1, got {keep}")
    if question_ids.shape[1] == 0:
        raise ValueError("question focus needs the question: the prompt's last n_local tokens (n_local >= 1)")
    if any(layer.head_pads is not None or layer.real_lengths is not None for layer in cache.layers):
        raise ValueError("question focus needs a uniform budget_allocation and an unpadded batch")
    scorer, recorder = cache.scorer, _QuestionVotes()
    cache.scorer = recorder
    try:
        with cache.scratch_tokens():
            model.model(input_ids=question_ids, use_cache=True, **{CACHE_KWARG: cache})
    finally:
        cache.scorer = scorer
    for layer in cache.layers:
        if layer.stored_length() <= keep:
            continue
        pooled = F.avg_pool1d(recorder.votes[id(layer)], KERNEL_SIZE, stride=1, padding=KERNEL_SIZE // 2)
        ranked = torch.where(layer.scores == math.inf, math.inf, pooled)
        layer.keep_entries(ranked.topk(keep, dim=-1).indices.sort(dim=-1).values)
