"""The retaining-head training objective (docs/design.md, section 3)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

SMOOTHNESS_WEIGHT = 0.0025


def top_rank_weights(label: torch.Tensor, top_fraction: float, top_weight: float) -> torch.Tensor:
    """Per-entry loss weights for one layer's ``[Hkv, T]`` labels: ``top_weight`` for each head's
    ``ceil(top_fraction * T)`` highest-labelled tokens, 1 elsewhere.

    Eviction only asks whether an entry ranks above the budget's cut, and the entries a reader needs are the
    few with the highest labels; an unweighted regression spends most of its capacity on the many low ones.
    """
    count = math.ceil(top_fraction * label.shape[-1])
    weights = torch.ones_like(label)
    if count > 0 and top_weight != 1.0:
        top = label.topk(count, dim=-1).indices
        weights.scatter_(-1, top, top_weight)
    return weights


def share_across_layers(labels: torch.Tensor, weight: float) -> torch.Tensor:
    """Blend each layer's ``[L, Hkv, T]`` labels toward the token's importance in the layer that needs it most.

    Each (layer, KV head) row is standardised over tokens (the logits' scales differ by layer), the shared
    score of a token is its largest standardised label in any layer and head (standardised in turn), and
    the target is ``(1 - weight) * own + weight * shared`` in the row's own mean and spread (eviction ranks
    entries within one row, so only the order inside a row changes). Why: a token that a few retrieval
    layers need, such as a fact asked for later, is cheap to lose in the other layers by their own labels,
    yet the answer can depend on those layers keeping it too. ``weight`` 0 returns the labels unchanged.
    """
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"need 0 <= shared-label weight <= 1, got {weight}")
    if weight == 0.0 or labels.shape[-1] < 2:
        return labels
    mean, spread = labels.mean(dim=-1, keepdim=True), labels.std(dim=-1, keepdim=True)
    standard = (labels - mean) / spread.clamp_min(1e-6)
    shared = _standardise(standard.amax(dim=(0, 1)))  # [T]
    return mean + spread * ((1.0 - weight) * standard + weight * shared)


def standardise_rows(labels: torch.Tensor) -> torch.Tensor:
    """Each (layer, KV head) row of ``[L, Hkv, T]`` labels at zero mean and unit spread over its tokens.

    Eviction only compares entries of one row, so this keeps everything it uses, and it puts labels of
    different kinds (CIS logits, attention log-probabilities) and of different examples on one scale, in
    the range where SmoothL1 (beta 1) is quadratic.
    """
    if labels.shape[-1] < 2:
        return labels - labels
    return _standardise(labels)


def _standardise(values: torch.Tensor) -> torch.Tensor:
    """Zero mean, unit spread along the last (token) dimension."""
    centred = values - values.mean(dim=-1, keepdim=True)
    return centred / centred.std(dim=-1, keepdim=True).clamp_min(1e-6)


def retaining_loss(
    scores: list[torch.Tensor],
    labels: torch.Tensor,
    smoothness: float = SMOOTHNESS_WEIGHT,
    top_fraction: float = 0.0,
    top_weight: float = 1.0,
    rank_weight: float = 0.0,
    rank_over_heads: bool = False,
) -> torch.Tensor:
    """Sum over layers of ``SmoothL1(pred, label)`` (beta 1, mean over heads and tokens) plus
    ``smoothness * mean((pred[t] - pred[t+1])^2)``.

    ``scores``: one ``[T, Hkv]`` prediction per layer; ``labels``: ``[L, Hkv, T]``. The smoothness term
    stops the heads from fitting the spiky per-token labels with equally spiky scores, which evict
    isolated tokens out of otherwise kept spans. With ``top_fraction > 0`` the SmoothL1 term is a weighted
    mean (``top_rank_weights``); the defaults are the paper's unweighted loss. ``rank_weight > 0`` adds
    ``rank_weight * listwise_loss`` per layer: eviction only needs each head's order of the tokens
    (``rank_over_heads``: one order over all the layer's KV heads together, which is what
    ``LocretConfig(budget_allocation="adaptive")`` ranks).
    """
    if len(scores) != labels.shape[0]:
        raise ValueError(f"{len(scores)} layers of scores for {labels.shape[0]} layers of labels")
    if not 0.0 <= top_fraction <= 1.0 or top_weight <= 0.0:
        raise ValueError(f"need 0 <= top_fraction <= 1 and top_weight > 0, got {top_fraction}, {top_weight}")
    total = labels.new_zeros(())
    for pred, label in zip(scores, labels, strict=True):
        pred = pred.float().transpose(0, 1)  # [Hkv, T], like the labels
        errors = F.smooth_l1_loss(pred, label, beta=1.0, reduction="none")
        weights = top_rank_weights(label, top_fraction, top_weight)
        total = total + (errors * weights).sum() / weights.sum()
        if pred.shape[-1] > 1:
            total = total + smoothness * (pred[:, 1:] - pred[:, :-1]).pow(2).mean()
        if rank_weight > 0:
            rows = (pred.reshape(1, -1), label.reshape(1, -1)) if rank_over_heads else (pred, label)
            total = total + rank_weight * listwise_loss(*rows)
    return total


def listwise_loss(pred: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """ListNet's cross-entropy per head row ``[Hkv, T]``: the labels' softmax over the tokens as the target
    distribution, the scores' log-softmax as the prediction; mean over heads. Invariant to shifting either
    row, so only the order and relative gaps of the scores matter."""
    target = F.softmax(label.float(), dim=-1)
    return -(target * F.log_softmax(pred, dim=-1)).sum(dim=-1).mean()
