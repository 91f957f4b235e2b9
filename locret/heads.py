"""Retaining heads: one small MLP per layer that predicts how much each KV entry will matter later."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers.activations import ACT2FN

# Tokens per row from which a CPU head runs folded on oneDNN (see ``folds_on_cpu``): a prefill chunk, not a
# decode step.
CPU_FOLD_MIN_ROWS = 4
_HAS_ONEDNN = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
# bfloat16 GEMMs in hardware (avx512_bf16 / AMX): a bfloat16 model's chunk folds in bfloat16 (``forward_folded``).
_FAST_BF16 = _HAS_ONEDNN and torch.ops.mkldnn._is_mkldnn_bf16_supported()


@dataclass(frozen=True)
class HeadShape:
    """Everything that fixes the shape of a model's retaining heads; two models can share heads iff equal."""

    model_type: str
    num_layers: int
    in_features: int
    hidden_size: int
    num_kv_heads: int
    hidden_act: str

    @classmethod
    def from_config(cls, config, hidden_size: int | None = None) -> HeadShape:
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        num_kv = config.num_key_value_heads or config.num_attention_heads
        return cls(
            model_type=base_model_type(config),
            num_layers=config.num_hidden_layers,
            in_features=(config.num_attention_heads + 2 * num_kv) * head_dim,
            hidden_size=hidden_size or config.retaining_head_size,
            num_kv_heads=num_kv,
            hidden_act=getattr(config, "hidden_act", None)
            or config.hidden_activation,  # Gemma: hidden_activation
        )

    def to_dict(self) -> dict:
        return asdict(self)


def base_model_type(config) -> str:
    """The transformers architecture a (Locret or vanilla) config belongs to: ``locret_llama`` -> ``llama``."""
    return config.model_type.removeprefix("locret_")


