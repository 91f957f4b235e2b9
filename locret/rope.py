"""Rotary embeddings applied at attention time, so cached keys can stay un-rotated.

Locret caches keys before RoPE and gives the retained entries fresh contiguous positions on every forward.
The rotation is therefore done here from a cos/sin table indexed by position, instead of by the model's
rotary module for the current tokens only.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS


class RopeTable:
    """cos/sin for arbitrary positions, from a model's rotary module, grown on demand and reused.

    LongRoPE (Phi-3) picks short or long frequencies per forward from the largest position; with chunked
    prefill that would rotate early chunks differently from later ones. Like the paper, the long factors are
    always used, so every cached key is rotated consistently.

    ``layer_type`` selects one of the frequency sets of a rotary module that keeps one per attention type
    (Gemma 3: ``sliding_attention`` and ``full_attention`` layers rotate with different bases).
    """

    def __init__(self, rotary_emb: nn.Module, config, layer_type: str | None = None) -> None:
        self.rotary_emb = rotary_emb
        self.config = config
        self.layer_type = layer_type
        self._tables: dict[tuple[torch.dtype, torch.device], tuple[torch.Tensor, torch.Tensor]] = {}

    def _inv_freq(self, device: torch.device) -> torch.Tensor:
        rotary = self.rotary_emb
        if self.layer_type is not None:
            inv_freq = getattr(rotary, f"{self.layer_type}_original_inv_freq")
            return inv_freq.to(device=device, dtype=torch.float32)
        if getattr(rotary, "rope_type", "default") == "longrope":
            original = self.config.rope_parameters["original_max_position_embeddings"]
            inv_freq, _ = ROPE_INIT_FUNCTIONS["longrope"](self.config, device, seq_len=original + 1)
            return inv_freq.to(device=device, dtype=torch.float32)
        return rotary.original_inv_freq.to(device=device, dtype=torch.float32)

    def _attention_scaling(self) -> float:
        if self.layer_type is not None:
            return getattr(self.rotary_emb, f"{self.layer_type}_attention_scaling")
        return getattr(self.rotary_emb, "attention_scaling", 1.0)

    def table(
        self, length: int, dtype: torch.dtype, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """cos/sin ``[length, R]`` for positions ``0..length-1``; index them for arbitrary positions."""
        key = (dtype, device)
        cached = self._tables.get(key)
        if cached is None or cached[0].shape[0] < length:
            size = max(length, 2 * (0 if cached is None else cached[0].shape[0]), 256)
            positions = torch.arange(size, device=device, dtype=torch.float32)
            freqs = positions[:, None] * self._inv_freq(device)[None, :]
            emb = torch.cat((freqs, freqs), dim=-1)
            scaling = self._attention_scaling()
            cached = ((emb.cos() * scaling).to(dtype), (emb.sin() * scaling).to(dtype))
            self._tables[key] = cached
        return cached[0][:length], cached[1][:length]


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x`` ``[..., T, D]`` by ``cos``/``sin`` ``[..., T, R]`` (R <= D: partial rotary keeps the rest)."""
    rotary_dim = cos.shape[-1]
    if rotary_dim == x.shape[-1]:
        return _rotate(x, cos, sin)
    x_rot, x_pass = x[..., :rotary_dim], x[..., rotary_dim:]
    return torch.cat((_rotate(x_rot, cos, sin), x_pass), dim=-1)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """``x * cos + rotate_half(x) * sin``, bit for bit, in two new tensors instead of five.

    Why: every prefill chunk re-rotates all retained keys; on CPU the three extra allocations cost more than
    the arithmetic (SmolLM2's ``[1, 3, 1536, 64]`` keys, 2 threads: 0.27 -> 0.22 ms in bfloat16, 0.33 -> 0.23 ms
    in float32; ``python -m benchmark.rope_speed``). ``out=`` does not record autograd and breaks
    ``torch.compile``'s graph, so a tensor that needs gradients and a compiled step (which fuses the plain
    formula anyway) take the plain formula."""
    if (x.requires_grad and torch.is_grad_enabled()) or torch.compiler.is_compiling():
        return x * cos + rotate_half(x) * sin
    half = x.shape[-1] // 2
    rotated = torch.empty_like(x)
    torch.neg(x[..., half:], out=rotated[..., :half])
    rotated[..., half:] = x[..., :half]
    return torch.mul(x, cos).add_(rotated.mul_(sin))
