"""Retaining heads as an adapter: a small safetensors file plus a JSON config, beside an untouched base model.

Loading is strict: the saved shape must equal the model's, tensor by tensor, or a ValueError names both.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .heads import HeadShape

HEADS_WEIGHTS_NAME = "retaining_heads.safetensors"
HEADS_CONFIG_NAME = "locret_heads_config.json"
ADAPTER_FORMAT_VERSION = 1


def heads_state_dict(model) -> dict[str, torch.Tensor]:
    """``layers.{i}.fc1.weight`` / ``layers.{i}.fc2.weight`` for every layer of a Locret model."""
    return {
        f"layers.{i}.{name}": tensor
        for i, head in enumerate(model.retaining_heads)
        for name, tensor in head.state_dict().items()
    }


def heads_digest(state: dict[str, torch.Tensor]) -> str:
    """sha256 (16 hex digits) of a heads state dict: tells runs apart whose ``--heads`` looked the same (no
    path, or a path whose file was replaced, e.g. new heads shipped for a model)."""
    digest = hashlib.sha256()
    for key, tensor in sorted(state.items()):
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().flatten().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def save_heads(model, directory: str | os.PathLike, metadata: dict | None = None) -> Path:
    """Write the heads and their shape (and optional training metadata) to ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {key: tensor.detach().contiguous().cpu() for key, tensor in heads_state_dict(model).items()}
    save_file(state, directory / HEADS_WEIGHTS_NAME, metadata={"format": "pt"})
    config = {
        "format_version": ADAPTER_FORMAT_VERSION,
        "shape": model.head_shape.to_dict(),
        **(metadata or {}),
    }
    (directory / HEADS_CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
    return directory


def _adapter_files(path: str | os.PathLike) -> tuple[Path, Path]:
    path = Path(path)
    directory = path if path.is_dir() else path.parent
    weights, config_file = directory / HEADS_WEIGHTS_NAME, directory / HEADS_CONFIG_NAME
    for required in (weights, config_file):
        if not required.is_file():
            raise FileNotFoundError(f"not a Locret heads adapter: {required} is missing")
    return weights, config_file


def read_heads_config(path: str | os.PathLike) -> dict:
    """An adapter's JSON config: its shape plus whatever training metadata was saved with it."""
    return json.loads(_adapter_files(path)[1].read_text())


def read_heads_shape(path: str | os.PathLike) -> HeadShape:
    """An adapter's head shape, from its config alone (the weights are not read)."""
    return HeadShape(**read_heads_config(path)["shape"])


def read_heads(path: str | os.PathLike) -> tuple[HeadShape, dict[str, torch.Tensor]]:
    """Read an adapter directory (or its safetensors file) without touching any model."""
    weights, _ = _adapter_files(path)
    return read_heads_shape(path), load_file(weights)


def check_shape(expected: HeadShape, found: HeadShape, what: str) -> None:
    if expected != found:
        raise ValueError(
            f"{what} do not fit this model: the model needs heads of shape {expected}, got {found}"
        )


def load_heads_into(
    model, shape: HeadShape, state: dict[str, torch.Tensor], what: str = "retaining heads"
) -> None:
    """Copy ``state`` into the model's heads after checking shapes; no key may be missing or left over."""
    check_shape(model.head_shape, shape, what)
    expected = heads_state_dict(model)
    missing, unexpected = sorted(expected.keys() - state.keys()), sorted(state.keys() - expected.keys())
    if missing or unexpected:
        raise ValueError(f"{what}: missing tensors {missing[:4]}..., unexpected tensors {unexpected[:4]}...")
    for key, target in expected.items():
        if tuple(state[key].shape) != tuple(target.shape):
            raise ValueError(
                f"{what}: {key} has shape {tuple(state[key].shape)}, the model needs {tuple(target.shape)}"
            )
    with torch.no_grad():
        for key, target in expected.items():
            target.copy_(state[key])


def load_heads(model, path: str | os.PathLike) -> None:
    """Load an adapter saved by ``save_heads`` into a Locret model."""
    shape, state = read_heads(path)
    load_heads_into(model, shape, state, what=f"retaining heads at {path}")
