"""Retaining heads: one small MLP per layer that predicts how much each KV entry will matter later."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from transformers.activations import ACT2FN


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
    measured speed cost; ``from_pretrained(..., heads_dtype=None)`` rounds them to the model's dtype.
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

    def reset_parameters(self, std: float) -> None:
        """Small random weights. Never zero: with SiLU(0) = 0 both layers' gradients would be exactly zero."""
        nn.init.normal_(self.fc1.weight, std=std)
        nn.init.normal_(self.fc2.weight, std=std)
