"""What Locret adds to one steady-state prefill chunk, against the same chunk in plain transformers.

    python -m benchmark.overhead --model HuggingFaceTB/SmolLM2-135M-Instruct --budget 1024 --chunk-size 512

Both sides run the same chunk of ``chunk_size`` new tokens over a cache of ``budget`` entries, alternating,
in one process: (a) transformers with a ``DynamicCache`` (the ceiling: no heads, no eviction, no
re-rotation), (b) Locret with its evicting cache holding ``budget`` entries (heads, re-packed RoPE,
top-k eviction back to ``budget``). Prints the median times, Locret's throughput as a share of the
ceiling, and the share of Locret's chunk time spent scoring and evicting (torch.profiler events).
``--scorer h2o`` (or ``snapkv``, ``streaming_llm``) runs a baseline's scorer in the same evicting cache
instead of the retaining heads: its rescoring from attention counts as eviction time.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.profiler import ProfilerActivity, profile
from transformers import DynamicCache

import locret
from locret.config import EVICTION_KERNELS, default_stabilizers
from locret.generation import new_cache
from locret.hardware import resolve_device, resolve_dtype
from locret.models.base import EVICT_EVENT, SCORE_EVENT
from locret.scorers import SCORERS


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="HuggingFaceTB/SmolLM2-135M-Instruct")
    parser.add_argument("--budget", type=int, default=1024)
    parser.add_argument("--chunk-size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--eviction-kernel", choices=EVICTION_KERNELS, default="torch")
    parser.add_argument("--scorer", choices=sorted(SCORERS), default="locret")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    model = locret.from_pretrained(args.model, dtype=resolve_dtype(args.dtype, device)).to(device).eval()
    config = locret.LocretConfig(
        budget=args.budget,
        chunk_size=args.chunk_size,
        n_stabilizers=default_stabilizers(args.budget),
        eviction_kernel=args.eviction_kernel,
    )
    ids = torch.randint(100, model.config.vocab_size - 100, (1, args.budget + args.chunk_size), device=device)
    history, chunk = ids[:, : args.budget], ids[:, args.budget :]
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def vanilla_cache() -> DynamicCache:
        cache = DynamicCache(config=model.config)
        model.model(input_ids=history, past_key_values=cache)
        return cache

    def evicting_cache():
        cache = new_cache(model, config, scorer=SCORERS[args.scorer]())
        model.model(input_ids=history, past_key_values=cache)
        cache.prefilling = True
        return cache

    def timed_chunk(cache) -> float:
        sync()
        started = time.perf_counter()
        model.model(input_ids=chunk, past_key_values=cache)
        sync()
        return time.perf_counter() - started

    times: dict[str, list[float]] = {"transformers": [], args.scorer: []}
    with torch.no_grad():
        timed_chunk(vanilla_cache()), timed_chunk(evicting_cache())  # warm-up
        for _ in range(args.repeats):
            times["transformers"].append(timed_chunk(vanilla_cache()))
            times[args.scorer].append(timed_chunk(evicting_cache()))
        cache = evicting_cache()  # outside the profile: only the timed chunk's events count
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        with profile(activities=activities) as prof:
            total = timed_chunk(cache)
    events = {e.key: e for e in prof.key_averages()}

    def share(name: str) -> float:
        event = events.get(name)
        spent = (event.device_time_total if device.type == "cuda" else event.cpu_time_total) if event else 0
        return spent / 1e6 / total

    median = {name: statistics.median(values) for name, values in times.items()}
    print(f"model {args.model}, {model.dtype}, {device}, threads {torch.get_num_threads()}")
    print(f"chunk of {args.chunk_size} tokens over {args.budget} cached entries, median of {args.repeats}:")
    for name, seconds in median.items():
        print(f"  {name:12s} {seconds * 1000:8.1f} ms  {args.chunk_size / seconds:7.1f} tokens/s")
    ceiling = median["transformers"] / median[args.scorer]
    print(f"{args.scorer} throughput = {ceiling:.1%} of the transformers ceiling")
    print(
        f"share of a profiled {args.scorer} chunk: scoring {share(SCORE_EVENT):.1%}, "
        f"eviction {share(EVICT_EVENT):.1%}"
    )


if __name__ == "__main__":
    main()
