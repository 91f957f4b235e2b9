"""Probe (issue 28): one chunk's KV bookkeeping for 30 SmolLM2-shaped layers, bf16: today's cat + row gather
against preallocated, double-buffered, sequence-major storage (copy the new chunk in, gather kept rows out=).

    python benchmark/results/prefill_ceiling/probes/prealloc_storage.py
"""

import torch
from common import time_ms

torch.set_num_threads(2)
LAYERS, BATCH, HEADS, DIM, BUDGET, CHUNK = 30, 1, 3, 64, 1024, 512
CAPACITY = BUDGET + CHUNK
dtype = torch.bfloat16
new_keys = [torch.randn(BATCH, HEADS, CHUNK, DIM, dtype=dtype) for _ in range(LAYERS)]
keys = [torch.randn(BATCH, HEADS, BUDGET, DIM, dtype=dtype) for _ in range(LAYERS)]
values = [torch.randn(BATCH, HEADS, BUDGET, DIM, dtype=dtype) for _ in range(LAYERS)]
kept = torch.sort(torch.randperm(CAPACITY)[:BUDGET]).values
rows_head_major = (kept[None, :] + torch.arange(HEADS)[:, None] * CAPACITY).flatten()
rows_seq_major = (kept[:, None] * (BATCH * HEADS) + torch.arange(BATCH * HEADS)[None, :]).flatten()
key_buffers = [
    [torch.randn(CAPACITY, BATCH, HEADS, DIM, dtype=dtype) for _ in range(2)] for _ in range(LAYERS)
]
value_buffers = [
    [torch.randn(CAPACITY, BATCH, HEADS, DIM, dtype=dtype) for _ in range(2)] for _ in range(LAYERS)
]
current_buffer = [0] * LAYERS


def today() -> None:
    for layer in range(LAYERS):
        joined_keys = torch.cat([keys[layer], new_keys[layer]], dim=-2)
        joined_values = torch.cat([values[layer], new_keys[layer]], dim=-2)
        keys[layer] = (
            joined_keys.reshape(-1, DIM).index_select(0, rows_head_major).view(BATCH, HEADS, BUDGET, DIM)
        )
        values[layer] = (
            joined_values.reshape(-1, DIM).index_select(0, rows_head_major).view(BATCH, HEADS, BUDGET, DIM)
        )


def preallocated() -> None:
    for layer in range(LAYERS):
        for buffers in (key_buffers, value_buffers):
            source, target = buffers[layer][current_buffer[layer]], buffers[layer][1 - current_buffer[layer]]
            source[BUDGET:CAPACITY].copy_(new_keys[layer].permute(2, 0, 1, 3))
            out = target.view(-1, DIM)[: BUDGET * BATCH * HEADS]
            torch.index_select(source.view(-1, DIM), 0, rows_seq_major, out=out)
        current_buffer[layer] = 1 - current_buffer[layer]


for _ in range(2):
    for name, function in (("today", today), ("preallocated", preallocated)):
        fastest, median = time_ms(function, calls=30)
        print(f"{name:12s} min {fastest:.2f} ms, median {median:.2f} ms per chunk (30 layers)")
