"""Locret's prefill against its ceiling, plain transformers chunk forwards over a cache of ``budget`` entries.

    python -m benchmark.overhead --model HuggingFaceTB/SmolLM2-135M-Instruct --budget 1024 --chunk-size 512
    python -m benchmark.overhead --budget 256 1024 --dtype bfloat16 float32 --tokens 16384

Both sides run the same chunks of ``chunk_size`` new tokens, alternating, in one process: (a) transformers
with a ``DynamicCache`` (the ceiling: no heads, no eviction, no re-rotation), (b) Locret with its evicting
cache (heads, re-packed RoPE, top-k eviction back to ``budget``). With ``--tokens``, a third side (c) is the
ceiling again with transformers' SDPA told to share KV heads as Locret's CPU chunks do
(``TRANSFORMERS_SDPA_FORCE_GQA=1``, ``locret.attention``): against it, Locret's share is its own overhead alone,
without the faster attention call. Every budget and dtype given runs in the same
process (one model load per dtype), and a table of Locret's throughput as a share of the ceiling ends the run.

Without ``--tokens``: one steady-state chunk over ``budget`` cached entries, median of ``--repeats``, plus the
share of Locret's chunk time spent scoring and evicting (torch.profiler events). With ``--tokens N``: the whole
chunked prefill of N random tokens (the loop of ``locret.prefill_prompt``) against the same chunks over a
``DynamicCache`` cropped to its newest ``budget`` entries after each chunk, the two advancing chunk by chunk in
turn: the median of ``--repeats`` whole prefills, and the sum of every chunk's fastest of the repeats (on a
shared machine another tenant only adds time; this estimates both sides' uncontended cost alike).
``--allocation uniform profile:smollm2_4k`` adds a row per budget allocation (each against its own ceiling
runs, in the same process). ``--scorer h2o`` (or ``snapkv``, ``streaming_llm``) runs a baseline's scorer in
the same evicting cache instead of the retaining heads: its rescoring from attention counts as eviction time;
settings follow the name as in ``benchmark.run``'s methods (``--scorer lines:max_line=32``).
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import time
from collections.abc import Callable
from functools import partial
from unittest import mock

import torch
from torch.profiler import ProfilerActivity, profile
from transformers import DynamicCache

import locret
from benchmark.methods import parse_method
from benchmark.methods.profiles import allocation_settings
from locret.compat import CACHE_KWARG
from locret.config import EVICTION_KERNELS, default_stabilizers
from locret.hardware import resolve_device, resolve_dtype, reuse_freed_memory
from locret.models.base import EVICT_EVENT, SCORE_EVENT
from locret.prefill import new_cache, prefill_chunk
from locret.scorers import EntryScorer, ScorerChoice

try:
    import resource
except ImportError:  # Windows
    resource = None


def synchronizer(device: torch.device) -> Callable[[], None]:
    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


def timed(run: Callable[[], None], sync: Callable[[], None]) -> float:
    sync()
    started = time.perf_counter()
    run()
    sync()
    return time.perf_counter() - started


def random_ids(model, length: int, device: torch.device) -> torch.Tensor:
    return torch.randint(100, model.config.vocab_size - 100, (1, length), device=device)


def steady_chunk(model, config: locret.LocretConfig, scorer: str, repeats: int, device: torch.device):
    """Seconds per chunk of ``chunk_size`` over ``budget`` cached entries for each side, and the shares of a
    profiled Locret chunk spent scoring and evicting."""
    ids = random_ids(model, config.budget + config.chunk_size, device)
    history, chunk = ids[:, : config.budget], ids[:, config.budget :]
    sync = synchronizer(device)

    def vanilla_cache() -> DynamicCache:
        cache = DynamicCache(config=model.config)
        model.model(input_ids=history, **{CACHE_KWARG: cache})
        return cache

    def evicting_cache():
        cache = new_cache(model, config, scorer=build_scorer(scorer))
        model.model(input_ids=history, **{CACHE_KWARG: cache})
        cache.prefilling = True
        return cache

    def chunk_seconds(cache) -> float:
        return timed(lambda: model.model(input_ids=chunk, **{CACHE_KWARG: cache}), sync)

    times: dict[str, list[float]] = {"ceiling": [], "locret": []}
    chunk_seconds(vanilla_cache()), chunk_seconds(evicting_cache())  # warm-up
    for _ in range(repeats):
        times["ceiling"].append(chunk_seconds(vanilla_cache()))
        times["locret"].append(chunk_seconds(evicting_cache()))
    cache = evicting_cache()  # outside the profile: only the timed chunk's events count
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        total = chunk_seconds(cache)
    events = {e.key: e for e in prof.key_averages()}

    def share(name: str) -> float:
        event = events.get(name)
        spent = (event.device_time_total if device.type == "cuda" else event.cpu_time_total) if event else 0
        return spent / 1e6 / total

    return times, {"scoring": share(SCORE_EVENT), "eviction": share(EVICT_EVENT)}


def minor_faults() -> int:
    """The process's minor page faults so far (0 where ``resource`` is missing: Windows)."""
    return 0 if resource is None else resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def with_grouped_sdpa(run: Callable[[], None]) -> None:
    """``run`` with transformers' SDPA sharing each KV head with its query group instead of repeating it
    (``TRANSFORMERS_SDPA_FORCE_GQA``, read at every call): the attention call of Locret's CPU chunks."""
    with mock.patch.dict(os.environ, {"TRANSFORMERS_SDPA_FORCE_GQA": "1"}):
        run()