class RetainingHead(nn.Module):
    """``score = fc2(act(fc1([Q|K|V])))``: one score per token and KV head, from the pre-RoPE projections.

    No biases, as in the paper; ``fc1``/``fc2`` match the official release's names. Every KV head's score sees
    the query, key and value features of all heads. A head computes in its own dtype: float32 by default even
    in a bf16 model, because bf16-rounded heads lost a pass key that float32 heads kept (SmolLM2, 32K) at no
    measured speed cost; ``from_pretrained(..., heads_dtype=None)`` rounds them to the model's dtype. (A bf16
    model's CPU prefill chunk runs the folded first GEMM in bf16, as precise as the plain head's bf16
    inputs: ``forward_folded``.)
    """

    def __init__(
        self, in_features: int, hidden_size: int, num_kv_heads: int, hidden_act: str = "silu"
    ) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_size, bias=False)
        self.act = ACT2FN[hidden_act]
        self.fc2 = nn.Linear(hidden_size, num_kv_heads, bias=False)

    def forward(self, qkv: torch.Tensor) -> torch.Tensor:
        """``qkv`` ``[B, T, in_features]`` -> scores ``[B, T, num_kv_heads]``."""
        return self.fc2(self.act(self.fc1(qkv.to(self.fc1.weight.dtype))))

    def forward_folded(self, hidden_states: torch.Tensor, qkv_linears: list[nn.Linear]) -> torch.Tensor:
        """``forward`` with ``fc1`` folded into the q/k/v projections (``qkv_linears``, in ``[Q|K|V]`` order):
        ``fc1(x W_qkv^T + b_qkv) = x (fc1 W_qkv)^T + fc1 b_qkv`` from the attention's input ``x``
        (``hidden_states`` ``[B, T, hidden]``).

        Why: on CPU the heads' GEMM is their whole cost. Folded, it reads the model's hidden size instead of
        ``[Q|K|V]`` (576 instead of 960 columns for SmolLM2; 3072 instead of 9216 for Phi-3-mini) and needs no
        ``[Q|K|V]`` copy. The folded weight is computed in float64 from the current weights (again after any
        change to them). A float32 (or float16) model's chunk runs it in float32 on oneDNN (2.1x aten's
        float32 GEMM for this shape on the 2-core AMD EPYC here). A bfloat16 model's chunk, on a CPU with
        bfloat16 GEMMs, multiplies its hidden states (bfloat16 already) by the bfloat16-rounded folded weight
        with float32 accumulation (5x the float32 GEMM there) and continues in float32: its error is the plain
        head's on a bfloat16 model's projections (rounded to bfloat16 too); against a float32 model's features
        both differ by about 1e-3 of the largest score and rank the same top entries (SmolLM2, every layer).
        """
        hidden = self.folded_fc1(hidden_states, qkv_linears)
        return batched_tails(self.act, hidden[None], self.fc2.weight[None])[0]

    def folded_fc1(self, hidden_states: torch.Tensor, qkv_linears: list[nn.Linear]) -> torch.Tensor:
        """``fc1``'s output ``[B, T, hidden_size]`` in the head's dtype, folded (``forward_folded``)."""
        if hidden_states.dtype == torch.bfloat16 and _FAST_BF16:
            weight, bias = self._folded_fc1(qkv_linears, torch.bfloat16)
            return F.linear(hidden_states, weight, bias).to(self.fc1.weight.dtype)
        weight, bias = self._folded_fc1(qkv_linears, self.fc1.weight.dtype)
        return torch.ops.mkldnn._linear_pointwise(
            hidden_states.to(weight.dtype), weight, bias, "none", [], ""
        )

    def _folded_fc1(
        self, qkv_linears: list[nn.Linear], dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The folded weight and bias in ``dtype``, cached until any weight changes."""
        tensors = [self.fc1.weight] + [t for linear in qkv_linears for t in (linear.weight, linear.bias)]
        version = tuple(None if t is None else (t.data_ptr(), t._version, t.dtype) for t in tensors)
        cached = self.__dict__.get("_folded")
        if cached is None or cached[0] != version:
            cached = self._folded = (version, {})
        if dtype not in cached[1]:
            fc1 = self.fc1.weight.detach().double()
            stacked = torch.cat([linear.weight.detach() for linear in qkv_linears]).double()
            weight = (fc1 @ stacked).to(dtype)
            bias = None
            if any(linear.bias is not None for linear in qkv_linears):
                biases = [
                    linear.bias.detach()
                    if linear.bias is not None
                    else linear.weight.new_zeros(len(linear.weight))
                    for linear in qkv_linears
                ]
                bias = (fc1 @ torch.cat(biases).double()).to(dtype)
            cached[1][dtype] = (weight, bias)
        return cached[1][dtype]

    def reset_parameters(self, std: float) -> None:
        """Small random weights. Never zero: with SiLU(0) = 0 both layers' gradients would be exactly zero."""
        nn.init.normal_(self.fc1.weight, std=std)
        nn.init.normal_(self.fc2.weight, std=std)


@dataclass(frozen=True, eq=False)
class FoldedHeadScores:
    """A chunk's retaining-head scores ``[B, Hkv, T]`` with only ``fc1`` computed (``folded_fc1``), the rest
    when called: what a layer hands the cache during a CPU prefill (``LocretLayer.update``), so that the
    thirty layers' small float32 tails run as one after the last layer's attention (``stacked``)."""

    head: RetainingHead
    hidden: torch.Tensor  # fc1's output [B, T, hidden_size], in the head's dtype

    def __call__(self) -> torch.Tensor:
        return self.stacked([self])[0]

    @staticmethod
    def stacked(pending: list[FoldedHeadScores]) -> torch.Tensor:
        """The scores of several layers' chunks ``[L, B, Hkv, T]``, equal to stacking each one's call: one
        activation and one batched ``fc2`` for all (``batched_tails``)."""
        hidden = torch.stack([item.hidden for item in pending])
        weights = torch.stack([item.head.fc2.weight for item in pending])
        return batched_tails(pending[0].head.act, hidden, weights).transpose(-1, -2)


def batched_tails(act: nn.Module, hidden: torch.Tensor, fc2_weights: torch.Tensor) -> torch.Tensor:
    """``fc2(act(hidden))`` ``[L, B, T, Hkv]`` for ``L`` heads' ``fc1`` outputs ``hidden`` ``[L, B, T, hidden_size]``
    and their ``fc2`` weights ``[L, Hkv, hidden_size]``, as one batched matmul: one head's tail alone
    (``L = 1``) is the same computation as within a stack of layers. Equal to float32 rounding, not always bit
    for bit: a CPU's GEMM may sum in another order for a batch than for one matrix (seen on a 2-core AMD EPYC
    with torch 2.13; bit for bit on the Intel Xeon it was first measured on)."""
    return torch.matmul(act(hidden), fc2_weights.transpose(-1, -2)[:, None])


@dataclass(frozen=True)
class HeadInput:
    """What a retaining head scores a chunk from: the attention's input and its raw q/k/v projections."""

    hidden_states: torch.Tensor  # [B, T, hidden]
    projections: tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # flat q, k, v, before any norm

    def features(self) -> torch.Tensor:
        """The head's own input ``[Q|K|V]`` ``[B, T, in_features]``."""
        return torch.cat(self.projections, dim=-1)


def folds_on_cpu(head: RetainingHead, head_input: HeadInput) -> bool:
    """Whether ``head.forward_folded`` runs: a float32 CPU head outside autograd, on a chunk of
    ``CPU_FOLD_MIN_ROWS`` or more tokens (below that, e.g. a decode step, aten's small GEMMs are faster than
    oneDNN's, and static decoding keeps one path), with oneDNN in this torch build. Elsewhere the plain
    ``forward``: on a GPU the heads cost little, and a folded copy would cost memory. Decided per chunk length,
    not batch size, so every row of a batch scores as in its batch-1 run."""
    hidden = head_input.hidden_states
    weight = head.fc1.weight
    return (
        _HAS_ONEDNN
        and hidden.device.type == "cpu"
        and weight.dtype == torch.float32
        and hidden.shape[-2] >= CPU_FOLD_MIN_ROWS
        and not (torch.is_grad_enabled() and weight.requires_grad)
    )
