"""Probe (issue 28): where the minor page faults of a chunked prefill happen, each side run alone.

    PYTHONPATH=. python benchmark/results/prefill_ceiling/probes/fault_sites.py locret|streaming_llm|plain

SmolLM2-135M bf16, 1 thread, 4096 random tokens in 512-token chunks, budget 1024; ``plain`` is the ceiling of
``benchmark.overhead`` (a DynamicCache cut back to its newest 1024 entries). Faults per chunk in the model's
SDPA calls, MLPs and q/k/v projections, and in Locret's cache update, re-rotation and eviction; two rounds in
one process (the second without first-touch growth).
"""

import collections
import sys

import torch
from transformers import DynamicCache
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

import locret
from benchmark.overhead import minor_faults
from locret.acquire import resolve_model
from locret.cache import LocretCache, LocretLayer
from locret.generation import new_cache
from locret.models.base import LocretAttentionMixin
from locret.scorers import SCORERS

BUDGET, CHUNK, TOKENS = 1024, 512, 4096
faults: collections.Counter = collections.Counter()


def counted(function, label):
    def inner(*args, **kwargs):
        before = minor_faults()
        out = function(*args, **kwargs)
        faults[label] += minor_faults() - before
        return out

    return inner


def main(side: str) -> None:
    torch.set_num_threads(1)
    for owner, name, label in (
        (LocretLayer, "update", "cache update"),
        (LocretAttentionMixin, "_rotate_with_cache", "re-rotation"),
        (LocretCache, "evict_together", "eviction"),
    ):
        setattr(owner, name, counted(getattr(owner, name), label))
    ALL_ATTENTION_FUNCTIONS["sdpa"] = counted(ALL_ATTENTION_FUNCTIONS["sdpa"], "sdpa")
    model = locret.from_pretrained(resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct"), dtype=torch.bfloat16)
    for layer in model.model.layers:
        layer.mlp.forward = counted(layer.mlp.forward, "mlp")
        layer.self_attn.projections = counted(layer.self_attn.projections, "q/k/v projections")
    config = locret.LocretConfig(budget=BUDGET, chunk_size=CHUNK, n_stabilizers=256, score_pooling=15)
    ids = torch.randint(100, 20000, (1, TOKENS), generator=torch.Generator().manual_seed(0))
    chunks = range(0, TOKENS - config.n_local, CHUNK)
    for round_ in range(2):
        if side == "plain":
            cache = DynamicCache(config=model.config)
        else:
            cache = new_cache(model, config, scorer=SCORERS[side]())
            cache.prefilling = True
        faults.clear()
        total = 0
        for start in chunks:
            before = minor_faults()
            with torch.no_grad():
                model.model(input_ids=ids[:, start : start + CHUNK], past_key_values=cache)
            if side == "plain":
                for layer in cache.layers:
                    layer.keys, layer.values = layer.keys[..., -BUDGET:, :], layer.values[..., -BUDGET:, :]
            total += minor_faults() - before
        per_chunk = {label: count // len(chunks) for label, count in faults.items()}
        print(f"{side}, round {round_}: {total // len(chunks)} faults per chunk; {per_chunk}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "locret")
