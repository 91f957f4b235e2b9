"""The eviction step: per KV head, keep the top-scored entries in their original order.

Pure tensor code with static shapes (no ``.item()``, no host round trip), so it runs wherever the cache lives
and can be captured or fused. It is the reference for any faster kernel.
"""

from __future__ import annotations

import torch


def protect_newest(scores: torch.Tensor, n_protect: int | torch.Tensor) -> torch.Tensor:
    """Return ``scores`` ``[B, H, S]`` ranked for eviction (a copy): NaN lowered to -inf, so a broken score
    is the first to go and never outranks anything (sorts put NaN above +inf), then the newest
    ``n_protect`` entries raised to +inf (a tensor broadcastable to ``[B, H]``: a count per row)."""
    protected = torch.where(torch.isnan(scores), float("-inf"), scores)
    if isinstance(n_protect, torch.Tensor):
        length = scores.shape[-1]
        first_protected = length - n_protect.expand(scores.shape[:-1])[..., None]
        return protected.masked_fill(
            torch.arange(length, device=scores.device) >= first_protected, float("inf")
        )
    if n_protect > 0:
        protected[..., -n_protect:] = float("inf")
    return protected


def kept_indices(scores: torch.Tensor, keep: int, n_protect: int = 0) -> torch.Tensor:
    """Indices ``[B, H, keep]`` of the entries to keep, ascending (original order).

    ``keep`` must not exceed the cache length; the newest ``n_protect`` entries are always kept, and a NaN
    score counts as the lowest. Among equal scores the older entry wins, exactly as a stable descending sort
    would rank them (``topk`` alone leaves ties to the backend, so CPU and CUDA could keep different entries),
    which makes every backend and kernel agree exactly.

    Why not that sort: the ``keep``-th largest score (``topk``'s values only, ties irrelevant) is a threshold;
    everything above it and the oldest entries equal to it are kept, and a cumulative count places each kept
    index in its slot. Static shapes, no host round trip, and on CPU about 3x faster than two sorts for 1536
    entries (budget 1024 plus a 512-token chunk).
    """
    kept = top_mask(protect_newest(scores, n_protect), keep)
    # Slot ``keep`` collects every dropped entry and is cut off.
    slots = torch.where(kept, kept.cumsum(dim=-1) - 1, keep)
    return _scatter_positions(slots, keep)


def top_mask(ranked: torch.Tensor, keep: int | torch.Tensor) -> torch.Tensor:
    """True for the top ``keep`` of ``ranked`` ``[..., S]`` along the last axis, ties going to the older
    (lower-index) entry: everything above the ``keep``-th largest value, then the oldest equal to it.
    ``keep`` may be a tensor broadcastable to ``ranked.shape[:-1]`` (a count per row, each >= 1)."""
    if isinstance(keep, torch.Tensor):
        keep = keep.expand(ranked.shape[:-1])[..., None]
        threshold = torch.topk(ranked, int(keep.max()), dim=-1).values.gather(-1, keep - 1)
    else:
        threshold = torch.topk(ranked, keep, dim=-1, sorted=False).values.amin(dim=-1, keepdim=True)
    above = ranked > threshold
    tied = ranked == threshold
    missing = keep - above.sum(dim=-1, keepdim=True)
    return above | (tied & (tied.cumsum(dim=-1) <= missing))


def _scatter_positions(slots: torch.Tensor, keep: int) -> torch.Tensor:
    """Indices ``[..., keep]``: entry ``i`` at ``slots[..., i]`` (slot ``keep`` is cut off; unfilled slots 0)."""
    positions = torch.arange(slots.shape[-1], device=slots.device).expand_as(slots)
    indices = torch.zeros(*slots.shape[:-1], keep + 1, dtype=torch.long, device=slots.device)
    return indices.scatter_(-1, slots, positions)[..., :keep]


