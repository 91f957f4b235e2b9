"""Locret for the Llama family: Llama-3.x (3.1, 3.2 with its llama3 RoPE scaling and tied embeddings) and
Llama-architecture models such as SmolLM2. Everything is the common path of ``base``."""

from __future__ import annotations

from transformers import LlamaConfig, LlamaForCausalLM
from transformers.models.llama import modeling_llama

from .base import LocretAttentionMixin, LocretForCausalLMMixin


class LocretLlamaConfig(LlamaConfig):
    """``LlamaConfig`` plus the retaining-head width."""

    model_type = "locret_llama"
    retaining_head_size: int = 1024


class LocretLlamaAttention(LocretAttentionMixin, modeling_llama.LlamaAttention):
    eager_attention = staticmethod(modeling_llama.eager_attention_forward)


class LocretLlamaForCausalLM(LocretForCausalLMMixin, LlamaForCausalLM):
    config_class = LocretLlamaConfig
    locret_attention_class = LocretLlamaAttention
