"""Tiny randomly initialised models of every registered family, built in code (no downloads).

``TINY`` names each tiny configuration and its family (a key of ``locret.models.LOCRET_CLASSES``); tests
parametrise over ``ARCHS`` (every configuration), so a new family is tested once it has an entry here.
"""

from __future__ import annotations

import torch
from transformers import PreTrainedModel

from locret.models import LOCRET_CLASSES, LocretForCausalLMMixin

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
HEAD_DIM = COMMON["hidden_size"] // COMMON["num_attention_heads"]


def llama_kwargs(**overrides) -> dict:
    return {**COMMON, **overrides}


def llama32_kwargs(**overrides) -> dict:
    """Llama-3.2's recipe: llama3 RoPE scaling (original window 64 here) and tied embeddings."""
    rope = {
        "rope_type": "llama3",
        "rope_theta": 500000.0,
        "factor": 32.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 64,
    }
    return {**COMMON, "tie_word_embeddings": True, "rope_parameters": rope, **overrides}


def phi3_kwargs(longrope: bool = True, **overrides) -> dict:
    """Phi-3 with LongRoPE whose original window (32) is short, so tests cross the short/long switch."""
    kwargs = {**COMMON, "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2, "sliding_window": None}
    if longrope:
        half = HEAD_DIM // 2
        kwargs["original_max_position_embeddings"] = 32
        kwargs["rope_parameters"] = {
            "rope_type": "longrope",
            "rope_theta": 10000.0,
            "short_factor": [1.0 + 0.1 * i for i in range(half)],
            "long_factor": [2.0 + 0.3 * i for i in range(half)],
            "original_max_position_embeddings": 32,
        }
    return {**kwargs, **overrides}


def qwen2_kwargs(**overrides) -> dict:
    """Qwen2.5: biased q/k/v projections (always on in Qwen2), global attention."""
    return {**COMMON, **overrides}


def qwen3_kwargs(**overrides) -> dict:
    """Qwen3: q/k norms; head_dim is explicit in its config (default 128)."""
    return {**COMMON, "head_dim": HEAD_DIM, **overrides}


def mistral_kwargs(**overrides) -> dict:
    """Mistral with a 24-token sliding window (every layer slides), shorter than the tests' prompts."""
    return {**COMMON, "sliding_window": 24, **overrides}


def gemma3_kwargs(**overrides) -> dict:
    """Gemma 3 text: one sliding (window 24) and one global layer, each with its own RoPE (the global one
    linearly scaled, as in Gemma-3-4B), q/k norms, query_pre_attn_scalar != head_dim."""
    return {
        **COMMON,
        "head_dim": HEAD_DIM,
        "query_pre_attn_scalar": 24,
        "sliding_window": 24,
        "layer_types": ["sliding_attention", "full_attention"],
        "rope_parameters": {
            "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
            "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1000000.0},
        },
        **overrides,
    }


# Tiny configuration name -> (family, config kwargs builder).
TINY = {
    "llama": ("llama", llama_kwargs),
    "llama3.2": ("llama", llama32_kwargs),
    "phi3": ("phi3", phi3_kwargs),
    "qwen2": ("qwen2", qwen2_kwargs),
    "qwen3": ("qwen3", qwen3_kwargs),
    "mistral": ("mistral", mistral_kwargs),
    "gemma3_text": ("gemma3_text", gemma3_kwargs),
}
ARCHS = list(TINY)


def vanilla_class(locret_cls: type[LocretForCausalLMMixin]) -> type[PreTrainedModel]:
    """The transformers causal LM a Locret class extends (``LocretQwen3ForCausalLM`` -> ``Qwen3ForCausalLM``)."""
    return next(
        base
        for base in locret_cls.__mro__[1:]
        if issubclass(base, PreTrainedModel) and not issubclass(base, LocretForCausalLMMixin)
    )


def tiny_kwargs(arch: str, **overrides) -> dict:
    return TINY[arch][1](**overrides)


def tiny_pair(arch: str, seed: int = 0, attn: str = "sdpa", **overrides):
    """(locret model, vanilla model with the same backbone weights), float32, eval mode."""
    family, make_kwargs = TINY[arch]
    kwargs = make_kwargs(**overrides)
    locret_cls = LOCRET_CLASSES[family]
    vanilla_cls = vanilla_class(locret_cls)
    torch.manual_seed(seed)
    heads = kwargs.pop("retaining_head_size", 16)
    model = locret_cls(locret_cls.config_class(retaining_head_size=heads, **kwargs)).eval()
    model.set_attn_implementation(attn)
    vanilla = vanilla_cls(vanilla_cls.config_class(**kwargs)).eval()
    vanilla.set_attn_implementation(attn)
    missing = vanilla.load_state_dict(model.state_dict(), strict=False)
    assert not missing.missing_keys, missing.missing_keys
    return model, vanilla


def tiny_locret(arch: str = "llama", seed: int = 0, **overrides):
    return tiny_pair(arch, seed, **overrides)[0]


def random_ids(length: int, batch: int = 1, seed: int = 0) -> torch.Tensor:
    """Token ids ``[batch, length]`` from the tiny vocabulary, past its special ids, reproducible by ``seed``."""
    return torch.randint(3, 97, (batch, length), generator=torch.Generator().manual_seed(seed))


class SentenceEndTokenizer:
    """Stands in for a tokenizer of the tiny vocabulary (97 ids) where a sentence-ending scorer needs one: the
    ids in ``ends`` decode to a full stop after a closing quote (``paragraph``: a blank line), every other id to
    a word and a single line break, which ends no sentence."""

    def __init__(self, ends: set[int], paragraph: int | None = None) -> None:
        self.ends, self.paragraph = ends, paragraph

    def __len__(self) -> int:
        return 97

    def batch_decode(self, ids: list[list[int]]) -> list[str]:
        return [
            ("\n\n" if index == self.paragraph else "end.”") if index in self.ends else f" w{index}\n"
            for [index] in ids
        ]


class LineTokenizer:
    """Stands in for a tokenizer of the tiny vocabulary (97 ids) where a line-reading scorer needs one: the ids in
    ``breaks`` decode to a line break, those in ``stops`` to a word that ends a sentence, every other id to a
    word."""

    def __init__(self, breaks: set[int], stops: frozenset[int] = frozenset()) -> None:
        self.breaks = breaks
        self.stops = stops

    def __len__(self) -> int:
        return 97

    def batch_decode(self, ids: list[list[int]]) -> list[str]:
        return [
            "\n" if index in self.breaks else f" w{index}." if index in self.stops else f" w{index}"
            for [index] in ids
        ]