def adaptive_kept(
    scores: torch.Tensor,
    held: torch.Tensor | None,
    keep: int,
    n_protect: int,
    max_per_head: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``LocretConfig.budget_allocation="adaptive"``: the top ``keep x H`` entries of ``scores`` ``[B, H, S]``
    over all ``H`` heads of a row together (each head's newest ``n_protect`` forced in, at most
    ``max_per_head`` per head), as indices ``[B, H, L]`` with ``L`` the most any head keeps, and each head's
    left pad slots ``[B, H]``: head ``h`` keeps its entries in order in the last ``L - pads[h]`` slots (the
    pad slots' indices are 0, to be masked). ``held`` ``[B, H, S]``: False where a slot is already a pad.

    ``L`` is read back to size the result (one host sync per eviction)."""
    ranked = protect_newest(scores, n_protect)
    if held is not None:
        ranked = ranked.masked_fill(~held, float("-inf"))
    if max_per_head is not None and max_per_head < ranked.shape[-1]:
        ranked = ranked.masked_fill(~top_mask(ranked, max_per_head), float("-inf"))
    total = min(keep * ranked.shape[1], ranked.shape[1] * ranked.shape[2])
    chosen = top_mask(ranked.flatten(1), total).view_as(ranked)
    if held is not None:
        chosen &= held  # fewer held entries than ``total``: the pads that filled it stay out
    return left_padded(chosen)


def profile_kept(
    scores: torch.Tensor, held: torch.Tensor | None, counts: torch.Tensor, n_protect: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``LocretConfig.budget_allocation="profile"``: the top ``counts[h]`` entries of each KV head ``h`` of
    ``scores`` ``[B, H, S]`` (its newest ``min(n_protect, counts[h])`` forced in, ties to the older entry, NaN
    lowest), as ``adaptive_kept`` returns them: indices ``[B, H, L]`` behind each head's left pads ``[B, H]``.
    ``held`` ``[B, H, S]``: False where a slot is already a pad."""
    counts = counts.to(scores.device).clamp(max=scores.shape[-1])
    ranked = protect_newest(scores, counts.clamp(max=n_protect))
    if held is not None:
        ranked = ranked.masked_fill(~held, float("-inf"))
    chosen = top_mask(ranked, counts)
    if held is not None:
        chosen &= held
    return left_padded(chosen)


def left_padded(chosen: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``True`` entries of ``chosen`` ``[B, H, S]`` as indices ``[B, H, L]`` (``L``: the most any head
    keeps; read back, one host sync), each head's in order in its last slots behind ``pads`` ``[B, H]`` left
    pad slots (index 0, to be masked)."""
    counts = chosen.sum(dim=-1)
    length = int(counts.max())
    pads = length - counts
    slots = torch.where(chosen, pads[..., None] + chosen.cumsum(dim=-1) - 1, length)
    return _scatter_positions(slots, length), pads


def torch_evict(
    keys: torch.Tensor, values: torch.Tensor, scores: torch.Tensor, keep: int, n_protect: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One layer's eviction: the kept keys, values, scores and their indices (the reference for
    :func:`locret.eviction_triton.triton_evict`, which has the same contract)."""
    indices = kept_indices(scores, keep, n_protect)
    return (
        gather_entries(keys, indices),
        gather_entries(values, indices),
        gather_entries(scores, indices),
        indices,
    )


def gather_entries(tensor: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """Select ``indices`` ``[B, H, K]`` along the sequence axis (dim 2) of ``[B, H, S]`` or ``[B, H, S, D]``.

    Keys and values are selected as whole rows of a flat ``[B*H*S, D]`` view (``index_select``): on CPU about
    9x faster than ``gather`` with an index expanded over ``D``, which reads one index per element."""
    if tensor.dim() == 3:
        return tensor.gather(2, indices)
    return gather_rows(tensor, flat_rows(indices, tensor.shape[2]))


def flat_rows(indices: torch.Tensor, length: int) -> torch.Tensor:
    """``indices`` ``[..., B, H, K]`` into a ``[B, H, length, D]`` tensor as row numbers of its flat
    ``[B*H*length, D]`` view, ``[..., B*H*K]``: one computation for every layer evicted with one ranking."""
    batch, heads, _ = indices.shape[-3:]
    offsets = torch.arange(0, batch * heads * length, length, device=indices.device).view(batch, heads, 1)
    return (indices + offsets).flatten(-3)


def gather_rows(tensor: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """The entries of ``tensor`` ``[B, H, S, D]`` at ``flat_rows`` ``rows`` ``[B*H*K]``, as ``[B, H, K, D]``."""
    batch, heads, _, dim = tensor.shape
    return tensor.reshape(-1, dim).index_select(0, rows).view(batch, heads, -1, dim)
