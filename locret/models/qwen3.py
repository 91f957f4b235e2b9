"""Locret for Qwen3: per-head RMS norms on queries and keys. The cache holds each key after its norm and
before RoPE (what the attention uses); the retaining head reads the raw projections (see ``base``)."""

from __future__ import annotations

from transformers import Qwen3Config, Qwen3ForCausalLM
from transformers.models.qwen3 import modeling_qwen3

from .base import LocretAttentionMixin, LocretForCausalLMMixin


class LocretQwen3Config(Qwen3Config):
    """``Qwen3Config`` plus the retaining-head width."""

    model_type = "locret_qwen3"
    retaining_head_size: int = 1024


class LocretQwen3Attention(LocretAttentionMixin, modeling_qwen3.Qwen3Attention):
    eager_attention = staticmethod(modeling_qwen3.eager_attention_forward)
    qk_norm = True


class LocretQwen3ForCausalLM(LocretForCausalLMMixin, Qwen3ForCausalLM):
    config_class = LocretQwen3Config
    locret_attention_class = LocretQwen3Attention
