"""The interface every scorer implements."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import ClassVar

import torch

from ..heads import HeadInput


class EntryScorer:
    """Scores cache entries; higher is kept. Stateless between prompts: all state lives in the cache layer.

    A scorer is a dataclass: its fields are its parameters (SnapKV's ``window``...), set when it is built
    (the benchmark sets them from ``--method name:field=value``). The first line of its docstring describes it.

    ``score_new`` gives the score of each new entry when it is appended. ``after_attention`` may then revise
    the scores of every stored entry from the chunk's (rotated) queries and keys, for attention-based
    baselines; Locret never recomputes a stored score. A scorer with ``rescores_chunks`` scores each prefill
    chunk after its forward instead, from the forward's final hidden states or a pass of its own
    (``SurprisalScorer``, ``ReconstructionScorer``: ``check_config``, ``chunk_pass``, ``rescore_chunk(model,
    cache, input_ids, start, end, hidden_states)``, called by ``locret.prefill.prefill_prompt``).
    """

    uses_retaining_heads: ClassVar[bool] = False  # True: the scores come from the model's retaining heads
    rescores_chunks: ClassVar[bool] = False  # True: the prefill calls ``rescore_chunk`` after every chunk
    # True: the cache tracks every entry's position (``LocretLayer.positions``) for this scorer
    needs_positions: bool = False

    def score_new(
        self,
        attention,
        head_input: HeadInput,
        query: torch.Tensor,
        key: torch.Tensor,
        positions: torch.Tensor,
    ) -> torch.Tensor:
        """Scores ``[B, Hkv, T]`` of the new entries. ``head_input`` holds the chunk's hidden states and raw
        q/k/v projections (the retaining heads' input); ``positions`` ``[T]`` are the absolute token indices."""
        raise NotImplementedError

    def after_attention(self, layer, query: torch.Tensor, key: torch.Tensor, scaling: float) -> None:
        """Optionally rescore ``layer.scores`` from ``query`` ``[B, H, T, D]`` and all keys ``[B, Hkv, S, D]``."""

    def check_config(self, config) -> None:
        """Refuse, with a ValueError, the ``LocretConfig`` settings this scorer cannot serve; most serve any."""


class ChunkRescorer(EntryScorer):
    """A scorer that scores each prefill chunk after its forward (``rescore_chunk``, called by
    ``locret.prefill.prefill_prompt``). During the chunk's own forward (``chunk_pass``) its entries get a
    placeholder for their scores that fails loudly if anything evicts before the real ones are supplied
    (``LocretLayer.supply_pending_scores``); outside it (the local tail, generated tokens) they score 0, so
    these scorers refuse a ``decode_budget``."""

    rescores_chunks: ClassVar[bool] = True
    _awaiting = False  # True while the chunk's own forward runs: its scores come later
    tokenizer = None  # subclasses that read the text make it a dataclass field (see ``text_tokenizer``)

    def score_new(self, attention, head_input, query, key, positions) -> torch.Tensor:
        if self._awaiting:
            return self._scores_not_supplied
        return key.new_zeros(key.shape[:3], dtype=torch.float32)

    def _scores_not_supplied(self) -> torch.Tensor:
        raise RuntimeError(
            f"a {type(self).__name__}'s chunk was evicted before it was scored: prefill with "
            "locret.prefill_prompt (or locret.generate / model.generate), which scores every chunk after its "
            "forward"
        )

    def text_tokenizer(self, model):
        """The scorer's ``tokenizer`` field, or when it is None the model's own (``model.config.name_or_path``),
        for the rescorers that read the text (sentence ends, a prompt to encode)."""
        if self.tokenizer is not None:
            return self.tokenizer
        from ..acquire import load_tokenizer

        return load_tokenizer(model.config.name_or_path)

    @contextmanager
    def chunk_pass(self) -> Iterator[None]:
        """The chunk's own forward: its entries' scores wait for ``rescore_chunk``."""
        self._awaiting = True
        try:
            yield
        finally:
            self._awaiting = False


def attention_received(query: torch.Tensor, key: torch.Tensor, scaling: float) -> torch.Tensor:
    """Softmax attention each stored entry receives from a chunk's queries, summed over those queries and the
    query heads of its KV group: ``[B, Hkv, S]`` (the chunk is the last ``T`` keys, causal inside itself).

    For the attention-based baselines. One ``[B, Hkv, G, T, S]`` float32 buffer is normalised in place
    (max-shifted exp, then each row's 1/sum folded into the reduction), instead of a logits, masked copy and
    softmax output of that size each.
    """
    batch, heads, new, dim = query.shape
    kv_heads, stored = key.shape[1], key.shape[2]
    grouped = query.view(batch, kv_heads, heads // kv_heads, new, dim).float() * scaling
    weights = torch.einsum("bhgtd,bhsd->bhgts", grouped, key.float())
    weights[..., stored - new :].masked_fill_(
        torch.ones(new, new, dtype=torch.bool, device=query.device).triu(1), float("-inf")
    )
    weights.sub_(weights.amax(dim=-1, keepdim=True)).exp_()
    inverse_row_sums = weights.sum(dim=-1).reciprocal_()  # [B, Hkv, G, T]
    return torch.einsum("bhgts,bhgt->bhs", weights, inverse_row_sums)
