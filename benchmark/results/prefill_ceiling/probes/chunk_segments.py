"""Probe (issue 28): where a prefill chunk's time goes, Locret against its ceiling, by wall-clock timers wrapped
around the code each side runs (no profiler: its per-op cost inflates the side with more small ops).

    PYTHONPATH=. python benchmark/results/prefill_ceiling/probes/chunk_segments.py --threads 1

SmolLM2 bf16 (heads float32), budget 1024, chunk 512, pooling 15, 8K random tokens; per chunk, the mean of
repeats 2..3 (the first warms up), the two sides alternating. Ceiling: transformers with a DynamicCache
cropped to the newest 1024 entries after each chunk. Segments: SDPA calls, RoPE (the ceiling's
``apply_rotary_pos_emb``, Locret's ``_rotate_with_cache`` of the queries and every stored key), cache
updates, the MLPs, the attention modules' whole forwards, and Locret's scoring and eviction
(``evict_together``: the deferred head GEMMs in ``_resolve_together``, then the ranking and the row gathers
in ``keep_entries``).
"""

import argparse
import time
from collections import defaultdict

import torch
import transformers.models.llama.modeling_llama as llama
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

import locret
from locret import cache as locret_cache
from locret.compat import CACHE_KWARG
from locret.generation import new_cache
from locret.hardware import reuse_freed_memory
from locret.models import base

parser = argparse.ArgumentParser()
parser.add_argument("--threads", type=int, default=1)
parser.add_argument("--heads", default=None, help="a heads adapter directory (default: the shipped heads)")
args = parser.parse_args()
reuse_freed_memory()
torch.set_num_threads(args.threads)
model = locret.from_pretrained(
    "HuggingFaceTB/SmolLM2-135M-Instruct", args.heads, dtype=torch.bfloat16, heads_dtype=torch.float32
).eval()
config = locret.LocretConfig(budget=1024, chunk_size=512, n_stabilizers=256, score_pooling=15)
ids = torch.randint(100, model.config.vocab_size - 100, (1, 8192), generator=torch.Generator().manual_seed(0))
spent: dict[str, float] = defaultdict(float)


def timer(owner, name: str, label: str) -> None:
    original = getattr(owner, name)

    def wrapped(*positional, **named):
        started = time.perf_counter()
        result = original(*positional, **named)
        spent[label] += time.perf_counter() - started
        return result

    setattr(owner, name, wrapped)


attention_class = type(model.model.layers[0].self_attn)
for owner, name, label in [
    (torch.nn.functional, "scaled_dot_product_attention", "sdpa"),
    (llama, "apply_rotary_pos_emb", "rope"),
    (base.LocretAttentionMixin, "_rotate_with_cache", "rope"),
    (DynamicLayer, "update", "cache update"),
    (locret_cache.LocretLayer, "update", "cache update"),
    (llama.LlamaMLP, "forward", "mlp"),
    (attention_class, "forward", "attention forward"),
    (locret_cache.LocretCache, "evict_together", "scoring + eviction"),
    (locret_cache.LocretCache, "_resolve_together", "  of which head GEMMs + pooling"),
    (locret_cache.LocretLayer, "keep_entries", "  of which row gathers"),
]:
    timer(owner, name, label)


def ceiling_prefill() -> None:
    cache = DynamicCache(config=model.config)
    for start in range(0, 8191, 512):
        model.model(input_ids=ids[:, start : min(start + 512, 8191)], **{CACHE_KWARG: cache})
        for layer in cache.layers:
            layer.keys, layer.values = layer.keys[..., -1024:, :], layer.values[..., -1024:, :]


def locret_prefill() -> None:
    cache = new_cache(model, config)
    cache.prefilling = True
    for start in range(0, 8191, 512):
        model.model(input_ids=ids[:, start : min(start + 512, 8191)], **{CACHE_KWARG: cache})


rows: dict[str, dict[str, float]] = {"ceiling": defaultdict(float), "locret": defaultdict(float)}
with torch.no_grad():
    for repeat in range(3):  # the sides alternate, so a drifting machine slows both alike
        for side, prefill in (("ceiling", ceiling_prefill), ("locret", locret_prefill)):
            spent.clear()
            started = time.perf_counter()
            prefill()
            if repeat:
                rows[side]["whole chunk"] += time.perf_counter() - started
                for label, seconds in spent.items():
                    rows[side][label] += seconds
chunks = 2 * 16
labels = ["whole chunk", "attention forward", "sdpa", "rope", "cache update", "scoring + eviction"]
labels += ["  of which head GEMMs + pooling", "  of which row gathers", "mlp"]
print(f"threads {args.threads}; ms per chunk (mean of 2 prefills x 16 chunks)\n")
print("| segment | ceiling | locret | locret - ceiling |\n|---|---|---|---|")
for label in labels:
    ceiling, locret_ms = rows["ceiling"].get(label), rows["locret"].get(label, 0.0)
    ceiling_text = "-" if ceiling is None else f"{ceiling / chunks * 1e3:.1f}"
    print(
        f"| {label} | {ceiling_text} | {locret_ms / chunks * 1e3:.1f} | "
        f"{(locret_ms - (ceiling or 0.0)) / chunks * 1e3:+.1f} |"
    )
print(f"\nlocret / ceiling tok/s: {rows['ceiling']['whole chunk'] / rows['locret']['whole chunk']:.1%}")
