"""Whole-passage selection: keep or drop a context's lines together, never pieces of them.

Why: on ``multidoc_qa`` the heads' scattered picks of older text make SmolLM2 answer fewer questions than no
documents at all, while whole distractor passages cost the full cache little
(``benchmark/results/natural_val_smollm2/recency_share/``). A line (a ``multidoc_qa`` document, a line of a
book) is the unit a reader can use; this ranks lines by their tokens' mean score.
"""

from __future__ import annotations

import torch

from locret.scorers.segments import N_SINKS


def passage_index(context_ids: torch.Tensor, line_ends: torch.Tensor, max_passage: int) -> torch.Tensor:
    """Each token's passage number ``[n]`` for ``context_ids`` ``[n]``: a passage ends with a line-break token
    (``line_ends``, from ``locret.scorers.lines.line_end_tokens``) or after ``max_passage`` tokens (so that no
    passage outgrows a budget)."""
    if max_passage < 1:
        raise ValueError(f"max_passage must be >= 1, got {max_passage}")
    ends = line_ends.to(context_ids.device)[context_ids].tolist()
    index, passage, length = [], 0, 0
    for closing in ends:
        index.append(passage)
        length += 1
        if closing or length >= max_passage:
            passage, length = passage + 1, 0
    return torch.tensor(index, dtype=torch.long, device=context_ids.device)


def passage_keep(token_score: torch.Tensor, passages: torch.Tensor, budget: int, recent: int) -> torch.Tensor:
    """Which of ``n`` context tokens stay ``[n]`` bool: the ``N_SINKS`` first, the ``recent`` newest, then
    whole passages (``passages`` ``[n]``, from ``passage_index``) in order of their tokens' mean
    ``token_score`` ``[n]`` while they fit in ``budget`` (a passage that does not fit is skipped for a
    smaller one below it). A passage partly inside the newest tokens costs only its older part."""
    n = token_score.shape[0]
    if not 0 <= recent < budget:
        raise ValueError(f"recent must satisfy 0 <= recent < budget ({budget}), got {recent}")
    keep = torch.zeros(n, dtype=torch.bool, device=token_score.device)
    if budget >= n:
        return keep.fill_(True)
    keep[:N_SINKS] = True
    if recent:
        keep[n - recent :] = True
    count = passages.max().item() + 1
    totals = torch.zeros(count, device=token_score.device).index_add_(0, passages, token_score.float())
    sizes = torch.bincount(passages, minlength=count)
    missing = torch.bincount(passages[~keep], minlength=count)  # each passage's tokens not yet kept
    room = budget - int(keep.sum())
    for passage in (totals / sizes).argsort(descending=True).tolist():
        cost = int(missing[passage])
        if 0 < cost <= room:
            keep[passages == passage] = True
            room -= cost
    return keep
