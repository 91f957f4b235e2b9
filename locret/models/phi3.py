"""Locret for Phi-3: a fused ``qkv_proj`` (whose output already is the head input ``[Q|K|V]``), LongRoPE, and
the config's ``sliding_window`` passed to attention as Phi-3 does."""

from __future__ import annotations

import torch
from torch import nn
from transformers import Phi3Config, Phi3ForCausalLM
from transformers.models.phi3 import modeling_phi3

from ..cache import LocretCache
from ..compat import CACHE_KWARG
from .base import LocretAttentionMixin, LocretForCausalLMMixin


class LocretPhi3Config(Phi3Config):
    """``Phi3Config`` plus the retaining-head width."""

    model_type = "locret_phi3"
    retaining_head_size: int = 1024


class LocretPhi3Attention(LocretAttentionMixin, modeling_phi3.Phi3Attention):
    eager_attention = staticmethod(modeling_phi3.eager_attention_forward)

    def projections(self, hidden_states: torch.Tensor):
        features = self.qkv_proj(hidden_states)
        q_end = self.config.num_attention_heads * self.head_dim
        k_end = q_end + self.num_key_value_heads * self.head_dim
        return features[..., :q_end], features[..., q_end:k_end], features[..., k_end:]

    def qkv_linears(self) -> list[nn.Linear]:
        return [self.qkv_proj]

    def attention_kwargs(self) -> dict:
        return {"sliding_window": getattr(self.config, "sliding_window", None)}


class LocretPhi3ForCausalLM(LocretForCausalLMMixin, Phi3ForCausalLM):
    config_class = LocretPhi3Config
    locret_attention_class = LocretPhi3Attention

    def prepare_inputs_for_generation(self, input_ids, **kwargs):
        # Phi-3 drops the cache to recompute it with long RoPE factors when the input crosses 4096 tokens.
        # Locret always rotates with the long factors, and an evicted cache cannot be recomputed: skip that.
        # The cache comes by the name this transformers release uses, passed on as it came (naming the other
        # one too makes transformers 5.24 warn that both are set).
        if isinstance(kwargs.get(CACHE_KWARG), LocretCache):
            return super(Phi3ForCausalLM, self).prepare_inputs_for_generation(input_ids, **kwargs)
        return super().prepare_inputs_for_generation(input_ids, **kwargs)