def whole_prefill(
    model, config: locret.LocretConfig, scorer: str, tokens: int, repeats: int, device: torch.device
) -> tuple[dict[str, list[list[float]]], int, dict[str, float]]:
    """Seconds of every chunk of Locret's chunked prefill of ``tokens`` random tokens and of the ceilings'
    same chunks (transformers' attention, and with grouped SDPA: ``with_grouped_sdpa``), per repeat
    (``[repeat][chunk]``), the number of tokens all prefill (all but the local tail), and each side's minor
    page faults per chunk (memory the allocator handed back to the OS and faulted in again; from the second
    repeat on, when there is one, so that first-touch growth is left out).

    The prefills advance together, one chunk each in turn (which goes first rotates), so a machine whose
    speed drifts during the run (shared CPUs) slows all alike. Locret's side is the loop of
    ``locret.prefill_prompt``: ``prefill_chunk`` over its evicting cache (a chunk forward, and for a scorer
    that rescores each chunk, such as the shipped heads' recommended ``lines``, its scoring and eviction)."""
    ids = random_ids(model, tokens, device)
    end = tokens - max(config.n_local, 1)
    sync = synchronizer(device)

    def ceiling_chunk(cache: DynamicCache, chunk: torch.Tensor) -> None:
        model.model(input_ids=chunk, **{CACHE_KWARG: cache})
        for layer in cache.layers:
            layer.keys, layer.values = (
                layer.keys[..., -config.budget :, :],
                layer.values[..., -config.budget :, :],
            )

    sides = ("ceiling", "grouped ceiling", "locret")
    times: dict[str, list[list[float]]] = {name: [] for name in sides}
    faults = dict.fromkeys(sides, 0)
    for repeat in range(repeats):
        ceiling_cache = DynamicCache(config=model.config)
        grouped_cache = DynamicCache(config=model.config)
        evicting_cache = new_cache(model, config, scorer=build_scorer(scorer))
        evicting_cache.prefilling = True
        spent: dict[str, list[float]] = {name: [] for name in sides}
        for index, start in enumerate(range(0, end, config.chunk_size)):
            chunk = ids[:, start : min(start + config.chunk_size, end)]
            runs = {
                "ceiling": partial(ceiling_chunk, ceiling_cache, chunk),
                "grouped ceiling": partial(with_grouped_sdpa, partial(ceiling_chunk, grouped_cache, chunk)),
                "locret": partial(prefill_chunk, model, evicting_cache, ids, start, start + chunk.shape[1]),
            }
            shift = index % len(sides)
            for name in sides[shift:] + sides[:shift]:
                before = minor_faults()
                spent[name].append(timed(runs[name], sync))
                if repeat > 0 or repeats == 1:
                    faults[name] += minor_faults() - before
        for name, seconds in spent.items():
            times[name].append(seconds)
    counted = max(repeats - 1, 1) * len(times["locret"][0])
    return times, end, {name: count / counted for name, count in faults.items()}


