"""Time one eviction step, torch reference vs the fused Triton kernels, at the paper's cache shapes (CUDA only).

    python -m benchmark.eviction_kernel [--out benchmark/results/eviction_kernel_<gpu>.json]

Per case: a layer's cache of ``budget + chunk`` entries per KV head (keys and values bf16, float32 scores) is
evicted to ``budget`` entries with ``n_stabilizers`` protected, as after every prefill chunk. Reports the
median milliseconds per layer of each backend, their ratio, and checks that both keep the same entries.
Multiply by the layer count for the cost per chunk. The GPU model is written beside the numbers.
"""

from __future__ import annotations

import argparse
import json
import statistics
from functools import partial
from pathlib import Path

import torch

from locret.eviction import torch_evict

# name: (batch, kv heads, head dim, budget, chunk, stabilizers, layers); docs/design.md, section 4.
CASES = {
    "llama-3.1-8b": (1, 8, 128, 16384, 1024, 2500, 32),
    "phi-3-mini-128k": (1, 32, 96, 6000, 3072, 2500, 32),
    "smollm2-135m": (1, 3, 64, 1024, 512, 256, 30),
}


def median_ms(fn, repeats: int) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--out", default=None, help="JSON file for the results (default: print only)")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("needs a CUDA GPU: Triton's CPU interpreter is for correctness tests, not timing")
    from locret.eviction_triton import triton_evict

    gpu = torch.cuda.get_device_name()
    rows = []
    for name, (batch, heads, dim, budget, chunk, n_protect, layers) in CASES.items():
        length = budget + chunk
        keys = torch.randn(batch, heads, length, dim, device="cuda", dtype=torch.bfloat16)
        values = torch.randn_like(keys)
        scores = torch.randn(batch, heads, length, device="cuda").to(torch.bfloat16).float()
        inputs = (keys, values, scores, budget, n_protect)
        same = all(
            torch.equal(a, b) for a, b in zip(torch_evict(*inputs), triton_evict(*inputs), strict=True)
        )
        torch_ms = median_ms(partial(torch_evict, *inputs), args.repeats)
        triton_ms = median_ms(partial(triton_evict, *inputs), args.repeats)
        row = {
            "case": name,
            "gpu": gpu,
            "cache_entries": length,
            "kept": budget,
            "kv_heads": heads,
            "head_dim": dim,
            "torch_ms_per_layer": round(torch_ms, 4),
            "triton_ms_per_layer": round(triton_ms, 4),
            "torch_over_triton": round(torch_ms / triton_ms, 2),
            "ms_per_chunk_all_layers": {
                "torch": round(torch_ms * layers, 3),
                "triton": round(triton_ms * layers, 3),
            },
            "identical": same,
        }
        rows.append(row)
        print(json.dumps(row))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
