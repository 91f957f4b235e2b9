"""Probe (issue 28): selecting 1024 of 1536 kept rows per KV head (3 heads, 64-wide bf16 rows), several ways,
against a plain copy of the same bytes.

    python benchmark/results/prefill_ceiling/probes/gather_speed.py
"""

import torch
from common import time_ms

torch.set_num_threads(2)
HEADS, STORED, DIM, KEEP = 3, 1536, 64, 1024
x = torch.randn(HEADS * STORED, DIM, dtype=torch.bfloat16)
kept = torch.sort(torch.randperm(STORED)[:KEEP]).values
rows = (kept[None, :] + torch.arange(HEADS)[:, None] * STORED).flatten()
out = torch.empty(HEADS * KEEP, DIM, dtype=torch.bfloat16)
as_int64 = x.view(torch.int64)
cases = {
    "index_select": lambda: x.index_select(0, rows),
    "index_select out=": lambda: torch.index_select(x, 0, rows, out=out),
    "index_select int64 view": lambda: as_int64.index_select(0, rows),
    "advanced indexing": lambda: x[rows],
    "clone (memcpy reference)": lambda: x[: HEADS * KEEP].clone(),
    "cat of 1536 rows (the ceiling's append)": lambda: torch.cat([x[: HEADS * KEEP], x[: HEADS * 512]]),
}
for name, function in cases.items():
    fastest, median = time_ms(function, calls=300)
    print(f"{name:40s} min {fastest * 1e3:7.1f} us, median {median * 1e3:7.1f} us")
