"""Locret for Mistral: the common path, with the config's ``sliding_window`` (when set, every layer slides)
passed to attention as Mistral does; such layers attend to their window of the cache's positions (see
``gemma3``)."""

from __future__ import annotations

from transformers import MistralConfig, MistralForCausalLM
from transformers.models.mistral import modeling_mistral

from .base import LocretAttentionMixin, LocretForCausalLMMixin


class LocretMistralConfig(MistralConfig):
    """``MistralConfig`` plus the retaining-head width."""

    model_type = "locret_mistral"
    retaining_head_size: int = 1024


class LocretMistralAttention(LocretAttentionMixin, modeling_mistral.MistralAttention):
    eager_attention = staticmethod(modeling_mistral.eager_attention_forward)

    def attention_kwargs(self) -> dict:
        return {"sliding_window": getattr(self.config, "sliding_window", None)}


class LocretMistralForCausalLM(LocretForCausalLMMixin, MistralForCausalLM):
    config_class = LocretMistralConfig
    locret_attention_class = LocretMistralAttention
