"""An evicting KV cache on the transformers ``Cache`` API.

Each layer stores pre-RoPE keys, values and one retaining-head score per entry and KV head. The attention
module appends a chunk with ``update``, attends to everything returned, then calls ``evict`` so the layer
keeps at most ``budget`` entries per KV head (while prefilling, all layers at once after the last layer's
attention: ``LocretCache.evict``).

Lengths: ``get_seq_length()`` counts tokens *seen* (what ``generate`` needs to know which inputs are new),
while the stored length is smaller once entries were evicted. ``get_mask_sizes`` reports
``(stored + q_len, seen - stored)``, which makes the stock causal mask let every new token see every retained
entry and the earlier tokens of its own chunk. A sliding-window layer (Gemma 3, Mistral) lays the model's
sliding mask over the same slots: it sees the newest ``sliding_window`` of the retained entries and chunk.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from transformers.cache_utils import Cache, DynamicLayer

from .config import EvictionKernel, LocretConfig
from .eviction import adaptive_kept, flat_rows, gather_entries, gather_rows, kept_indices, profile_kept
from .heads import FoldedHeadScores
from .scorers import EntryScorer, RetainingHeadScorer


class LocretLayer(DynamicLayer):
    """One layer's retained entries: keys (pre-RoPE), values, scores and, in absolute mode, positions.

    The layer reads its settings from the ``LocretConfig`` it was built with (its cache's own, never a copy of
    its parts). With ``pool_kernel = config.score_pooling = 2r + 1 > 1`` every entry's score is the maximum
    raw score of the tokens within ``r`` of it, exactly as if the whole prompt had been scored at once: the
    layer remembers the last ``r`` raw scores, pools each new chunk together with them, and raises the newest
    stored entries' scores by their new right-hand neighbours. Those entries are still stored because eviction
    always keeps the newest
    ``n_stabilizers >= r`` entries (``LocretConfig`` checks this).
    """

    def __init__(
        self, config: LocretConfig | None = None, track_positions: bool = False, layer_idx: int = 0
    ) -> None:
        super().__init__()
        self.config = config if config is not None else LocretConfig()
        self.track_positions = track_positions
        self.layer_idx = layer_idx  # which row of ``config.head_shares`` (``budget_allocation="profile"``)
        self.raw_tail: torch.Tensor | None = None  # the last pool_kernel // 2 raw scores
        self.pending_scores: tuple[Callable[[], torch.Tensor], int] | None = None  # see ``update``
        self.scores: torch.Tensor | None = None
        self.positions: torch.Tensor | None = None
        self.seen = 0
        self.protect_remaining = 0
        self.peak_length = 0
        # Padded batches (``LocretCache.from_rows``): each row's entries are left-padded to a common length.
        self.real_lengths: torch.Tensor | None = None  # [B] real (non-pad) entries per row; None: no pads
        self.shifts: torch.Tensor | None = None  # [B] each row's pad tokens (``seen`` counts them)
        # ``budget_allocation`` "adaptive" / "profile": each KV head's entries are left-padded to the longest head's.
        self.head_pads: torch.Tensor | None = None  # [B, H] slots at each head's left that hold no entry
        # ``LocretCache.scratch_tokens``: appended entries a scoring pass attends to and then drops.
        self.scratch: int | None = None  # None: updates are ordinary; else the scratch entries held now

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        super().lazy_initialization(key_states, value_states)
        batch, heads = key_states.shape[:2]
        self.scores = torch.empty(batch, heads, 0, dtype=torch.float32, device=self.device)
        self.raw_tail = torch.empty(batch, heads, 0, dtype=torch.float32, device=self.device)
        self.positions = torch.empty(batch, heads, 0, dtype=torch.long, device=self.device)
        self.keys = key_states.new_empty(batch, heads, 0, key_states.shape[-1])
        self.values = value_states.new_empty(batch, heads, 0, value_states.shape[-1])

    def update(
        self,
        key_states: torch.Tensor,
        value_states: torch.Tensor,
        *args,
        scores: torch.Tensor | Callable[[], torch.Tensor] | None = None,
        **kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Append ``[B, H, T, D]`` keys/values with their scores ``[B, H, T]``; return all stored entries.

        ``scores`` may be a function that computes them later: they are appended when first needed
        (``resolve_scores``, before any eviction), so a prefill's thirty heads can finish together
        (``FoldedHeadScores``, ``LocretCache.evict_together``)."""
        if scores is None:
            raise ValueError(
                "LocretCache.update needs the retaining-head scores of the new entries (scores=...)"
            )
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        if self.scratch is not None:
            return self._append_scratch(key_states, value_states)
        self.resolve_scores()
        new = key_states.shape[-2]
        protect = min(self.protect_remaining, new)
        self.protect_remaining -= protect
        self.keys = torch.cat([self.keys, key_states], dim=-2)
        self.values = torch.cat([self.values, value_states], dim=-2)
        if self.track_positions:
            fresh = torch.arange(self.seen, self.seen + new, device=self.device)
            if self.shifts is not None:
                fresh = fresh[None, None, :] - self.shifts[:, None, None]
            self.positions = torch.cat([self.positions, fresh.expand(*key_states.shape[:2], new)], dim=-1)
        if self.real_lengths is not None:
            self.real_lengths = self.real_lengths + new
        self.seen += new
        self.peak_length = max(self.peak_length, self.keys.shape[-2])
        if callable(scores):
            self.pending_scores = (scores, protect)
        else:
            self._append_scores(scores, protect)
        return self.keys, self.values

    def _append_scratch(self, key_states: torch.Tensor, value_states: torch.Tensor):
        """Append throwaway entries at the next positions, without scores; ``drop_scratch`` removes them."""
        new = key_states.shape[-2]
        self.keys = torch.cat([self.keys, key_states], dim=-2)
        self.values = torch.cat([self.values, value_states], dim=-2)
        if self.track_positions:
            fresh = torch.arange(self.seen, self.seen + new, device=self.device)
            self.positions = torch.cat([self.positions, fresh.expand(*key_states.shape[:2], new)], dim=-1)
        self.seen += new
        self.scratch += new
        self.peak_length = max(self.peak_length, self.keys.shape[-2])
        return self.keys, self.values

    def drop_scratch(self) -> None:
        """Remove the scratch entries (and their positions) and make updates ordinary again."""
        if self.scratch:
            self.keys = self.keys[..., : -self.scratch, :]
            self.values = self.values[..., : -self.scratch, :]
            if self.track_positions:
                self.positions = self.positions[..., : -self.scratch]
            self.seen -= self.scratch
        self.scratch = None

    def supply_pending_scores(self, raw: torch.Tensor) -> None:
        """The raw scores ``[B, H, T]`` of the last ``update``'s entries, which gave a placeholder function
        for them (``ReconstructionScorer``); pooled and appended at the next eviction, as computed scores."""
        if self.pending_scores is None:
            raise RuntimeError("no scores are pending: supply them right after the update that deferred them")
        self.pending_scores = (lambda: raw, self.pending_scores[1])

    def resolve_scores(self) -> None:
        """Append the scores of the last ``update`` if it gave a function for them."""
        if self.pending_scores is not None:
            compute, protect = self.pending_scores
            self.pending_scores = None
            self._append_scores(compute(), protect)

    def _append_scores(self, raw: torch.Tensor, protect: int) -> None:
        self.scores, self.raw_tail = append_pooled_scores(
            self.scores, self.raw_tail, raw.to(torch.float32), self.pool_kernel, protect
        )
        if self.real_lengths is not None:
            pads = ~self.real_entries()[:, None]
            self.scores.masked_fill_(pads, float("-inf"))  # pooling never lifts a pad

    @property
    def pool_kernel(self) -> int:
        return self.config.score_pooling

    def evict(self, keep: int, n_protect: int, kernel: EvictionKernel = "torch") -> None:
        """Keep the top ``keep`` entries per KV head (newest ``n_protect`` forced in), in original order."""
        self.resolve_scores()
        if self.keys is None or self.keys.shape[-2] <= self.fits_untouched(keep):
            return
        n_protect = min(n_protect, keep)
        if self.config.budget_allocation != "uniform":
            self._evict_per_head(keep, n_protect)
        elif kernel == "triton":
            from .eviction_triton import triton_evict

            self.keys, self.values, self.scores, indices = triton_evict(
                self.keys, self.values, self.scores, keep, n_protect
            )
            self._keep_entry_metadata(indices)
        else:
            self.keep_entries(kept_indices(self.scores, keep, n_protect))

    def fits_untouched(self, keep: int) -> int:
        """The most slots a layer may hold and still need no eviction to ``keep`` entries per head on average:
        ``keep``, or with a ``"profile"`` allocation its smallest head's count (a layer of small shares, all
        under ``keep``, is evicted each chunk like any other)."""
        if self.config.budget_allocation == "profile":
            return min(self.config.head_budgets(self.layer_idx, keep))
        return keep

    def _evict_per_head(self, keep: int, n_protect: int) -> None:
        """Keep a number of entries per KV head that differs between heads: the top ``keep x H`` over all of
        them together (``"adaptive"``, ``eviction.adaptive_kept``) or each head's fixed share
        (``"profile"``, ``eviction.profile_kept``); the slots a head does not fill become its left pads
        (score -inf, masked in attention)."""
        held = None if self.head_pads is None else self.held_entries()
        if self.config.budget_allocation == "profile":
            counts = torch.tensor(self.config.head_budgets(self.layer_idx, keep), device=self.scores.device)
            if counts.shape[0] != self.scores.shape[1]:
                raise ValueError(
                    f"head_shares gives {counts.shape[0]} KV heads for layer {self.layer_idx}, the model has "
                    f"{self.scores.shape[1]}"
                )
            indices, self.head_pads = profile_kept(self.scores, held, counts, n_protect)
        else:
            indices, self.head_pads = adaptive_kept(
                self.scores, held, keep, n_protect, self.config.max_head_budget
            )
        self.keep_entries(indices)
        self.scores.masked_fill_(~self.held_entries(), float("-inf"))

    def keep_entries(
        self, indices: torch.Tensor, rows: torch.Tensor | None = None, scores: torch.Tensor | None = None
    ) -> None:
        """Keep only the entries at ``indices`` ``[B, H, keep]`` (ascending) of every per-entry tensor;
        ``rows`` (their ``flat_rows``) and ``scores`` (the kept scores) where the caller computed them for
        several layers at once."""
        rows = flat_rows(indices, self.stored_length()) if rows is None else rows
        self.keys = gather_rows(self.keys, rows)
        self.values = gather_rows(self.values, rows)
        self.scores = gather_entries(self.scores, indices) if scores is None else scores
        self._keep_entry_metadata(indices)

    def _keep_entry_metadata(self, indices: torch.Tensor) -> None:
        if self.track_positions:
            self.positions = gather_entries(self.positions, indices)
        if self.real_lengths is not None:
            keep = indices.shape[-1]
            self.real_lengths = self.real_lengths.clamp(max=keep)  # pads score -inf: they go first

    def pad_counts(self) -> torch.Tensor:
        """Pad entries at the left of each row ``[B]`` (a padded batch only)."""
        return self.stored_length() - self.real_lengths

    def held_entries(self) -> torch.Tensor | None:
        """``[B, 1 or H, S]`` True where a slot holds an entry, False for pads (a padded batch's rows, an
        adaptive allocation's heads); None when every slot holds one."""
        if self.head_pads is not None:
            slots = torch.arange(self.stored_length(), device=self.head_pads.device)
            return slots >= self.head_pads[..., None]
        if self.real_lengths is not None:
            return self.real_entries()[:, None]
        return None

    def real_entries(self) -> torch.Tensor:
        """``[B, S]`` True where an entry is a real token, False for a row's left pads (a padded batch only)."""
        slots = torch.arange(self.stored_length(), device=self.real_lengths.device)
        return slots[None, :] >= self.pad_counts()[:, None]

    def entry_nbytes(self) -> int:
        """Bytes one stored token costs in this layer, over all its KV heads."""
        if self.keys is None:
            return 0
        batch, heads, _, dim = self.keys.shape
        per_head = dim * (self.keys.element_size() + self.values.element_size()) + self.scores.element_size()
        if self.track_positions:
            per_head += self.positions.element_size()
        return batch * heads * per_head

    def stored_length(self) -> int:
        return 0 if self.keys is None else self.keys.shape[-2]

    def get_seq_length(self) -> int:
        return self.seen

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        stored_before = self.stored_length()
        return stored_before + query_length, self.seen - stored_before

    def crop(self, tokens_to_remove: int) -> None:
        raise NotImplementedError("an evicting cache cannot be cropped: its entries are no longer contiguous")

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        super().batch_select_indices(indices)
        self.scores = self.scores[indices, ...]
        self.raw_tail = self.raw_tail[indices, ...]
        self.positions = self.positions[indices, ...]
        self._select_rows(lambda rows: rows[indices])

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        super().reorder_cache(beam_idx)
        self.scores = self.scores.index_select(0, beam_idx.to(self.scores.device))
        self.raw_tail = self.raw_tail.index_select(0, beam_idx.to(self.raw_tail.device))
        self.positions = self.positions.index_select(0, beam_idx.to(self.positions.device))
        self._select_rows(lambda rows: rows.index_select(0, beam_idx.to(rows.device)))

    def batch_repeat_interleave(self, repeats: int) -> None:
        super().batch_repeat_interleave(repeats)
        self.scores = self.scores.repeat_interleave(repeats, dim=0)
        self.raw_tail = self.raw_tail.repeat_interleave(repeats, dim=0)
        self.positions = self.positions.repeat_interleave(repeats, dim=0)
        self._select_rows(lambda rows: rows.repeat_interleave(repeats, dim=0))

    def _select_rows(self, select) -> None:
        if self.real_lengths is not None:
            self.real_lengths, self.shifts = select(self.real_lengths), select(self.shifts)
        if self.head_pads is not None:
            self.head_pads = select(self.head_pads)