def best_of_each_chunk(chunk_times: list[list[float]]) -> float:
    """A prefill's seconds with every chunk at its fastest over the repeats: on a shared machine another
    tenant only ever adds time, so this estimates the uncontended cost of both sides alike."""
    return sum(min(repeat[chunk] for repeat in chunk_times) for chunk in range(len(chunk_times[0])))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="HuggingFaceTB/SmolLM2-135M-Instruct")
    parser.add_argument("--budget", type=int, nargs="+", default=[1024])
    parser.add_argument("--chunk-size", type=int, default=512)
    parser.add_argument("--score-pooling", type=int, default=1)
    parser.add_argument("--tokens", type=int, default=None, help="time a whole prefill of this many tokens")
    parser.add_argument("--repeats", type=int, default=None, help="default: 5 steady chunks, 1 whole prefill")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", nargs="+", default=["auto"])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--eviction-kernel", choices=EVICTION_KERNELS, default="torch")
    parser.add_argument(
        "--scorer",
        default="locret",
        help="a locret.scorers.SCORERS name, settings after it (lines:max_line=32); a scorer that rescores "
        "each chunk (lines, surprisal, reconstruct) needs --tokens",
    )
    parser.add_argument(
        "--heads",
        default=None,
        help="a heads-only adapter directory (default: the heads shipped for --model); a heads' cost "
        "depends on its width only, so this measures a candidate before it ships",
    )
    parser.add_argument(
        "--heads-dtype",
        choices=["float32", "model"],
        default="float32",
        help="the retaining heads' dtype: float32 (the library default) or the model's (heads_dtype=None)",
    )
    parser.add_argument(
        "--allocation",
        nargs="+",
        default=["uniform"],
        help="Locret's budget_allocation, one row each: uniform, adaptive, or profile:NAME (a profile of "
        "benchmark/results/head_budget_profiles)",
    )
    parser.add_argument(
        "--allocator",
        choices=["default", "reuse-freed"],
        default="default",
        help="reuse-freed: locret.hardware.reuse_freed_memory() first (glibc keeps freed memory; both sides)",
    )
    args = parser.parse_args()
    try:
        allocations = {name: allocation_settings(name) for name in args.allocation}
    except ValueError as error:
        parser.error(str(error))
    if args.allocator == "reuse-freed" and not reuse_freed_memory():
        parser.error("--allocator reuse-freed needs glibc (reuse_freed_memory() changed nothing here)")
    try:
        scorer_cls = type(build_scorer(args.scorer))
    except ValueError as error:
        parser.error(str(error))
    if args.tokens is None and scorer_cls.rescores_chunks:
        # the steady chunk is a single chunk forward: a scorer with a pass of its own per chunk cannot run
        parser.error(f"--scorer {args.scorer} rescores each chunk: time a whole prefill (--tokens)")
    if args.tokens is not None and args.tokens <= args.chunk_size:
        parser.error(f"--tokens must exceed --chunk-size ({args.chunk_size}), got {args.tokens}")
    repeats = args.repeats or (5 if args.tokens is None else 1)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    what = (
        f"whole prefill of {args.tokens} tokens"
        if args.tokens
        else f"chunk of {args.chunk_size} over budget cached entries"
    )
    print(
        f"model {args.model}, {device}, threads {torch.get_num_threads()}, scorer {args.scorer} "
        f"(heads {args.heads or 'shipped'}, {args.heads_dtype}), allocator {args.allocator}; {what}, "
        f"median of {repeats}"
    )
    rows = []
    for dtype_name in args.dtype:
        dtype = resolve_dtype(dtype_name, device)
        heads_dtype = torch.float32 if args.heads_dtype == "float32" else None
        model = (
            locret.from_pretrained(args.model, args.heads, dtype=dtype, heads_dtype=heads_dtype)
            .to(device)
            .eval()
        )
        for budget, (allocation, settings) in itertools.product(args.budget, allocations.items()):
            config = locret.LocretConfig(
                budget=budget,
                chunk_size=args.chunk_size,
                n_stabilizers=max(default_stabilizers(budget), args.score_pooling // 2),
                score_pooling=args.score_pooling,
                eviction_kernel=args.eviction_kernel,
                **settings,
            )
            with torch.no_grad():
                if args.tokens is None:
                    times, shares = steady_chunk(model, config, args.scorer, repeats, device)
                    tokens, best, faults = args.chunk_size, None, None
                else:
                    chunk_times, tokens, faults = whole_prefill(
                        model, config, args.scorer, args.tokens, repeats, device
                    )
                    times = {name: [sum(run) for run in runs] for name, runs in chunk_times.items()}
                    best = {name: best_of_each_chunk(runs) for name, runs in chunk_times.items()}
                    shares = None
            median = {name: statistics.median(values) for name, values in times.items()}
            speed = {name: tokens / seconds for name, seconds in median.items()}
            rows.append((str(dtype).removeprefix("torch."), budget, allocation, speed, best))
            print(
                f"{rows[-1][0]} budget {budget} allocation {allocation}: "
                + ", ".join(
                    f"{label(name, args.scorer)} {median[name] * 1000:.1f} ms ({speed[name]:.1f} tok/s)"
                    for name in times
                )
                + "; every run (s): "
                + "; ".join(
                    f"{label(name, args.scorer)} " + ", ".join(f"{t:.2f}" for t in times[name])
                    for name in times
                )
                + (
                    f"; every chunk at its fastest of {repeats}: "
                    + ", ".join(f"{label(name, args.scorer)} {best[name]:.2f} s" for name in best)
                    + "; minor page faults per chunk: "
                    + ", ".join(f"{label(name, args.scorer)} {faults[name]:.0f}" for name in faults)
                    if best
                    else ""
                )
                + (
                    f"; profiled {args.scorer} chunk: scoring {shares['scoring']:.1%}, "
                    f"eviction {shares['eviction']:.1%}"
                    if shares
                    else ""
                ),
                flush=True,
            )
        del model
    print_table(rows, args.scorer, whole=args.tokens is not None)


def build_scorer(spec: str) -> EntryScorer:
    """The scorer ``spec`` names, ``NAME[:key=value...]`` (``lines:max_line=32``); a ValueError for an unknown
    name or setting."""
    return ScorerChoice(*parse_method(spec)).build()


def label(side: str, scorer: str) -> str:
    return scorer if side == "locret" else side


def print_table(rows: list[tuple], scorer: str, whole: bool) -> None:
    """Locret's throughput as a share of each ceiling: median runs, and (a whole prefill) every chunk at its
    fastest; the grouped-SDPA ceiling's columns exist for whole prefills only."""
    columns = ["ceiling tok/s", f"{scorer} tok/s", "share of the ceiling (median runs)"]
    if whole:
        columns += [
            "share, every chunk at its fastest",
            "grouped-SDPA ceiling tok/s",
            "share of it (median runs)",
            "share of it, every chunk at its fastest",
        ]
    print("\n| dtype | budget | allocation | " + " | ".join(columns) + " |")
    print("|---|---|---|" + "---|" * len(columns))
    for dtype_name, budget, allocation, speed, best in rows:
        cells = [
            f"{speed['ceiling']:.1f}",
            f"{speed['locret']:.1f}",
            f"{speed['locret'] / speed['ceiling']:.1%}",
        ]
        if whole:
            cells += [
                f"{best['ceiling'] / best['locret']:.1%}",
                f"{speed['grouped ceiling']:.1f}",
                f"{speed['locret'] / speed['grouped ceiling']:.1%}",
                f"{best['grouped ceiling'] / best['locret']:.1%}",
            ]
        print(f"| {dtype_name} | {budget} | {allocation} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
