"""SDPA for a CPU prefill chunk with each KV head shared by its group of query heads.

transformers' ``sdpa`` attention repeats every KV head for its query heads (``repeat_kv``) whenever a mask is
given, because CUDA's fast kernels take grouped KV heads only without one. PyTorch's CPU kernel takes them
with a mask too (``enable_gqa``), computes the same output bit for bit, and skips the copies: SmolLM2's
whole prefills ran 3-5% faster with it (``benchmark.overhead``'s grouped ceiling; benchmark/README.md). The
same call is what transformers makes with ``TRANSFORMERS_SDPA_FORCE_GQA=1``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers.integrations.sdpa_attention import sdpa_attention_forward

__all__ = ["grouped_sdpa_attention", "uses_grouped_sdpa"]


def uses_grouped_sdpa(attn_implementation: str | None, query: torch.Tensor) -> bool:
    """Whether ``grouped_sdpa_attention`` replaces transformers' SDPA: on the CPU, for more than one query."""
    return attn_implementation == "sdpa" and query.device.type == "cpu" and query.shape[-2] > 1


def grouped_sdpa_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """transformers' ``sdpa_attention_forward`` with ``enable_gqa`` in place of repeated KV heads; without a
    mask (a causal first chunk) or with arguments beyond a mask and a scale, transformers' own function."""
    unusual = any(kwargs.get(name) is not None for name in ("softcap", "position_bias", "is_causal"))
    if attention_mask is None or unusual:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    output = F.scaled_dot_product_attention(
        query,
        key,
        value,
        attn_mask=attention_mask,
        dropout_p=dropout,
        scale=scaling,
        enable_gqa=key.shape[1] != query.shape[1],
    )
    return output.transpose(1, 2).contiguous(), None
