"""KVzip's reconstruction score (Kim et al., 2025, arXiv 2505.23416), computed online within Locret's bounded
cache: after each prefill chunk the model repeats that chunk, and each of the chunk's entries scores the most
attention it receives while it is repeated. No trained heads and no question; memory stays about
``budget + 2 x chunk`` entries, so it runs past the model's window.

Why: KVzip's score computed over a whole context keeps needles in prose that the retaining heads lose; this is
the same score computed where Locret's heads are used, as a chunk is read. Measured (SmolLM2, ``niah_text``
validation, 4K, ``benchmark/results/natural_val_smollm2/reconstruct_online/``): it keeps no more than the
heads (1-2/5), at about 3.4x their prefill time, because the whole-context score depends on the text that
follows a fact. A baseline and the online form of the heads' label, not a recommended scorer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from .base import ChunkRescorer

# KVzip's own protocol (its repository and kvpress): the first chunk's prompt, the later chunks' prompt
# followed by the previous chunk's last ``PREVIOUS_TOKENS`` tokens, and ``N_SINKS`` first tokens always kept.
FIRST_PROMPT = "\n\nRepeat the previous context exactly.\n"
NEXT_PROMPT = "\n\nRepeat the part of the previous context exactly, starting with"
PREVIOUS_TOKENS = 8
N_SINKS = 4
ROW_BLOCK = 128  # reconstruction rows scored at once (memory: B x H x ROW_BLOCK x columns floats)


def max_received_attention(
    query: torch.Tensor,
    keys: torch.Tensor,
    columns: torch.Tensor,
    scored: slice,
    scaling: float,
    visible: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per KV head, the maximum over the rows of ``query`` ``[B, H, T, D]`` (rotated; the last ``T`` of the
    ``S`` entries of ``keys`` ``[B, Hkv, S, D]`` are theirs, causal among themselves) and over each group's
    query heads of the softmax taken over ``keys[:, :, columns]`` only: ``[B, Hkv, n]`` for the columns
    ``columns[scored]``. ``visible`` ``[B, Hkv, len(columns)]``: False hides a column from that KV head (a pad
    slot). Float32, ``ROW_BLOCK`` rows at a time."""
    batch, heads, rows, dim = query.shape
    kv_heads, stored = keys.shape[1], keys.shape[2]
    grouped = query.float().view(batch, kv_heads, heads // kv_heads, rows, dim)
    selected = keys[:, :, columns].float() * scaling  # [B, Hkv, C, D]
    row_positions = torch.arange(stored - rows, stored, device=query.device)
    hidden_by_head = None if visible is None else ~visible[:, :, None, None, :]  # [B, Hkv, 1, 1, C]
    best = None
    for start in range(0, rows, ROW_BLOCK):
        block = grouped[:, :, :, start : start + ROW_BLOCK]  # [B, Hkv, G, b, D]
        logits = torch.einsum("bhgtd,bhcd->bhgtc", block, selected)
        hidden = columns[None, :] > row_positions[start : start + ROW_BLOCK, None]  # causal among own rows
        if hidden_by_head is not None:
            hidden = hidden | hidden_by_head
        logits.masked_fill_(hidden, -math.inf)
        received = logits.softmax(dim=-1)[..., scored].amax(dim=(2, 3))
        best = received if best is None else torch.maximum(best, received)
    return best


@dataclass
class ReconstructionScorer(ChunkRescorer):
    """Reconstruction (KVzip's score, online): attention each entry receives while its chunk is repeated.

    After every prefill chunk, ``rescore_chunk`` runs the chunk again after KVzip's prompt ("Repeat the
    previous context exactly." for the first chunk; "Repeat the part of the previous context exactly,
    starting with" and the previous 8 tokens for the others), attending to the whole retained cache; each
    of the chunk's entries scores, per layer and KV head, the maximum softmax probability it receives from a
    repeating row and a query head of its group, the softmax taken (KVzip's ``chunk`` normalisation) over
    the head's ``N_SINKS`` oldest entries (the input's first tokens), the chunk and the repeating rows. The
    repeated tokens are then dropped and the cache evicts as usual (``score_pooling`` and
    ``budget_allocation`` apply; the score is comparable across KV heads, so ``"adaptive"`` suits it). The
    input's first ``N_SINKS`` tokens score +inf.

    No eviction while decoding (``decode_budget`` must be None): tokens this scorer never repeats (the local
    tail, generated tokens) have no score to rank them by.
    ``tokenizer`` encodes the prompts; None: the model's own (``model.config.name_or_path``).
    """

    tokenizer: Any = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._prompts: dict[str, list[int]] = {}  # encoded once per scorer
        self._recording: dict | None = None  # while repeating: the chunk's length and each layer's scores

    def score_new(self, attention, head_input, query, key, positions) -> torch.Tensor:
        if self._recording is not None:  # the repeated tokens: dropped before any eviction
            return key.new_full(key.shape[:3], -math.inf, dtype=torch.float32)
        return super().score_new(attention, head_input, query, key, positions)

    def after_attention(self, layer, query, key, scaling) -> None:
        if self._recording is None:
            return
        chunk, repeated = self._recording["chunk"], query.shape[-2]
        older = key.shape[-2] - repeated - chunk  # retained entries before the new chunk
        device = key.device
        # The sinks are each KV head's N_SINKS oldest entries (the input's first tokens, kept at +inf): the
        # first slots, or with an adaptive allocation the slots right after that head's left pads.
        pads = layer.head_pads
        reach = min(N_SINKS + (0 if pads is None else int(pads.max())), older)
        sinks = torch.arange(reach, device=device)
        columns = torch.cat([sinks, torch.arange(older, key.shape[-2], device=device)])
        visible = None
        if pads is not None:
            first = pads[..., None]
            own = torch.ones(*pads.shape, chunk + repeated, dtype=torch.bool, device=device)
            visible = torch.cat([(sinks >= first) & (sinks < first + N_SINKS), own], dim=-1)
        scored = slice(reach, reach + chunk)
        self._recording[id(layer)] = max_received_attention(query, key, columns, scored, scaling, visible)

    def prompt_ids(self, model) -> tuple[list[int], list[int]]:
        """The first and the later chunks' prompts in the model's tokens."""
        if not self._prompts:
            tokenizer = self.text_tokenizer(model)
            self._prompts["first"] = tokenizer.encode(FIRST_PROMPT, add_special_tokens=False)
            self._prompts["next"] = tokenizer.encode(NEXT_PROMPT, add_special_tokens=False)
        return self._prompts["first"], self._prompts["next"]

    @staticmethod
    def check_config(config) -> None:
        """Refuse the settings this scorer cannot serve (see the class docstring)."""
        if config.decode_budget is not None:
            raise ValueError(
                "the reconstruction scorer cannot evict while decoding (generated tokens are never repeated, "
                "so they have no score): use decode_budget=None"
            )

    @torch.no_grad()
    def rescore_chunk(
        self, model, cache, input_ids: torch.Tensor, start: int, end: int, hidden_states: torch.Tensor
    ) -> None:
        """Score the chunk ``input_ids[:, start:end]`` just appended to ``cache`` (not yet evicted) by
        repeating it after KVzip's prompt, then hand every layer its scores and drop the repeated tokens
        (the chunk's own ``hidden_states`` are not needed)."""
        from ..compat import CACHE_KWARG

        first, later = self.prompt_ids(model)
        batch = input_ids.shape[0]
        prompt = torch.tensor(first if start == 0 else later, dtype=torch.long, device=input_ids.device)
        quoted = input_ids[:, max(start - PREVIOUS_TOKENS, 0) : start]  # each row's own last tokens
        repeat = torch.cat([prompt.expand(batch, -1), quoted, input_ids[:, start:end]], dim=1)
        self._recording = {"chunk": end - start}
        try:
            with cache.scratch_tokens():
                model.model(input_ids=repeat, use_cache=True, **{CACHE_KWARG: cache})
            for layer in cache.layers:
                received = self._recording[id(layer)]
                if start < N_SINKS:
                    received[..., : N_SINKS - start] = math.inf
                layer.supply_pending_scores(received)
        finally:
            self._recording = None
