"""Locret for Gemma 3 text models (``gemma3_text``, ``Gemma3ForCausalLM``): q/k norms, and sliding-window
layers interleaved with global ones, each kind with its own RoPE base.

Eviction and the sliding window: every layer, sliding or global, keeps the same ``budget`` entries chosen by
its retaining head, and a sliding layer's attention is the model's own sliding mask laid over the cache's
slots: each query sees the newest ``sliding_window`` positions of the retained entries followed by its chunk
(in both position modes the window counts retained entries, not original token distances). With
``budget + chunk_size <= sliding_window`` a sliding layer therefore sees its whole retained cache; with a
larger budget it sees the newest retained entries (the stabilizers first), as the original layer sees the
newest tokens. Nothing is evicted early for a sliding layer, so with a budget above the input length Locret
is exactly the vanilla model.
"""

from __future__ import annotations

from transformers import Gemma3ForCausalLM, Gemma3TextConfig
from transformers.models.gemma3 import modeling_gemma3

from .base import LocretAttentionMixin, LocretForCausalLMMixin


class LocretGemma3Config(Gemma3TextConfig):
    """``Gemma3TextConfig`` plus the retaining-head width."""

    model_type = "locret_gemma3_text"
    retaining_head_size: int = 1024


class LocretGemma3Attention(LocretAttentionMixin, modeling_gemma3.Gemma3Attention):
    eager_attention = staticmethod(modeling_gemma3.eager_attention_forward)
    qk_norm = True


class LocretGemma3ForCausalLM(LocretForCausalLMMixin, Gemma3ForCausalLM):
    config_class = LocretGemma3Config
    locret_attention_class = LocretGemma3Attention

    def rope_layer_type(self, layer_idx: int) -> str:
        return self.config.layer_types[layer_idx]  # sliding and global layers rotate with different bases
