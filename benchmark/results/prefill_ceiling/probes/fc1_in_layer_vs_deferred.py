"""Probe (issue 28): the heads' folded fc1 GEMM deferred to the last layer (commit 4537e74, with the layers'
tails batched) against the same GEMM run in each layer (shipped since 8859037); whole prefills of 8K random
tokens, bf16, 2 threads, each against the grouped-SDPA ceiling of ``benchmark.overhead`` in the same loop.
Run at commit 4537e74, whose ``FoldedHeadScores`` defers the GEMM (the in-layer side is patched in here):

    mkdir -p runs && cp benchmark/results/prefill_ceiling/probes/fc1_in_layer_vs_deferred.py runs/  # untracked
    git checkout 4537e74
    PYTHONPATH=. python runs/fc1_in_layer_vs_deferred.py 1024
    PYTHONPATH=. python runs/fc1_in_layer_vs_deferred.py 256
"""

import sys

import torch

import locret
from benchmark.overhead import best_of_each_chunk, whole_prefill
from locret import cache as locret_cache
from locret import heads
from locret.models import base

torch.set_num_threads(2)
model = locret.from_pretrained(
    "HuggingFaceTB/SmolLM2-135M-Instruct", dtype=torch.bfloat16, heads_dtype=torch.float32
).eval()
budget = int(sys.argv[1])
config = locret.LocretConfig(
    budget=budget, chunk_size=512, n_stabilizers=256 if budget >= 1024 else 64, score_pooling=15
)


class InLayer:
    """fc1 computed when the layer builds it; the tail as ``heads.FoldedHeadScores`` computes it."""

    def __init__(self, head, hidden_states, linears):
        self.head, self.hidden = head, head.folded_fc1(hidden_states, linears)

    def __call__(self):
        return self.head.folded_tail(self.hidden[None])[0].transpose(1, 2)


deferred_stacked = locret_cache.stacked_scores


def in_layer_stacked(pending):
    if all(type(item) is InLayer for item in pending):
        hidden = torch.stack([item.hidden for item in pending])
        weights = torch.stack([item.head.fc2.weight for item in pending])
        return pending[0].head.folded_tail(hidden, weights).transpose(-1, -2)
    return deferred_stacked(pending)


with torch.no_grad():
    for _ in range(2):
        for in_layer in (False, True):
            base.FoldedHeadScores = InLayer if in_layer else heads.FoldedHeadScores
            locret_cache.stacked_scores = in_layer_stacked if in_layer else deferred_stacked
            times, _, _ = whole_prefill(model, config, "locret", 8192, 3, torch.device("cpu"))
            median = sorted(sum(run) for run in times["locret"])[1]
            ceiling = sorted(sum(run) for run in times["grouped ceiling"])[1]
            best = best_of_each_chunk(times["grouped ceiling"]) / best_of_each_chunk(times["locret"])
            print(
                f"budget {budget} fc1 in layer={in_layer}: locret {median:.2f} s, grouped ceiling {ceiling:.2f} s, "
                f"share {ceiling / median:.1%}; every chunk at its fastest {best:.1%}",
                flush=True,
            )
