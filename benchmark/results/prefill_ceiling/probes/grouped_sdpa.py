"""Probe (issue 28): CPU SDPA for one SmolLM2 prefill chunk (9 query heads, 3 KV heads, head dim 64, 512
queries, bool causal mask) with the KV heads repeated as transformers' ``sdpa`` does under a mask, against
grouped KV heads (``enable_gqa``, ``locret.attention``); the outputs are compared for exact equality.

    PYTHONPATH=. python benchmark/results/prefill_ceiling/probes/grouped_sdpa.py
"""

import torch
import torch.nn.functional as F
from common import time_ms

QUERIES, QUERY_HEADS, KV_HEADS, DIM = 512, 9, 3, 64


def compare(dtype: torch.dtype, stored: int, threads: int) -> str:
    torch.set_num_threads(threads)
    generator = torch.Generator().manual_seed(0)
    query = torch.randn(1, QUERIES, QUERY_HEADS, DIM, generator=generator).to(dtype).transpose(1, 2)
    key, value = (torch.randn(1, KV_HEADS, stored, DIM, generator=generator).to(dtype) for _ in range(2))
    slots = torch.arange(stored)
    mask = (slots[None, :] <= torch.arange(stored - QUERIES, stored)[:, None])[None, None]
    group = QUERY_HEADS // KV_HEADS

    def repeated():
        def spread(x):
            return x[:, :, None].expand(1, KV_HEADS, group, stored, DIM).reshape(1, QUERY_HEADS, stored, DIM)

        return F.scaled_dot_product_attention(query, spread(key), spread(value), attn_mask=mask, scale=0.125)

    def grouped():
        return F.scaled_dot_product_attention(query, key, value, attn_mask=mask, scale=0.125, enable_gqa=True)

    equal = torch.equal(repeated(), grouped())
    slow, fast = time_ms(repeated, calls=20)[0], time_ms(grouped, calls=20)[0]
    name = str(dtype).removeprefix("torch.")
    return (
        f"{name}, {stored} entries, {threads} threads: repeated {slow:.2f} ms, grouped {fast:.2f} ms "
        f"({fast / slow:.2f}x), equal {equal}"
    )


for dtype in (torch.bfloat16, torch.float32):
    for stored in (768, 1536):
        for threads in (1, 2):
            print(compare(dtype, stored, threads), flush=True)
