"""Retaining heads as an adapter: a small safetensors file plus a JSON config, beside an untouched base model.

The JSON (``locret_heads_config.json``, format version 3) says, like a PEFT adapter config, how to use the
heads and where they came from::

    {"format_version": 3, "locret_version": "0.5.0", "base_model": "HuggingFaceTB/SmolLM2-135M-Instruct",
     "shape": {...}, "inference": {"budget": 1024, ...}, "scorer": {"name": "lines", "settings": {...}},
     "training": {...}}

``shape`` fixes which models the heads fit, ``inference`` holds the ``LocretConfig`` settings the heads were
validated with (``locret.generate`` uses them when given no config), ``scorer`` the scorer they were
validated with (``locret.scorers.SCORERS`` name and settings; every cache made without an explicit scorer
uses it; null: the retaining heads' own scores), ``training`` is free-form provenance. Version-1 files (shape
plus training metadata at the top level) and version-2 files (no ``scorer``) are still read.

Loading is strict: the saved shape must equal the model's, tensor by tensor, or a ValueError names both;
a malformed config or non-finite weights are a ValueError naming the file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .config import LocretConfig
from .heads import HeadShape
from .scorers import ScorerChoice
from .version import __version__

HEADS_WEIGHTS_NAME = "retaining_heads.safetensors"
HEADS_CONFIG_NAME = "locret_heads_config.json"
ADAPTER_FORMAT_VERSION = 3
READABLE_FORMAT_VERSIONS = (1, 2, 3)
# LocretConfig fields that change what is kept, so the heads' recommended settings record them; the kernel
# only changes speed (both kernels keep the same entries) and depends on the user's hardware.
INFERENCE_FIELDS = tuple(f.name for f in dataclasses.fields(LocretConfig) if f.name != "eviction_kernel")


@dataclass(frozen=True)
class HeadsConfig:
    """What an adapter's JSON says: the heads' shape, their recommended inference settings and scorer (None
    when not recorded), the base model's name, the locret version that wrote them and training provenance."""

    shape: HeadShape
    inference: LocretConfig | None = None
    scorer: ScorerChoice | None = None
    base_model: str | None = None
    locret_version: str | None = None
    training: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "format_version": ADAPTER_FORMAT_VERSION,
            "locret_version": self.locret_version,
            "base_model": self.base_model,
            "shape": self.shape.to_dict(),
            "inference": inference_dict(self.inference),
            "scorer": None if self.scorer is None else self.scorer.to_dict(),
            "training": self.training,
        }


def inference_dict(config: LocretConfig | None) -> dict | None:
    """The settings an adapter records (every field that changes which entries are kept)."""
    return None if config is None else {name: getattr(config, name) for name in INFERENCE_FIELDS}


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


def save_heads(
    model,
    directory: str | os.PathLike,
    metadata: dict | None = None,
    *,
    inference: LocretConfig | None = None,
    scorer: ScorerChoice | None = None,
    base_model: str | None = None,
) -> Path:
    """Write the heads, their shape, recommended inference settings and scorer, and provenance to
    ``directory``.

    Args:
        metadata: training provenance, stored under ``"training"`` (it cannot touch the other keys).
        inference: the settings the heads were validated with (default: the model's
            ``locret_inference_config``, set by ``from_pretrained``/``load_heads``; None records none).
        scorer: the scorer they were validated with (``ScorerChoice.of(LineScorer())``...; default: the
            model's ``locret_scorer_choice``; None: the heads' own scores). It must serve ``inference``.
        base_model: the base model's name (default: the model config's ``name_or_path``).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {key: tensor.detach().contiguous().cpu() for key, tensor in heads_state_dict(model).items()}
    save_file(state, directory / HEADS_WEIGHTS_NAME, metadata={"format": "pt"})
    if inference is None:
        inference = getattr(model, "locret_inference_config", None)
    if scorer is None:
        scorer = getattr(model, "locret_scorer_choice", None)
    if base_model is None:
        base_model = getattr(getattr(model, "config", None), "name_or_path", None) or None
    config = HeadsConfig(
        shape=model.head_shape,
        inference=inference,
        scorer=scorer,
        base_model=None if base_model is None else str(base_model),
        locret_version=__version__,
        training=dict(metadata or {}),
    )
    write_heads_config(directory, config)
    return directory


def write_heads_config(directory: str | os.PathLike, config: HeadsConfig) -> None:
    """Write ``config`` as the adapter's JSON (``save_heads``; ``locret.train.convert recommend``)."""
    check_recommendation(config.inference, config.scorer, "the heads' recommended settings")
    (Path(directory) / HEADS_CONFIG_NAME).write_text(json.dumps(config.to_dict(), indent=2) + "\n")


def adapter_files(path: str | os.PathLike) -> tuple[Path, Path]:
    """The weights and config of the adapter at ``path``: its directory, or the path of either file in it.

    Any other path is an error that names it (never a neighbouring adapter)."""
    path = Path(path)
    if path.is_dir():
        directory = path
    elif path.is_file() and path.name in (HEADS_WEIGHTS_NAME, HEADS_CONFIG_NAME):
        directory = path.parent
    elif path.exists():
        raise ValueError(
            f"{path} is not a Locret heads adapter: give its directory or its {HEADS_WEIGHTS_NAME}"
        )
    else:
        raise FileNotFoundError(f"no Locret heads adapter at {path}: the path does not exist")
    weights, config_file = directory / HEADS_WEIGHTS_NAME, directory / HEADS_CONFIG_NAME
    for required in (weights, config_file):
        if not required.is_file():
            raise FileNotFoundError(f"not a Locret heads adapter: {required} is missing")
    return weights, config_file


