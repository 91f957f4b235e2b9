"""Checkpoint conversions: ``python -m locret.train.convert COMMAND``.

- ``to-bin`` / ``to-safetensors``: a state dict between safetensors and PyTorch ``.bin`` (read with
  ``torch.load(weights_only=True)`` only: a pickle from elsewhere must not be able to run code);
- ``extract-heads``: a full Locret model checkpoint directory -> a heads-only adapter;
- ``from-official``: the official Locret release (``model.layers.{i}.self_attn.fc1.weight`` / ``fc2``,
  ``.bin`` or ``.safetensors``) plus the base model's config -> our adapter; ``to-official`` goes back;
- ``ensemble``: several adapters for one model -> one adapter whose scores are their mean (``--inference``
  and ``--scorer`` record the settings and scorer it was validated with; one adapter: a copy with those);
- ``recommend``: rewrite an adapter's recommended settings and scorer in place (weights and training
  provenance unchanged).

Every conversion into an adapter checks the heads' shape against the model config and names both shapes
when they differ (the reference loaded heads with ``strict=False`` and silently kept random ones).
"""

from __future__ import annotations

import argparse
import json
import logging
import re
from dataclasses import replace
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn
from transformers import AutoConfig

import locret  # noqa: F401  (registers the Locret configs with AutoConfig)
from locret.adapter import (
    adapter_files,
    check_shape,
    heads_state_dict,
    load_heads_into,
    parse_inference,
    read_heads,
    read_heads_config,
    save_heads,
    write_heads_config,
)
from locret.config import PAPER_SETTINGS, LocretConfig
from locret.heads import HeadShape, RetainingHead
from locret.scorers import ScorerChoice

logger = logging.getLogger(__name__)

# Head tensors in any of: the official release, a full Locret checkpoint, our adapter.
HEAD_KEY = re.compile(r"(?:^|\.)layers\.(\d+)\.(?:self_attn\.)?(?:retaining_head\.)?(fc[12])\.weight$")


