"""Probe (issue 28): the shipped heads' cost per 512-token chunk over 30 layers, tight loop, bf16 model, float32
heads: the whole folded head, the q/k/v projections for scale, and the folded first GEMM alone.

    python benchmark/results/prefill_ceiling/probes/heads_cost.py
"""

import torch
import torch.nn.functional as F
from common import time_ms

import locret

torch.set_num_threads(2)
model = locret.from_pretrained(
    "HuggingFaceTB/SmolLM2-135M-Instruct", dtype=torch.bfloat16, heads_dtype=torch.float32
).eval()
attentions = [layer.self_attn for layer in model.model.layers]
x = torch.randn(1, 512, 576, dtype=torch.bfloat16)


def heads() -> None:
    for attention in attentions:
        attention.retaining_head.forward_folded(x, attention.qkv_linears())


def projections() -> None:
    for attention in attentions:
        attention.projections(x)


def first_gemm() -> None:
    for attention in attentions:
        weight, bias = attention.retaining_head._folded_fc1(attention.qkv_linears(), torch.bfloat16)
        F.linear(x, weight, bias)


with torch.no_grad():
    for function in (heads, projections, first_gemm):
        fastest, median = time_ms(function, calls=1, rounds=10, warmup=1)
        print(f"{function.__name__:12s} min {fastest:.2f} ms, median {median:.2f} ms per chunk (30 layers)")
