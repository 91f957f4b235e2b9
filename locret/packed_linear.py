"""oneDNN-prepacked weights for a model's bf16 ``nn.Linear`` layers on CPU, for one-token decode steps.

A bf16 ``F.linear`` on one token re-lays out its weight for oneDNN on every call; a weight packed once
(``torch.ops.mkldnn._reorder_linear_weight``) is read as it is. Measured on SmolLM2-135M (bf16, AVX-512 BF16,
one thread): the static decode step runs about 1.3x faster with every bf16 linear packed, with bit-identical
logits. The packed copies cost as much memory as the packed weights (about 270 MB for SmolLM2 with its
49K-token ``lm_head``) and are kept per model while it lives; a weight changed in place is packed again.
float32 linears are left alone (no measured gain, and not bit-identical).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

__all__ = ["can_pack", "onednn_bf16", "packed_forwards", "packed_linears"]

# model -> {linear: (weight version key, packed forward)}
_PACKED: weakref.WeakKeyDictionary[nn.Module, dict[nn.Linear, tuple[tuple, Callable]]] = (
    weakref.WeakKeyDictionary()
)


def can_pack(model: nn.Module) -> bool:
    """True when this CPU's oneDNN computes bf16 linears and the model holds bf16 linears on the CPU."""
    return onednn_bf16() and any(_packable(module) for module in model.modules())


def onednn_bf16() -> bool:
    """True on a CPU build whose oneDNN has a bf16 linear path on this CPU: packing raises without one (it
    needs AVX-512 BW, VL and DQ or AVX-NE-CONVERT; an AVX2-only CPU has neither)."""
    mkldnn = torch.ops.mkldnn
    return (
        torch.backends.mkldnn.is_available()
        and hasattr(mkldnn, "_reorder_linear_weight")
        and hasattr(mkldnn, "_is_mkldnn_bf16_supported")
        and bool(mkldnn._is_mkldnn_bf16_supported())
    )


def _packable(module: nn.Module) -> bool:
    return (
        isinstance(module, nn.Linear)
        and module.weight.dtype == torch.bfloat16
        and module.weight.device.type == "cpu"
    )


def _version(module: nn.Linear) -> tuple:
    weight, bias = module.weight, module.bias
    return (weight.data_ptr(), weight._version, None if bias is None else (bias.data_ptr(), bias._version))


def _packed_forward(module: nn.Linear) -> Callable[[torch.Tensor], torch.Tensor]:
    packed = torch.ops.mkldnn._reorder_linear_weight(module.weight.detach(), 1)
    bias = None if module.bias is None else module.bias.detach()

    def forward(inputs: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(inputs, packed, bias, "none", [], "")

    return forward


def packed_linears(model: nn.Module) -> list[tuple[nn.Linear, Callable]]:
    """Every bf16 CPU linear of ``model`` with its packed forward (packed once per weight version)."""
    cached = _PACKED.setdefault(model, {})
    linears = []
    for module in model.modules():
        if not _packable(module):
            continue
        version = _version(module)
        entry = cached.get(module)
        if entry is None or entry[0] != version:
            entry = cached[module] = (version, _packed_forward(module))
        linears.append((module, entry[1]))
    return linears


@contextmanager
def packed_forwards(linears: list[tuple[nn.Linear, Callable]]) -> Iterator[None]:
    """Inside the block each linear of ``packed_linears`` computes with its packed weight (no autograd)."""
    for module, forward in linears:
        module.forward = forward
    try:
        yield
    finally:
        for module, _ in linears:
            del module.forward
