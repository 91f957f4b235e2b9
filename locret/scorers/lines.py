"""Lines: the retaining heads' scores (and the model's surprisal) averaged over whole lines of text, the same in
every layer and KV head.

Why: the heads' own picks are short pieces of text scattered over the input, one set per layer and head, and
on documents those pieces break SmolLM2's reading (``benchmark/results/natural_val_smollm2/recency_share/``).
Kept as whole lines (a ``multidoc_qa`` document, a line of a book), the heads' choice found 18 and 17 of 25
prose needles at 4K on two validation draws, against the shipped heads' 4 and 5 and the full cache's 13 and
17, but 6 of 25 at 8K, as the heads (the needle oracle 16), and answered 22 of 300 ``multidoc_qa`` questions
(StreamingLLM 30, the full cache 32; ``benchmark/results/natural_val_smollm2/window_line/``). With each
token's surprisal added (the default since), 19 and 18 needles at 4K, 10 at 8K and 8 at 16K (there the heads
alone 6 and 6, sentence surprisal 7 and 7) and 20 of the 300 questions
(``benchmark/results/natural_val_smollm2/line_surprisal/``). Scored by the mean of each line's 8 highest token
values instead of all (``top_tokens=8``, the default since), 20 and 18 at 4K, 13 at 8K and 14 at 16K (the needle
oracle 16 and 12) and 18 of the 300 questions (``benchmark/results/natural_val_smollm2/line_rules/``). The
shipped SmolLM2 heads recommend it, with ``max_line=32`` since 0.5.0
(``benchmark/results/natural_val_smollm2/paragraphs/``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from .segments import N_SINKS, SegmentMeanScorer, token_text_flags
from .surprisal import SOFTMAX_TOKENS, chunk_surprisal, sentence_end_tokens

STD_FLOOR = 1e-6  # a head whose scores never varied yet is not divided by zero
# The line the protected window starts in scores this until the next chunk, so that it is kept whole: finite,
# above every line mean, below the sinks' +inf, and never a mean itself.
WINDOW_LINE = torch.finfo(torch.float32).max


def line_end_tokens(tokenizer, vocab_size: int) -> torch.Tensor:
    """``[vocab_size]`` bool (or the tokenizer's size, where larger): True for the ids whose text holds a line
    break."""
    return token_text_flags(tokenizer, vocab_size, lambda text: "\n" in text)


@dataclass
class LineScorer(SegmentMeanScorer):
    """Retaining heads by line: each entry scores the mean, over its line (at most ``max_line`` tokens), of the
    heads' scores standardized per layer and KV head and averaged over all of them. With a paragraph per line
    the default 256 keeps a sentence only with its whole paragraph; 32 (the shipped heads' recommendation)
    found 15, 10 and 10 of 25 such needles at 8K-32K on validation against 9, 5 and 5, and the same on
    hard-wrapped books.

    During a prefill chunk's forward every layer's heads score the chunk (``score_new``); after it,
    ``token_values`` standardizes each layer and KV head's scores by the mean and spread of all its scores of
    the input so far (heads differ in scale, and eviction compares entries across chunks) and averages them
    into one value per token; ``SegmentMeanScorer`` averages those per line and gives every layer the same
    scores, so whole lines are kept or dropped together everywhere. The newest ``n_stabilizers`` entries stay
    anyway (``n_stabilizers >= max_line``); with ``keep_window_line`` (default) so does the rest of the line
    they start in, which would otherwise be cut there (on validation 22 ``multidoc_qa`` answers of 300 against
    19, the same needles). ``surprisal_weight`` (default 1) adds each token's surprisal under the model (as
    ``SurprisalScorer``'s, from the chunk's own logits), the head average and the surprisal each standardized
    by the input so far: more prose needles kept at 8K-16K on validation, at 0.91x the heads' prefill speed
    against 0.95x without it; 0 for the heads alone. ``top_tokens`` (default 8; None: all) scores a line by the
    mean of its ``top_tokens`` highest token values, so a fact inside an ordinary line is not averaged away by
    the words around it: on validation it kept the prose needle in nearly every prompt up to 32K and found 13
    and 14 of 25 at 8K and 16K, against 10 and 8 for the line mean. ``split_sentences`` (default False) also
    ends a segment at a sentence's end (as ``SurprisalScorer``'s sentences), so text with a whole paragraph on
    one line is kept by sentence, not by paragraph; on validation it found 14 and 7 of 25 such needles at 8K
    and 16K, against 15 and 10 with ``max_line=32`` (``benchmark/results/natural_val_smollm2/sentences/``); with
    ``max_line=32``, ``top_tokens=None`` and ``surprisal_weight=2`` as well, 17, 14 and 10 at 8K-32K (the cap
    alone 15, 10, 10), but 8 of 25 on wrapped books at 32K against 14
    (``benchmark/results/natural_val_smollm2/sentence_segments/``). Needs retaining heads, ``score_pooling=1``,
    ``budget_allocation="uniform"`` and ``decode_budget=None``.
    ``tokenizer`` finds the line breaks; None: the model's own (``model.config.name_or_path``).
    """

    uses_retaining_heads: ClassVar[bool] = True
    what: ClassVar[str] = "lines"
    segment: ClassVar[str] = "line"
    limit_field: ClassVar[str] = "max_line"

    tokenizer: Any = field(default=None, repr=False, compare=False)
    max_line: int = 256
    keep_window_line: bool = True
    surprisal_weight: float = 1.0
    top_tokens: int | None = 8
    split_sentences: bool = False

    def __post_init__(self) -> None:
        self.check_segment_settings()
        if not self.surprisal_weight >= 0:
            raise ValueError(f"surprisal_weight must be >= 0, got {self.surprisal_weight}")
        self._chunk: dict[int, torch.Tensor] = {}  # layer -> the heads' scores [B, Hkv, T] of this chunk

    @property
    def segment_limit(self) -> int:
        return self.max_line

    @property
    def ends_kind(self) -> str:
        return "LineScorer+sentences" if self.split_sentences else "LineScorer"

    def segment_end_tokens(self, tokenizer, vocab_size: int) -> torch.Tensor:
        ends = line_end_tokens(tokenizer, vocab_size)
        if self.split_sentences:
            ends |= sentence_end_tokens(tokenizer, vocab_size)
        return ends

    def score_new(self, attention, head_input, query, key, positions) -> torch.Tensor:
        """During the chunk's forward: keep the layer's head scores for ``token_values`` (the entries' own
        scores come after the forward); elsewhere 0, as for every chunk rescorer."""
        if self._awaiting:
            self._chunk[attention.layer_idx] = attention.retaining_scores(head_input).transpose(1, 2).float()
        return super().score_new(attention, head_input, query, key, positions)

    def token_values(
        self, model, cache, input_ids: torch.Tensor, start: int, end: int, hidden_states: torch.Tensor
    ) -> torch.Tensor:
        """The chunk's head scores ``[B, layers, Hkv, T]``, standardized per layer and head by the moments of
        the input so far (the sinks left out), averaged over layers and heads: ``[B, T]``. With a
        ``surprisal_weight``, that average and the tokens' surprisal are each standardized again the same way
        and added, the surprisal times the weight."""
        if len(self._chunk) != len(cache.layers):
            raise RuntimeError(
                f"the heads scored {len(self._chunk)} of {len(cache.layers)} layers in this chunk"
            )
        raw = torch.stack([self._chunk[layer] for layer in range(len(cache.layers))], dim=1)
        self._chunk.clear()
        state = cache.scorer_state
        heads = standardized(state, "moments", raw, start).mean(dim=(1, 2))
        if not self.surprisal_weight:
            return heads
        z_heads, z_surprisal = self.standardized_parts(
            model, state, heads, input_ids, start, end, hidden_states
        )
        return z_heads + self.surprisal_weight * z_surprisal

    def standardized_parts(
        self,
        model,
        state: dict,
        heads: torch.Tensor,
        input_ids: torch.Tensor,
        start: int,
        end: int,
        hidden_states: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The chunk's head average ``heads`` ``[B, T]`` and its tokens' surprisal, each standardized by the
        input so far: the two parts ``token_values`` weighs (analyses record them by overriding this)."""
        surprisal = chunk_surprisal(model, state, input_ids, start, end, hidden_states, SOFTMAX_TOKENS)
        return standardized(state, "heads_moments", heads, start), standardized(
            state, "surprisal_moments", surprisal, start
        )

    def adjust_scores(self, cache, stored: torch.Tensor, scores: torch.Tensor) -> None:
        """With ``keep_window_line``: the older part of the line the newest ``n_stabilizers`` entries start in
        scores ``WINDOW_LINE`` at this chunk's eviction, so that line is kept whole, not cut where the window
        begins; the previous chunk's such line gets its own mean back first."""
        if not self.keep_window_line:
            return
        state = cache.scorer_state
        held = state.pop("window_line", None)
        if held is not None:
            stored.copy_(torch.where(stored == WINDOW_LINE, held[:, None], stored))
        entries = torch.cat([stored, scores], dim=-1)
        if entries.shape[-1] <= cache.config.budget:  # nothing is evicted after this chunk
            return
        boundary = entries.shape[-1] - cache.config.n_stabilizers  # the window's oldest entry
        line = entries[:, boundary]
        index = torch.arange(entries.shape[-1], device=entries.device)
        other = (entries != line[:, None]) & (index < boundary)
        first = torch.where(other, index + 1, 0).amax(dim=-1, keepdim=True)  # where the line's run begins
        older_part = (index >= first) & (index < boundary) & line[:, None].isfinite()
        entries.masked_fill_(older_part, WINDOW_LINE)
        stored.copy_(entries[:, : stored.shape[-1]])
        scores.copy_(entries[:, stored.shape[-1] :])
        state["window_line"] = line


def standardized(state: dict, key: str, values: torch.Tensor, start: int) -> torch.Tensor:
    """``values`` ``[..., T]`` of the chunk starting at token ``start``, less the mean and over the spread, per
    leading index, of all such values of the input so far (this chunk's included; the first ``N_SINKS`` tokens
    left out), kept in ``state[key]``. Zeros for a chunk of sinks only: their scores are +inf anyway."""
    counted = values[..., max(N_SINKS - start, 0) :]
    count, total, squares = state.get(key, (0, 0.0, 0.0))
    count = count + counted.shape[-1]
    total = total + counted.sum(-1)
    squares = squares + counted.square().sum(-1)
    state[key] = (count, total, squares)
    if count == 0:
        return torch.zeros_like(values)
    mean = total / count
    std = (squares / count - mean.square()).clamp_min(STD_FLOOR**2).sqrt()
    return (values - mean[..., None]) / std[..., None]