def load_state_dict(path: str | Path, keep=lambda key: True) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors``/``.bin`` file, or of every such file in a directory, filtered by key."""
    path = Path(path)
    files = [path] if path.is_file() else sorted(path.glob("*.safetensors")) or sorted(path.glob("*.bin"))
    if not files:
        raise FileNotFoundError(f"no .safetensors or .bin weights at {path}")
    state: dict[str, torch.Tensor] = {}
    for file in files:
        if file.suffix == ".safetensors":
            with safe_open(file, framework="pt") as weights:
                state.update({key: weights.get_tensor(key) for key in weights.keys() if keep(key)})
        else:
            loaded = torch.load(file, map_location="cpu", weights_only=True)
            if not isinstance(loaded, dict):
                raise ValueError(f"{file} holds a {type(loaded).__name__}, not a state dict")
            state.update({key: tensor for key, tensor in loaded.items() if keep(key)})
    return state


def save_state_dict(state: dict[str, torch.Tensor], path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # clone: safetensors refuses tensors that share storage (tied weights in a .bin)
    state = {key: tensor.detach().cpu().contiguous().clone() for key, tensor in state.items()}
    if path.suffix == ".safetensors":
        save_file(state, path, metadata={"format": "pt"})
    elif path.suffix == ".bin":
        torch.save(state, path)
    else:
        raise ValueError(f"output must end in .safetensors or .bin, got {path.name}")


class _Heads(nn.Module):
    """Just the heads of a model, so ``save_heads``/``load_heads_into`` work without loading a backbone."""

    def __init__(self, shape: HeadShape) -> None:
        super().__init__()
        self.head_shape = shape
        self.heads = nn.ModuleList(
            RetainingHead(shape.in_features, shape.hidden_size, shape.num_kv_heads, shape.hidden_act)
            for _ in range(shape.num_layers)
        )

    @property
    def retaining_heads(self) -> list[RetainingHead]:
        return list(self.heads)


def heads_from_state(state: dict[str, torch.Tensor], config, what: str) -> _Heads:
    """Pick the head tensors out of ``state`` and check them against the shape ``config`` implies."""
    found: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        match = HEAD_KEY.search(key)
        if match:
            found[f"layers.{match[1]}.{match[2]}.weight"] = tensor
    if "layers.0.fc1.weight" not in found or "layers.0.fc2.weight" not in found:
        raise ValueError(f"{what} holds no retaining heads (no key like model.layers.0.self_attn.fc1.weight)")
    fc1, fc2 = found["layers.0.fc1.weight"], found["layers.0.fc2.weight"]
    layers = 1 + max(int(key.split(".")[1]) for key in found)
    expected = HeadShape.from_config(config, hidden_size=fc1.shape[0])
    check_shape(
        expected,
        HeadShape(expected.model_type, layers, fc1.shape[1], fc1.shape[0], fc2.shape[0], expected.hidden_act),
        what,
    )
    heads = _Heads(expected)
    load_heads_into(heads, expected, found, what)  # every tensor's shape, no missing or extra layer
    return heads


def _config(path: str | Path):
    from locret.acquire import resolve_model

    return AutoConfig.from_pretrained(resolve_model(path))


def extract_heads(checkpoint: str | Path, out: str | Path) -> Path:
    state = load_state_dict(checkpoint, keep=lambda key: HEAD_KEY.search(key) is not None)
    heads = heads_from_state(state, _config(checkpoint), f"heads in {checkpoint}")
    config = _config(checkpoint)
    return save_heads(
        heads,
        out,
        metadata={"converted_from": str(checkpoint)},
        base_model=getattr(config, "name_or_path", None) or None,
    )


def from_official(checkpoint: str | Path, base_model: str | Path, out: str | Path) -> Path:
    state = load_state_dict(checkpoint, keep=lambda key: HEAD_KEY.search(key) is not None)
    config = _config(base_model)
    heads = heads_from_state(state, config, f"official heads {checkpoint}")
    # The official heads were validated with the paper's settings for their model (8B Llama, Phi-3-mini).
    return save_heads(
        heads,
        out,
        metadata={"converted_from": str(checkpoint)},
        inference=PAPER_SETTINGS.get(config.model_type.removeprefix("locret_")),
        base_model=str(base_model),
    )


def to_official(adapter: str | Path, out: str | Path) -> None:
    shape, state = read_heads(adapter)
    heads = _Heads(shape)
    load_heads_into(heads, shape, state, f"adapter {adapter}")
    official = {
        f"model.layers.{key.removeprefix('layers.').replace('.fc', '.self_attn.fc', 1)}": tensor
        for key, tensor in heads_state_dict(heads).items()
    }
    save_state_dict(official, out)


def ensemble(
    adapters: list[str | Path],
    out: str | Path,
    dtype: torch.dtype = torch.float32,
    inference: LocretConfig | None = None,
    scorer: ScorerChoice | None = None,
) -> Path:
    """One adapter scoring the mean of ``adapters``' scores (e.g. heads trained with different seeds).

    Exact, because a head has no biases: K heads ``fc2_k(act(fc1_k x))`` are one head of the summed width
    whose ``fc1`` stacks theirs and whose ``fc2`` places theirs side by side, divided by K. Each member is
    cast to ``dtype`` first and the result is stored in it (for a 16-bit dtype and K a power of two,
    exactly the mean of the rounded members). float16 keeps three more mantissa bits than bfloat16 at the
    same size, which matters for a key whose tokens score near the eviction threshold. One adapter is an
    ensemble of one: a copy in ``dtype`` (exact in float32) with ``inference`` recorded, for shipping a single
    trained head with the settings it was validated with. ``inference`` and ``scorer`` default to the
    members' own where they all agree, else none is recorded.
    """
    if not adapters:
        raise ValueError("an ensemble needs at least one adapter")
    members = [read_heads(adapter) for adapter in adapters]
    first = members[0][0]
    for adapter, (shape, _) in zip(adapters, members, strict=True):
        check_shape(replace(first, hidden_size=0), replace(shape, hidden_size=0), f"heads at {adapter}")
    shape = replace(first, hidden_size=sum(member_shape.hidden_size for member_shape, _ in members))
    state = {}
    for layer in range(shape.num_layers):
        fc1, fc2 = f"layers.{layer}.fc1.weight", f"layers.{layer}.fc2.weight"
        state[fc1] = torch.cat([weights[fc1].to(dtype).float() for _, weights in members], dim=0)
        state[fc2] = torch.cat([weights[fc2].to(dtype).float() for _, weights in members], dim=1) / len(
            members
        )
    heads = _Heads(shape)
    load_heads_into(heads, shape, state, f"ensemble of {len(members)} adapters")
    configs = [read_heads_config(adapter) for adapter in adapters]
    members_metadata = [
        {"path": str(adapter), **config.training} for adapter, config in zip(adapters, configs, strict=True)
    ]
    metadata = {"stored_dtype": str(dtype).removeprefix("torch."), "ensemble_of": members_metadata}
    return save_heads(
        heads.to(dtype),
        out,
        metadata=metadata,
        inference=inference or _common({config.inference for config in configs}),
        scorer=scorer or _common({config.scorer for config in configs}),
        base_model=_common({config.base_model for config in configs}),
    )


def recommend(
    adapter: str | Path,
    inference: LocretConfig | None = None,
    scorer: ScorerChoice | None = None,
    heads_scorer: bool = False,
) -> Path:
    """Record new recommended ``inference`` settings and/or ``scorer`` (``heads_scorer``: none, the heads'
    own scores) in ``adapter``'s JSON; what is not given stays. The weights are not touched."""
    if scorer is not None and heads_scorer:
        raise ValueError("give a scorer or heads_scorer=True, not both")
    config = read_heads_config(adapter)
    config = replace(
        config,
        inference=inference or config.inference,
        scorer=None if heads_scorer else scorer or config.scorer,
        locret_version=locret.__version__,
    )
    directory = adapter_files(adapter)[0].parent
    write_heads_config(directory, config)
    return directory


