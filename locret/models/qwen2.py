"""Locret for Qwen2 (Qwen2.5): the common path; its q/k/v projections have biases, which the head input
``[Q|K|V]`` includes as the attention does. Layers the config makes sliding (``use_sliding_window``) attend
to their window of the cache's positions (see ``gemma3``)."""

from __future__ import annotations

from transformers import Qwen2Config, Qwen2ForCausalLM
from transformers.models.qwen2 import modeling_qwen2

from .base import LocretAttentionMixin, LocretForCausalLMMixin


class LocretQwen2Config(Qwen2Config):
    """``Qwen2Config`` plus the retaining-head width."""

    model_type = "locret_qwen2"
    retaining_head_size: int = 1024


class LocretQwen2Attention(LocretAttentionMixin, modeling_qwen2.Qwen2Attention):
    eager_attention = staticmethod(modeling_qwen2.eager_attention_forward)


class LocretQwen2ForCausalLM(LocretForCausalLMMixin, Qwen2ForCausalLM):
    config_class = LocretQwen2Config
    locret_attention_class = LocretQwen2Attention
