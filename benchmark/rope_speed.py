"""``locret.rope.apply_rope`` against the textbook ``x * cos + rotate_half(x) * sin`` in a tight loop.

    python -m benchmark.rope_speed --threads 2

Shapes of SmolLM2-135M at budget 1024 and chunk 512: the stored keys Locret re-rotates every prefill chunk
``[1, 3, 1536, 64]`` and the chunk's queries ``[1, 9, 512, 64]`` (a transposed view, as the attention has
them). Prints the best of 5 timings of ``--calls`` calls each, per call, and checks both are bit-identical.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from locret.rope import apply_rope, rotate_half


def textbook(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    return x * cos + rotate_half(x) * sin


def best_ms(rotate: Callable, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, calls: int) -> float:
    for _ in range(10):
        rotate(x, cos, sin)
    times = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(calls):
            rotate(x, cos, sin)
        times.append((time.perf_counter() - started) / calls * 1e3)
    return min(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"threads {torch.get_num_threads()}, best of 5 x {args.calls} calls, ms per call\n")
    print("| dtype | tensor | textbook | apply_rope | ratio |\n|---|---|---|---|---|")
    generator = torch.Generator().manual_seed(0)
    for dtype in (torch.bfloat16, torch.float32):
        shapes = {
            "keys [1, 3, 1536, 64]": torch.randn(1, 3, 1536, 64, generator=generator),
            "queries [1, 9, 512, 64] (view)": torch.randn(1, 512, 9, 64, generator=generator).transpose(1, 2),
        }
        for name, x in shapes.items():
            x = x.to(dtype)
            length = x.shape[-2]
            cos, sin = (torch.randn(length, 64, generator=generator).to(dtype) for _ in range(2))
            if not torch.equal(apply_rope(x, cos, sin), textbook(x, cos, sin)):
                raise SystemExit(f"apply_rope differs from the textbook formula for {name}, {dtype}")
            plain = best_ms(textbook, x, cos, sin, args.calls)
            ours = best_ms(apply_rope, x, cos, sin, args.calls)
            print(
                f"| {str(dtype).removeprefix('torch.')} | {name} | {plain:.3f} | {ours:.3f} | {ours / plain:.3g} |"
            )


if __name__ == "__main__":
    main()