def _inference_settings(text: str) -> LocretConfig:
    """``--inference`` JSON -> LocretConfig (argparse reports a ValueError as a usage error)."""
    return parse_inference(json.loads(text), "--inference")


def _scorer_choice(text: str) -> ScorerChoice:
    """``--scorer`` JSON -> ScorerChoice (argparse reports a ValueError as a usage error)."""
    return ScorerChoice.from_dict(json.loads(text), "--scorer")


def _common(values: set):
    """The members' shared setting (inference settings, scorer, base model); None when they disagree."""
    return next(iter(values)) if len(values) == 1 else None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m locret.train.convert",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (("to-bin", "safetensors -> .bin"), ("to-safetensors", ".bin -> safetensors")):
        command = commands.add_parser(name, help=help_text)
        command.add_argument("source")
        command.add_argument("target")
    command = commands.add_parser("extract-heads", help="full Locret checkpoint directory -> heads adapter")
    command.add_argument("checkpoint")
    command.add_argument("out")
    command = commands.add_parser(
        "from-official", help="official Locret heads (.bin/.safetensors) -> adapter"
    )
    command.add_argument("checkpoint")
    command.add_argument("--base-model", required=True, help="directory, hub id or .gguf with the config")
    command.add_argument("out")
    command = commands.add_parser("to-official", help="adapter -> official key layout (.bin/.safetensors)")
    command.add_argument("adapter")
    command.add_argument("target")
    command = commands.add_parser("ensemble", help="adapters -> one adapter scoring their mean")
    command.add_argument("adapters", nargs="+")
    command.add_argument("--out", required=True)
    command.add_argument(
        "--dtype", choices=["float32", "bfloat16", "float16"], default="float32", help="stored dtype"
    )
    command.add_argument(
        "--inference",
        type=_inference_settings,
        default=None,
        help='recommended LocretConfig settings as JSON, e.g. \'{"budget": 1024, "score_pooling": 7}\' '
        "(default: the members' own when they agree)",
    )
    command.add_argument(
        "--scorer",
        type=_scorer_choice,
        default=None,
        help='recommended scorer as JSON, e.g. \'{"name": "lines", "settings": {"top_tokens": 8}}\' '
        "(default: the members' own when they agree)",
    )
    command = commands.add_parser("recommend", help="rewrite an adapter's recommended settings and scorer")
    command.add_argument("adapter")
    command.add_argument("--inference", type=_inference_settings, default=None, help="LocretConfig JSON")
    choice = command.add_mutually_exclusive_group()
    choice.add_argument("--scorer", type=_scorer_choice, default=None, help="scorer JSON (name, settings)")
    choice.add_argument("--heads-scorer", action="store_true", help="recommend the heads' own scores")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.command in ("to-bin", "to-safetensors"):
        save_state_dict(load_state_dict(args.source), args.target)
        written = args.target
    elif args.command == "extract-heads":
        written = extract_heads(args.checkpoint, args.out)
    elif args.command == "from-official":
        written = from_official(args.checkpoint, args.base_model, args.out)
    elif args.command == "ensemble":
        written = ensemble(args.adapters, args.out, getattr(torch, args.dtype), args.inference, args.scorer)
    elif args.command == "recommend":
        written = recommend(args.adapter, args.inference, args.scorer, args.heads_scorer)
    else:
        to_official(args.adapter, args.target)
        written = args.target
    print(f"wrote {written}")


if __name__ == "__main__":
    main()
