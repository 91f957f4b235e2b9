"""Probe (issue 28): how low-rank the shipped SmolLM2 heads' folded first layer (256 x 576) is: the share of
its squared singular values in the top 32/64/128/192 (could a low-rank GEMM replace it?).

    python benchmark/results/prefill_ceiling/probes/folded_head_rank.py
"""

import torch

import locret

model = locret.from_pretrained(
    "HuggingFaceTB/SmolLM2-135M-Instruct", dtype=torch.float32, heads_dtype=torch.float32
).eval()
for index in [0, 5, 10, 15, 20, 25, 29]:
    attention = model.model.layers[index].self_attn
    weight, _ = attention.retaining_head._folded_fc1(attention.qkv_linears(), torch.float64)
    energy = torch.linalg.svdvals(weight).square().cumsum(0)
    energy /= energy[-1].clone()
    shares = [round(float(energy[rank - 1]), 4) for rank in (32, 64, 128, 192)]
    print(f"layer {index} {tuple(weight.shape)}: energy at rank 32/64/128/192: {shares}")