class LocretCache(Cache):
    """KV cache that evicts by retaining-head score, following a ``LocretConfig``.

    Phases: while ``prefilling`` every update is followed by eviction down to ``budget``; afterwards,
    ``protect_next(n)`` makes the next ``n`` tokens permanent (the local tail), and decoding only evicts when
    ``decode_budget`` is set.
    """

    def __init__(
        self,
        config: LocretConfig,
        num_layers: int,
        scorer: EntryScorer | None = None,
        track_positions: bool = False,
    ) -> None:
        """``scorer`` decides what survives (default: the retaining heads); every layer pools its scores over
        ``config.score_pooling`` neighbours.
        ``track_positions`` records every entry's original position (always on in absolute mode and for a
        scorer that ``needs_positions``), so tests and analyses can ask which tokens survived."""
        if config.eviction_kernel == "triton" and importlib.util.find_spec("triton") is None:
            raise ImportError('eviction_kernel="triton" needs Triton: pip install triton (or "locret[gpu]")')
        self._config = config
        self.scorer = scorer if scorer is not None else RetainingHeadScorer()
        track = track_positions or config.position_mode == "absolute" or self.scorer.needs_positions
        if config.head_shares is not None and len(config.head_shares) != num_layers:
            raise ValueError(f"head_shares has {len(config.head_shares)} layers, the model {num_layers}")
        super().__init__(
            layers=[
                LocretLayer(config, track_positions=track, layer_idx=index) for index in range(num_layers)
            ]
        )
        self.prefilling = False
        self.holding = False  # True: no eviction (a chunk waits for its scores; ``hold_eviction``)
        self._causal_table: torch.Tensor | None = None  # see ``causal_mask``
        # What a scorer that rescores chunks (``SurprisalScorer``) carries from one chunk to the next of this
        # prompt: it lives with the cache, so a copied cache continues exactly as the original would.
        self.scorer_state: dict = {}

    def causal_mask(self, new: int, stored: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """``[new, stored]`` additive mask of ``new`` tokens over ``stored`` slots, the last ``new`` their own:
        token ``i`` sees slots up to ``stored - new + i`` (0 there, the dtype's minimum elsewhere). A view of one
        table that is kept and grown (doubling), so a prefill's layers and chunks build it once or twice."""
        table = self._causal_table
        if table is None or (table.shape[0], table.dtype, table.device) != (new, dtype, device):
            width = stored
        elif table.shape[1] < stored:
            width = max(stored, 2 * table.shape[1])
        else:
            return table[:, table.shape[1] - stored :]
        slots = torch.arange(width, device=device)
        hidden = slots[None, :] > slots[width - new :, None]
        table = torch.zeros(new, width, dtype=dtype, device=device).masked_fill_(
            hidden, torch.finfo(dtype).min
        )
        self._causal_table = table
        return table[:, width - stored :]

    @contextmanager
    def hold_eviction(self) -> Iterator[None]:
        """Inside the block nothing is evicted; the caller evicts afterwards (``evict_together``)."""
        self.holding = True
        try:
            yield
        finally:
            self.holding = False

    @contextmanager
    def scratch_tokens(self) -> Iterator[None]:
        """Inside the block every layer's updates are throwaway entries (attended at the next positions, never
        scored or evicted), dropped at its end: a scoring pass over the cache leaves it as it was."""
        for layer in self.layers:
            layer.scratch = 0
        try:
            with self.hold_eviction():
                yield
        finally:
            for layer in self.layers:
                layer.drop_scratch()

    @classmethod
    def from_rows(cls, rows: list[LocretCache], shifts: list[int]) -> LocretCache:
        """One batched cache from the batch-1 caches of a left-padded batch's rows (each prefilled alone, so it
        evicted exactly as in its own run); ``shifts[r]`` is row ``r``'s pad tokens. Every layer left-pads each
        row's entries to the longest row's with pad entries (score -inf: evicted first, masked in attention)
        and remembers each row's real entries and shift, so RoPE counts each row's own positions."""
        first = rows[0]
        cls.check_padded_batch_config(first.config)
        merged = cls(first.config, len(first.layers), first.scorer, first.layers[0].track_positions)
        for index, layer in enumerate(merged.layers):
            parts = [row.layers[index] for row in rows]
            if len({part.seen + shift for part, shift in zip(parts, shifts, strict=True)}) != 1:
                raise ValueError("the rows of a padded batch must end at the same padded position")
            if not all(part.is_initialized for part in parts):
                raise ValueError("every row of a padded batch must be prefilled before merging")
            length = max(part.stored_length() for part in parts)
            tail = max(part.raw_tail.shape[-1] for part in parts)

            def left_pad(name: str, size: int, fill: float, parts=parts) -> torch.Tensor:
                tensors = [getattr(part, name) for part in parts]
                if tensors[0].dim() == 4:
                    return torch.cat([F.pad(t, (0, 0, size - t.shape[-2], 0), value=fill) for t in tensors])
                return torch.cat([F.pad(t, (size - t.shape[-1], 0), value=fill) for t in tensors])

            layer.lazy_initialization(parts[0].keys, parts[0].values)
            layer.keys, layer.values = left_pad("keys", length, 0.0), left_pad("values", length, 0.0)
            layer.scores = left_pad("scores", length, float("-inf"))
            layer.raw_tail = left_pad("raw_tail", tail, float("-inf"))  # -inf: max pooling's own padding
            layer.positions = left_pad("positions", length if layer.track_positions else 0, 0)
            layer.seen = parts[0].seen + shifts[0]
            layer.protect_remaining = parts[0].protect_remaining
            layer.peak_length = max(part.peak_length for part in parts)
            device = layer.keys.device
            layer.real_lengths = torch.tensor([part.stored_length() for part in parts], device=device)
            layer.shifts = torch.tensor(shifts, device=device)
        return merged

    @staticmethod
    def check_padded_batch_config(config: LocretConfig) -> None:
        """Padded batches pad each row, not each KV head: an adaptive allocation is refused."""
        if config.budget_allocation != "uniform":
            raise ValueError("padded batches need budget_allocation='uniform' (run the rows one at a time)")

    @property
    def config(self) -> LocretConfig:
        """The settings this cache was built with; its layers read the same object. Read-only: a cache whose
        eviction already happened under one config cannot be told it happened under another."""
        return self._config

    def check_settings(self, config: LocretConfig) -> None:
        """Raise a ValueError unless ``config`` equals this cache's, ``n_local`` aside (the one per-prompt
        setting: several questions continue from copies of one context's cache, each with its own tail)."""
        mine = dataclasses.replace(self._config, n_local=config.n_local)
        differing = [
            f"{field.name}: cache {getattr(mine, field.name)!r}, given {getattr(config, field.name)!r}"
            for field in dataclasses.fields(config)
            if getattr(mine, field.name) != getattr(config, field.name)
        ]
        if differing:
            raise ValueError(
                f"this LocretCache was built with other settings ({'; '.join(differing)}): prefill with the "
                "cache's config, or build a new cache"
            )

    def evict(self, layer_idx: int) -> None:
        """Evict after the layer's attention has used the full cache plus the new chunk.

        While prefilling, every layer is evicted at once after the last layer's attention: nothing reads a
        layer's cache between its own attention and the end of the forward, so the result is the same, and one
        ranking over all layers (``evict_together``) replaces thirty. Why: between the model's large kernels
        each small op runs several times slower than in a tight loop (cold caches; measured on CPU about 10x
        for the ranking), and per layer the ranking is a dozen of them."""
        config = self.config
        if self.holding:
            return
        if self.prefilling:
            if layer_idx == len(self.layers) - 1:
                self.evict_together(config.budget)
        elif config.decode_budget is not None:
            self.layers[layer_idx].evict(config.decode_budget, config.n_stabilizers, config.eviction_kernel)

    def evict_together(self, keep: int) -> None:
        """Evict every layer to ``keep`` entries; layers of one shape and device share one ranking, one
        pooling of their pending scores and one computation of the rows to keep (``flat_rows``)."""
        config = self.config
        if config.eviction_kernel != "torch":
            for layer in self.layers:
                layer.evict(keep, config.n_stabilizers, config.eviction_kernel)
            return
        n_protect = min(config.n_stabilizers, keep)
        for layers in self._layer_groups().values():
            scores = self._resolve_together(layers)
            if config.budget_allocation != "uniform":  # each layer's own heads
                for layer in layers:
                    layer.evict(keep, n_protect)
                continue
            if scores.shape[-1] <= keep:
                continue
            ranked = kept_indices(scores, keep, n_protect)
            kept_scores = scores.gather(-1, ranked)
            rows = flat_rows(ranked, scores.shape[-1])
            for layer, *kept in zip(
                layers, ranked.unbind(0), rows.unbind(0), kept_scores.unbind(0), strict=True
            ):
                layer.keep_entries(*kept)

    def _layer_groups(self) -> dict[tuple, list[LocretLayer]]:
        """The initialised layers grouped by everything their scores' stacking needs to share; a padded
        batch's layers stay alone (their pads are masked per layer)."""
        groups: dict[tuple, list[LocretLayer]] = {}
        for layer in filter(lambda layer: layer.is_initialized, self.layers):
            pending = None if layer.pending_scores is None else layer.pending_scores[1]
            alone = id(layer) if layer.real_lengths is not None else None
            key = (layer.keys.shape, layer.scores.shape, layer.raw_tail.shape, layer.device, pending, alone)
            groups.setdefault(key, []).append(layer)
        return groups

    def _resolve_together(self, layers: list[LocretLayer]) -> torch.Tensor:
        """The group's scores ``[L, B, H, S]`` with any pending scores appended: the heads' tails in one batch
        (``stacked_scores``), then one pooling for all layers (``append_pooled_scores``)."""
        first = layers[0]
        if first.pending_scores is None or first.real_lengths is not None:
            for layer in layers:
                layer.resolve_scores()
            return torch.stack([layer.scores for layer in layers])
        protect = first.pending_scores[1]
        raw = stacked_scores([layer.pending_scores[0] for layer in layers]).to(torch.float32)
        stored = torch.stack([layer.scores for layer in layers])
        tails = torch.stack([layer.raw_tail for layer in layers])
        scores, tails = append_pooled_scores(stored, tails, raw, first.pool_kernel, protect)
        for layer, layer_scores, tail in zip(layers, scores.unbind(0), tails.unbind(0), strict=True):
            layer.pending_scores, layer.scores, layer.raw_tail = None, layer_scores, tail
        return scores

    def protect_next(self, n_tokens: int) -> None:
        """Make the next ``n_tokens`` appended to every layer permanent (scores +inf)."""
        for layer in self.layers:
            layer.protect_remaining = n_tokens

    def stored_length(self, layer_idx: int = 0) -> int:
        return self.layers[layer_idx].stored_length() if layer_idx < len(self.layers) else 0

    def peak_length(self) -> int:
        return max((layer.peak_length for layer in self.layers), default=0)

    def peak_nbytes(self) -> int:
        """Upper bound of the bytes held at once: every layer at its own peak length."""
        return sum(layer.peak_length * layer.entry_nbytes() for layer in self.layers)

    @property
    def is_compileable(self) -> bool:
        return False


def stacked_scores(pending: list[Callable[[], torch.Tensor]]) -> torch.Tensor:
    """Several layers' pending scores ``[L, B, H, T]``: at once where they are all ``FoldedHeadScores`` (the
    heads' tails batched), else each computed and stacked."""
    if all(type(item) is FoldedHeadScores for item in pending):
        return FoldedHeadScores.stacked(pending)
    return torch.stack([compute() for compute in pending])


def append_pooled_scores(
    scores: torch.Tensor, raw_tail: torch.Tensor, raw: torch.Tensor, kernel: int, protect: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stored scores ``[..., S]`` followed by the new entries' raw scores ``raw`` ``[..., T]`` max-pooled over
    ``kernel`` neighbours, and the new raw tail; any leading dims (one layer's ``[B, H]``, or stacked layers).

    With ``kernel = 2r + 1 > 1`` each new score is the maximum raw score within ``r`` tokens, counting the
    last ``r`` raw scores of earlier appends (``raw_tail``), and the newest ``r`` stored scores are raised by
    their new right-hand neighbours, so pooling does not depend on chunk boundaries. The first ``protect`` new
    entries score +inf."""
    radius = kernel // 2
    tail = raw_tail.shape[-1] if radius else 0
    new = raw
    if radius:
        joined = torch.cat([raw_tail, raw], dim=-1)
        pooled = F.max_pool1d(joined.reshape(-1, 1, joined.shape[-1]), kernel, stride=1, padding=radius).view(
            joined.shape
        )
        raw_tail, new = joined[..., -radius:], pooled[..., tail:]
    if protect:
        new = new.clone()
        new[..., :protect] = float("inf")
    merged = torch.cat([scores, new], dim=-1)
    if tail:
        stored = scores.shape[-1]
        merged[..., stored - tail : stored] = torch.maximum(scores[..., -tail:], pooled[..., :tail])
    return merged, raw_tail
