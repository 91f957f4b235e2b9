"""Locret causal-LM classes by architecture, and their registration with the transformers Auto classes."""

from __future__ import annotations

from transformers import AutoConfig, AutoModelForCausalLM

from .base import LocretAttentionMixin, LocretForCausalLMMixin
from .gemma3 import LocretGemma3ForCausalLM
from .llama import LocretLlamaConfig, LocretLlamaForCausalLM
from .mistral import LocretMistralForCausalLM
from .phi3 import LocretPhi3Config, LocretPhi3ForCausalLM
from .qwen2 import LocretQwen2ForCausalLM
from .qwen3 import LocretQwen3ForCausalLM

# Base model_type -> Locret causal-LM class. Adding an architecture is one file and one entry here; every list
# of supported families (error messages, the profiler's presets, the tests' matrix) derives from it.
LOCRET_CLASSES: dict[str, type[LocretForCausalLMMixin]] = {
    "llama": LocretLlamaForCausalLM,
    "phi3": LocretPhi3ForCausalLM,
    "qwen2": LocretQwen2ForCausalLM,
    "qwen3": LocretQwen3ForCausalLM,
    "mistral": LocretMistralForCausalLM,
    "gemma3_text": LocretGemma3ForCausalLM,
}

# The model_type values of the Locret configs (``locret_llama``...): a checkpoint with one has heads of its own.
LOCRET_MODEL_TYPES = frozenset(cls.config_class.model_type for cls in LOCRET_CLASSES.values())


def locret_class_for(model_type: str) -> type[LocretForCausalLMMixin]:
    """The Locret class for a base (or Locret) ``model_type``; a ValueError names the supported ones."""
    base = model_type.removeprefix("locret_")
    if base not in LOCRET_CLASSES:
        raise ValueError(
            f"unsupported architecture {model_type!r}: Locret supports {sorted(LOCRET_CLASSES)} "
            "(a decoder-only text model of one of these families)"
        )
    return LOCRET_CLASSES[base]


def register_auto_classes() -> None:
    for cls in LOCRET_CLASSES.values():
        AutoConfig.register(cls.config_class.model_type, cls.config_class, exist_ok=True)
        AutoModelForCausalLM.register(cls.config_class, cls, exist_ok=True)


__all__ = [
    "LOCRET_CLASSES",
    "LOCRET_MODEL_TYPES",
    "LocretAttentionMixin",
    "LocretForCausalLMMixin",
    "LocretLlamaConfig",
    "LocretLlamaForCausalLM",
    "LocretPhi3Config",
    "LocretPhi3ForCausalLM",
    "locret_class_for",
    "register_auto_classes",
]
