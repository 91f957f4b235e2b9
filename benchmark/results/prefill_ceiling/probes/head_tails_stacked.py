"""Probe (issue 28): the shipped SmolLM2 heads on one 512-token chunk of each of the 30 layers, bf16 model,
2 threads, tight loop: each layer's whole head as 0.3.x ran it (folded fc1, then ``fc2(act(.))`` with
``F.linear``, 30 times) against the folded fc1 per layer and one batched tail for all layers
(``FoldedHeadScores.stacked``, shipped since 4537e74). Random hidden states; fc1 is the same in both.

    PYTHONPATH=. python benchmark/results/prefill_ceiling/probes/head_tails_stacked.py
"""

import torch
from common import time_ms

import locret
from locret.heads import FoldedHeadScores

torch.set_num_threads(2)
model = locret.from_pretrained(
    "HuggingFaceTB/SmolLM2-135M-Instruct", dtype=torch.bfloat16, heads_dtype=torch.float32
).eval()
attentions = [layer.self_attn for layer in model.model.layers]
hidden = [torch.randn(1, 512, model.config.hidden_size, dtype=torch.bfloat16) for _ in attentions]


def per_layer_tails() -> torch.Tensor:
    scores = []
    for attention, states in zip(attentions, hidden, strict=True):
        head = attention.retaining_head
        fc1 = head.folded_fc1(states, attention.qkv_linears())
        scores.append(head.fc2(head.act(fc1)).transpose(1, 2))
    return torch.stack(scores)


def stacked_tails() -> torch.Tensor:
    pending = [
        FoldedHeadScores(a.retaining_head, a.retaining_head.folded_fc1(states, a.qkv_linears()))
        for a, states in zip(attentions, hidden, strict=True)
    ]
    return FoldedHeadScores.stacked(pending)


with torch.no_grad():
    print("equal on these shapes:", torch.equal(per_layer_tails(), stacked_tails()))
    for name, run in (("per-layer tails (0.3.x)", per_layer_tails), ("one stacked tail", stacked_tails)):
        fastest, median = time_ms(run, calls=20)
        print(f"{name}: {fastest:.2f} ms fastest, {median:.2f} ms median per chunk of 30 layers")
