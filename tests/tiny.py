"""Tiny randomly initialised Llama / Phi-3 models built in code (no downloads)."""

from __future__ import annotations

import torch
from transformers import LlamaConfig, LlamaForCausalLM, Phi3Config, Phi3ForCausalLM

from locret import LocretLlamaConfig, LocretLlamaForCausalLM, LocretPhi3Config, LocretPhi3ForCausalLM

COMMON = dict(
    vocab_size=97,
    hidden_size=64,
    intermediate_size=96,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=256,
    tie_word_embeddings=False,
)


def llama_kwargs(**overrides) -> dict:
    return {**COMMON, **overrides}


def phi3_kwargs(longrope: bool = True, **overrides) -> dict:
    """Phi-3 with LongRoPE whose original window (32) is short, so tests cross the short/long switch."""
    kwargs = {**COMMON, "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2, "sliding_window": None}
    if longrope:
        half = COMMON["hidden_size"] // COMMON["num_attention_heads"] // 2
        kwargs["original_max_position_embeddings"] = 32
        kwargs["rope_parameters"] = {
            "rope_type": "longrope",
            "rope_theta": 10000.0,
            "short_factor": [1.0 + 0.1 * i for i in range(half)],
            "long_factor": [2.0 + 0.3 * i for i in range(half)],
            "original_max_position_embeddings": 32,
        }
    return {**kwargs, **overrides}


def tiny_pair(arch: str, seed: int = 0, attn: str = "sdpa", **overrides):
    """(locret model, vanilla model with the same backbone weights), float32, eval mode."""
    if arch == "llama":
        kwargs = llama_kwargs(**overrides)
        locret_cls, locret_cfg, vanilla_cls, vanilla_cfg = (
            LocretLlamaForCausalLM,
            LocretLlamaConfig,
            LlamaForCausalLM,
            LlamaConfig,
        )
    else:
        kwargs = phi3_kwargs(**overrides)
        locret_cls, locret_cfg, vanilla_cls, vanilla_cfg = (
            LocretPhi3ForCausalLM,
            LocretPhi3Config,
            Phi3ForCausalLM,
            Phi3Config,
        )
    torch.manual_seed(seed)
    heads = kwargs.pop("retaining_head_size", 16)
    model = locret_cls(locret_cfg(retaining_head_size=heads, **kwargs)).eval()
    model.set_attn_implementation(attn)
    vanilla = vanilla_cls(vanilla_cfg(**kwargs)).eval()
    vanilla.set_attn_implementation(attn)
    missing = vanilla.load_state_dict(model.state_dict(), strict=False)
    assert not missing.missing_keys, missing.missing_keys
    return model, vanilla


def tiny_locret(arch: str = "llama", seed: int = 0, **overrides):
    return tiny_pair(arch, seed, **overrides)[0]