def parse_heads_config(raw: dict, source: str | os.PathLike) -> HeadsConfig:
    """Validate an adapter config (format 1, 2 or 3); every problem is a ValueError naming ``source``."""
    if not isinstance(raw, dict):
        raise ValueError(f"{source}: expected a JSON object, got {type(raw).__name__}")
    version = raw.get("format_version")
    if version not in READABLE_FORMAT_VERSIONS:
        raise ValueError(
            f"{source}: unsupported format_version {version!r}; this locret ({__version__}) reads "
            f"{', '.join(map(str, READABLE_FORMAT_VERSIONS))} (a newer locret may have written it)"
        )
    shape = raw.get("shape")
    if not isinstance(shape, dict):
        raise ValueError(f"{source}: 'shape' is missing or not an object")
    expected = {f.name for f in dataclasses.fields(HeadShape)}
    if shape.keys() != expected:
        raise ValueError(
            f"{source}: 'shape' needs exactly the keys {sorted(expected)}; missing "
            f"{sorted(expected - shape.keys())}, unknown {sorted(shape.keys() - expected)}"
        )
    if version == 1:  # shape plus free-form training metadata at the top level
        training = {k: v for k, v in raw.items() if k not in ("format_version", "shape")}
        base_model = training.get("base_model")
        return HeadsConfig(HeadShape(**shape), None, None, base_model, None, training)
    unknown = raw.keys() - {
        "format_version",
        "locret_version",
        "base_model",
        "shape",
        "inference",
        "training",
        *(("scorer",) if version >= 3 else ()),
    }
    if unknown:
        raise ValueError(f"{source}: unknown keys {sorted(unknown)}")
    training = raw.get("training") or {}
    if not isinstance(training, dict):
        raise ValueError(f"{source}: 'training' must be an object, got {type(training).__name__}")
    inference, scorer = parse_recommendation(raw.get("inference"), raw.get("scorer"), source)
    return HeadsConfig(
        HeadShape(**shape), inference, scorer, raw.get("base_model"), raw.get("locret_version"), training
    )


def parse_recommendation(
    inference_block, scorer_block, source: str | os.PathLike
) -> tuple[LocretConfig | None, ScorerChoice | None]:
    """Recommended settings and scorer from their JSON blocks (an adapter's, or a saved Locret checkpoint's
    ``config.json``), the scorer checked against the settings; a ValueError names ``source``."""
    inference = parse_inference(inference_block, source)
    scorer = ScorerChoice.from_dict(scorer_block, source)
    check_recommendation(inference, scorer, str(source))
    return inference, scorer


def check_recommendation(inference: LocretConfig | None, scorer: ScorerChoice | None, what: str) -> None:
    """A recommended scorer must serve the recommended settings (the lines scorer needs
    ``score_pooling=1``...); a ValueError names ``what``."""
    if inference is not None and scorer is not None:
        try:
            scorer.build().check_config(inference)
        except ValueError as err:
            raise ValueError(
                f"{what}: the scorer {scorer.name!r} cannot run the 'inference' settings: {err}"
            ) from None


def parse_inference(block, source: str | os.PathLike) -> LocretConfig | None:
    if block is None:
        return None
    if not isinstance(block, dict):
        raise ValueError(f"{source}: 'inference' must be an object of LocretConfig fields or null")
    known = {f.name for f in dataclasses.fields(LocretConfig)}
    if block.keys() - known:
        raise ValueError(
            f"{source}: unknown 'inference' settings {sorted(block.keys() - known)} (known: {sorted(known)})"
        )
    try:
        return LocretConfig(**block)
    except ValueError as err:
        raise ValueError(f"{source}: invalid 'inference' settings: {err}") from None


def read_heads_config(path: str | os.PathLike) -> HeadsConfig:
    """An adapter's parsed JSON config (the weights are not read)."""
    config_file = adapter_files(path)[1]
    try:
        raw = json.loads(config_file.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{config_file}: not valid JSON ({err})") from None
    return parse_heads_config(raw, config_file)


def read_heads_shape(path: str | os.PathLike) -> HeadShape:
    """An adapter's head shape, from its config alone (the weights are not read)."""
    return read_heads_config(path).shape


def read_heads(path: str | os.PathLike) -> tuple[HeadShape, dict[str, torch.Tensor]]:
    """Read an adapter directory (or its safetensors file) without touching any model.

    Weights that are not finite (NaN or inf, e.g. corrupted bytes) are refused: they would score every
    entry NaN and evict at random without a word."""
    weights, _ = adapter_files(path)
    shape = read_heads_shape(path)
    state = load_file(weights)
    for key, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ValueError(
                f"{weights}: tensor {key} holds non-finite values (NaN or inf); the file is corrupt "
                "or the training diverged"
            )
    return shape, state


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
    """Load an adapter saved by ``save_heads`` into a Locret model, with its recommended inference settings
    and scorer (``model.locret_inference_config`` and ``model.locret_scorer_choice``, None when the adapter
    records none)."""
    shape, state = read_heads(path)
    load_heads_into(model, shape, state, what=f"retaining heads at {path}")
    recommended = read_heads_config(path)
    model.locret_inference_config = recommended.inference
    model.locret_scorer_choice = recommended.scorer
