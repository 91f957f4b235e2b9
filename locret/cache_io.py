"""A ``LocretCache`` as plain tensors and JSON, and the identity of the model that filled it.

A cache only means something to the model (backbone and retaining heads) that computed it, so whatever is
saved carries ``model_identity`` and is refused by ``check_identity`` for any other model.
"""

from __future__ import annotations

import hashlib
import json

import torch

from .adapter import heads_digest, heads_state_dict
from .cache import LocretCache, LocretLayer
from .config import LocretConfig
from .scorers import EntryScorer

# Values sampled per backbone tensor for its digest: enough to tell fine-tunes and other seeds apart while
# hashing a few MB at most, whatever the model's size.
DIGEST_SAMPLES = 4096
LAYER_TENSORS = ("keys", "values", "scores", "raw_tail", "positions")
OPTIONAL_LAYER_TENSORS = ("head_pads",)  # saved where the layer has them (an adaptive allocation)


def cache_state(cache: LocretCache) -> tuple[dict[str, torch.Tensor], list[dict]]:
    """The cache's tensors (``layers.{i}.{keys,values,scores,raw_tail,positions}``, and ``head_pads`` where
    set; contiguous, on the CPU) and one JSON-able dict of counters per layer."""
    tensors: dict[str, torch.Tensor] = {}
    layers = []
    for i, layer in enumerate(cache.layers):
        layers.append(
            {
                "initialized": bool(layer.is_initialized),
                "seen": layer.seen,
                "peak_length": layer.peak_length,
                "protect_remaining": layer.protect_remaining,
            }
        )
        if layer.is_initialized:
            for name in (*LAYER_TENSORS, *OPTIONAL_LAYER_TENSORS):
                if getattr(layer, name) is not None:
                    tensors[f"layers.{i}.{name}"] = getattr(layer, name).detach().contiguous().cpu()
    return tensors, layers


def restore_cache(
    config: LocretConfig,
    tensors: dict[str, torch.Tensor],
    layers: list[dict],
    devices: list[torch.device],
    scorer: EntryScorer | None = None,
) -> LocretCache:
    """Rebuild the cache ``cache_state`` described, layer ``i`` on ``devices[i]``, evicting by ``scorer``
    (default: the retaining heads' own scores)."""
    cache = LocretCache(config, len(layers), scorer=scorer)
    for i, (layer, saved, device) in enumerate(zip(cache.layers, layers, devices, strict=True)):
        layer: LocretLayer
        if saved["initialized"]:
            names = [
                *LAYER_TENSORS,
                *(name for name in OPTIONAL_LAYER_TENSORS if f"layers.{i}.{name}" in tensors),
            ]
            stored = {name: tensors[f"layers.{i}.{name}"].to(device) for name in names}
            layer.lazy_initialization(stored["keys"], stored["values"])
            for name, tensor in stored.items():
                setattr(layer, name, tensor)
        layer.seen = saved["seen"]
        layer.peak_length = saved["peak_length"]
        layer.protect_remaining = saved["protect_remaining"]
    return cache


def encode_state(value, tensors: dict[str, torch.Tensor], prefix: str):
    """A scorer's carried state (``LocretCache.scorer_state``: dicts, tuples, lists, numbers, tensors,
    None) as JSON, its tensors moved to ``tensors`` under ``prefix``-numbered keys; ``decode_state`` inverts
    it exactly (tuples stay tuples, integer keys stay integers), with no pickling."""
    if isinstance(value, torch.Tensor):
        key = f"{prefix}{len(tensors)}"
        tensors[key] = value.detach().contiguous().cpu()
        return {"tensor": key}
    if isinstance(value, dict):
        pairs = [
            [encode_state(k, tensors, prefix), encode_state(v, tensors, prefix)] for k, v in value.items()
        ]
        return {"dict": pairs}
    if isinstance(value, tuple | list):
        return {type(value).__name__: [encode_state(item, tensors, prefix) for item in value]}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise ValueError(f"a scorer's state holds a {type(value).__name__}, which a saved cache cannot hold")


def decode_state(encoded, tensors: dict[str, torch.Tensor], device: torch.device):
    """The value ``encode_state`` encoded, its tensors on ``device``."""
    if not isinstance(encoded, dict):
        return encoded
    ((kind, body),) = encoded.items()
    if kind == "tensor":
        return tensors[body].to(device)
    if kind == "dict":
        return {decode_state(k, tensors, device): decode_state(v, tensors, device) for k, v in body}
    items = [decode_state(item, tensors, device) for item in body]
    return tuple(items) if kind == "tuple" else items


def _backbone_digest(model) -> str:
    """sha256 (16 hex digits) over a strided sample of every backbone tensor (names, shapes, values as float32)."""
    digest = hashlib.sha256()
    for name, tensor in model.named_parameters():
        if "retaining_head" in name:
            continue
        flat = tensor.detach().reshape(-1)
        sample = flat[:: max(1, flat.numel() // DIGEST_SAMPLES)][:DIGEST_SAMPLES]
        digest.update(f"{name}{tuple(tensor.shape)}".encode())
        digest.update(sample.float().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def model_identity(model) -> dict[str, str]:
    """What must match for a saved cache to mean the same thing in ``model``: architecture, the shapes and
    positional settings of its config, its dtype, a digest of its retaining heads and of its backbone.
    ``name_or_path`` is recorded for people to read but not compared (a copy elsewhere is the same model)."""
    config = model.config
    shapes = {
        key: getattr(config, key, None)
        for key in (
            "num_hidden_layers",
            "hidden_size",
            "intermediate_size",
            "num_attention_heads",
            "num_key_value_heads",
            "head_dim",
            "vocab_size",
            "max_position_embeddings",
        )
    }
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None)
    return {
        "architecture": type(model).__name__,
        "shapes": json.dumps(shapes, sort_keys=True),
        "rope": json.dumps(rope, sort_keys=True, default=str),
        "dtype": str(model.dtype),
        "retaining_heads": heads_digest(heads_state_dict(model)),
        "backbone": _backbone_digest(model),
        "name_or_path": str(getattr(config, "name_or_path", "")),
    }


def check_identity(saved: dict[str, str], model, what: str) -> None:
    """Raise a ValueError naming every identity field in which ``model`` differs from ``saved``."""
    current = model_identity(model)
    differences = [
        f"{key} differs (saved {saved.get(key)!r}, this model {value!r})"
        for key, value in current.items()
        if key != "name_or_path" and saved.get(key) != value
    ]
    if differences:
        raise ValueError(
            f"{what} was saved with another model ({saved.get('name_or_path') or 'unnamed'}): "
            + "; ".join(differences)
        )
