"""Decoding speed after a long prefill: Locret's eager and static decode steps against plain transformers
decoding with a cache of the same number of entries (per layer and KV head, on average), in one process and
one dtype.

    python -m benchmark.decode_speed --length 8192 --budget 1024 --tokens 128 --dtype bfloat16 --threads 2
    python -m benchmark.decode_speed --decode-budget 1024 --flat-tokens 2000 --segment 250

Locret prefills ``--length`` random tokens once (``budget`` entries plus the ``n_local`` tail are then
stored). Every method then decodes ``--tokens`` greedy tokens from a copy of that state, in ``--rounds``
interleaved rounds (median reported, so a neighbour's load spread over the run hits every method alike):

- ``locret_eager``: ``model(input_ids=..., cache=LocretCache)`` per step (``static_decode=False``);
- ``locret_static``: ``locret.static_decode`` steps, what ``locret.generate`` runs by default (without
  ``decode_budget`` the new entries of its own, discarded cache are not scored);
- ``locret_static_scored`` (without ``--decode-budget``): the same steps scoring every new entry, as for a
  cache the caller keeps (``generate(cache=...)``, ``Session.ask``);
- ``locret_compiled`` (``--compile``): ``locret_static`` through ``torch.compile`` (compile time reported);
- ``plain_sdpa`` / ``plain_eager``: the same backbone with a transformers ``DynamicCache`` prefilled with as
  many tokens as Locret's cache holds (no heads, no eviction), attention ``sdpa`` (transformers' default)
  and ``eager``.

With ``--decode-budget`` the cache is also evicted while decoding; ``--flat-tokens`` then decodes that many
tokens with the static steps and reports tok/s per ``--segment`` tokens (flat means: no slowdown as the
generation grows), both as the segment's mean and as one over its median step time (which a neighbour's short
burst of load does not move). Results go to ``--out`` as JSON and markdown.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from transformers import DynamicCache

import locret
from benchmark.methods.profiles import allocation_settings
from benchmark.run import git_commit, machine
from locret.compat import CACHE_KWARG
from locret.generation import decode, prefill_prompt
from locret.hardware import resolve_dtype
from locret.static_decode import StaticDecoder

Step = Callable[[torch.Tensor], torch.Tensor]


def prefill(model, ids: torch.Tensor, config: locret.LocretConfig):
    """Locret's cache after the prefill and the tail forward, and the tail's logits."""
    cache = prefill_prompt(model, ids, config)
    tail = ids[:, cache.get_seq_length() :]
    logits = model(input_ids=tail, use_cache=True, logits_to_keep=1, **{CACHE_KWARG: cache}).logits[:, -1]
    return cache, logits


def locret_steps(model, cache, method: str, steps: int) -> Step:
    """``locret_eager``: the model's forward per step; the static ones: ``StaticDecoder`` steps, scoring the
    new entries only where ``generate`` does (decode-time eviction, or a cache the caller keeps: ``_scored``)."""
    if method == "locret_eager":
        return lambda tokens: model(input_ids=tokens[:, None], use_cache=True, **{CACHE_KWARG: cache}).logits[
            :, -1
        ]
    compiled = method == "locret_compiled"
    return StaticDecoder(model, cache, steps, compile=compiled, score=method == "locret_static_scored").step


def plain_steps(model, ids: torch.Tensor, entries: int, attention: str):
    """A plain transformers decode over a ``DynamicCache`` of ``entries`` tokens, and its first logits."""
    model.set_attn_implementation(attention)
    cache = DynamicCache()
    logits = model(input_ids=ids[:, :entries], use_cache=True, logits_to_keep=1, **{CACHE_KWARG: cache})

    def step(tokens: torch.Tensor) -> torch.Tensor:
        return model(input_ids=tokens[:, None], use_cache=True, **{CACHE_KWARG: cache}).logits[:, -1]

    return step, logits.logits[:, -1]


def timed_decode(
    step: Step, logits: torch.Tensor, ids: torch.Tensor, tokens: int, marks: list[float]
) -> float:
    """Decode ``tokens`` greedy tokens; ``marks`` receives the time of every step. Returns tok/s."""

    def marked(next_tokens: torch.Tensor) -> torch.Tensor:
        out = step(next_tokens)
        marks.append(time.perf_counter())
        return out

    _, seconds = decode(marked, logits, ids, tokens + 1, eos_token_id=[])
    return tokens / seconds


def mean_entries(cache) -> int:
    """Entries per layer and KV head, on average (a per-head allocation's heads and layers differ)."""
    held = [
        layer.stored_length() if layer.head_pads is None else layer.held_entries().float().sum(-1).mean()
        for layer in cache.layers
    ]
    return round(float(sum(held)) / len(held))


@torch.no_grad()
def compare(model, ids, config, args) -> dict:
    """Median tok/s of every method over interleaved rounds, and the compile time."""
    cache, first_logits = prefill(model, ids, config)
    entries = mean_entries(cache)
    attention = model.config._attn_implementation
    methods = ["locret_eager", "locret_static", "plain_sdpa", "plain_eager"]
    if config.decode_budget is None:
        methods.insert(2, "locret_static_scored")
    compile_seconds = None
    if args.compile:
        methods.insert(2, "locret_compiled")
        warm = StaticDecoder(model, copy.deepcopy(cache), args.tokens, compile=True, score=False)
        started = time.perf_counter()
        warm.step(first_logits.argmax(-1))
        compile_seconds = time.perf_counter() - started
        print(f"compile: {compile_seconds:.1f} s (first compiled step)", flush=True)
    speeds: dict[str, list[float]] = {name: [] for name in methods}
    for round_index in range(args.rounds):
        for name in methods:
            if name.startswith("plain"):
                step, logits = plain_steps(model, ids, entries, name.removeprefix("plain_"))
            else:
                step = locret_steps(model, copy.deepcopy(cache), name, args.tokens)
                logits = first_logits
            speeds[name].append(timed_decode(step, logits, ids, args.tokens, []))
            model.set_attn_implementation(attention)
            print(f"round {round_index + 1} {name}: {speeds[name][-1]:.1f} tok/s", flush=True)
    median = {name: statistics.median(values) for name, values in speeds.items()}
    best_plain = max(median["plain_sdpa"], median["plain_eager"])
    return {
        "entries": entries,
        "tokens": args.tokens,
        "rounds": speeds,
        "median_tok_s": median,
        "ratio_static_to_plain_sdpa": median["locret_static"] / median["plain_sdpa"],
        "ratio_static_to_best_plain": median["locret_static"] / best_plain,
        "ratio_static_to_locret_eager": median["locret_static"] / median["locret_eager"],
        "ratio_compiled_to_best_plain": median["locret_compiled"] / best_plain if args.compile else None,
        "compile_seconds": compile_seconds,
    }


@torch.no_grad()
def flatness(model, ids, config, args, mode: str) -> dict:
    """tok/s per ``segment`` over ``flat_tokens`` generated tokens with decode-time eviction."""
    cache, logits = prefill(model, ids, config)
    step = locret_steps(model, cache, f"locret_{mode}", args.flat_tokens)
    marks: list[float] = [time.perf_counter()]
    timed_decode(step, logits, ids, args.flat_tokens, marks)
    ends = range(args.segment, len(marks), args.segment)
    segments = [args.segment / (marks[end] - marks[end - args.segment]) for end in ends]
    # a neighbour's burst of load lengthens a few steps by a lot; the median step of a segment ignores it
    steps = [marks[i] - marks[i - 1] for i in range(1, len(marks))]
    medians = [1 / statistics.median(steps[end - args.segment : end]) for end in ends]
    return {
        "mode": mode,
        "tokens": args.flat_tokens,
        "segment": args.segment,
        "tok_s_per_segment": segments,
        "max_over_min": max(segments) / min(segments),
        "last_over_first": segments[-1] / segments[0],
        "median_step_tok_s_per_segment": medians,
        "median_max_over_min": max(medians) / min(medians),
        "median_last_over_first": medians[-1] / medians[0],
        "stored_after": cache.stored_length() if mode == "eager" else None,
    }


def markdown(result: dict) -> str:
    s = result["settings"]
    lines = [
        f"# Decoding speed: {s['model']}, {s['dtype']}, {s['threads']} threads",
        "",
        f"- prompt {s['length']} tokens, {result['config']}",
        f"- machine: {result['machine']['platform']}, {result['machine']['cpu_count']} CPUs, torch "
        f"{result['machine']['torch']}, transformers {result['machine']['transformers']}; commit "
        f"{result['commit']}",
    ]
    if "compare" in result:
        c = result["compare"]
        lines += [
            "",
            f"{c['tokens']} greedy tokens after the prefill, {c['entries']} entries per layer and KV head at the "
            "start (on average; plain: a DynamicCache of that many entries); median of "
            f"{s['rounds']} interleaved rounds.",
            "",
            "| method | tok/s (median) | rounds |",
            "|---|---|---|",
        ]
        for name, median in c["median_tok_s"].items():
            rounds = ", ".join(f"{value:.1f}" for value in c["rounds"][name])
            lines.append(f"| {name} | {median:.1f} | {rounds} |")
        lines += [
            "",
            f"- static / plain sdpa: {c['ratio_static_to_plain_sdpa']:.2f}x; static / best plain: "
            f"{c['ratio_static_to_best_plain']:.2f}x; static / Locret eager: "
            f"{c['ratio_static_to_locret_eager']:.2f}x",
        ]
        if c["compile_seconds"] is not None:
            lines.append(
                f"- compiled / best plain: {c['ratio_compiled_to_best_plain']:.2f}x; compile time "
                f"{c['compile_seconds']:.1f} s"
            )
    for flat in result.get("flatness", []):
        speeds = ", ".join(f"{value:.1f}" for value in flat["tok_s_per_segment"])
        lines += [
            "",
            f"Decode-time eviction ({flat['mode']} steps), {flat['tokens']} tokens, tok/s per "
            f"{flat['segment']}-token segment: {speeds}; max/min {flat['max_over_min']:.3f}, "
            f"last/first {flat['last_over_first']:.3f}",
            "",
            "Per segment, 1 / its median step time (robust to a few steps slowed by other load): "
            + ", ".join(f"{value:.1f}" for value in flat["median_step_tok_s_per_segment"])
            + f"; max/min {flat['median_max_over_min']:.3f}, last/first {flat['median_last_over_first']:.3f}",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="HuggingFaceTB/SmolLM2-135M-Instruct")
    parser.add_argument("--length", type=int, default=8192)
    parser.add_argument("--budget", type=int, default=1024)
    parser.add_argument("--chunk-size", type=int, default=512)
    parser.add_argument("--n-local", type=int, default=64)
    parser.add_argument("--decode-budget", type=int, default=None)
    parser.add_argument("--tokens", type=int, default=128, help="tokens per method and round (0: skip)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="also time the torch.compile'd steps")
    parser.add_argument("--flat-tokens", type=int, default=0, help="with --decode-budget: tokens to time")
    parser.add_argument("--flat-eager", action="store_true", help="also time the eager steps' flatness")
    parser.add_argument("--segment", type=int, default=250)
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--allocation",
        default="uniform",
        help="budget_allocation: uniform, adaptive, or profile:NAME (benchmark/results/head_budget_profiles)",
    )
    parser.add_argument("--out", type=Path, default=None, help="directory for decode_speed.json/.md")
    args = parser.parse_args()
    try:
        allocation = allocation_settings(args.allocation)
    except ValueError as error:
        parser.error(str(error))
    if args.flat_tokens and args.decode_budget is None:
        parser.error("--flat-tokens measures decode-time eviction: give --decode-budget")
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = resolve_dtype(args.dtype, "cpu")
    model = locret.from_pretrained(args.model, dtype=dtype).eval()
    # decode steps of the heads' own scores, as recorded (the recommended line scorer cannot evict while
    # decoding; its prefill is not what this script measures)
    model.locret_scorer_choice = None
    recommended = getattr(model, "locret_inference_config", None) or locret.LocretConfig()
    config = dataclasses.replace(
        recommended,
        budget=args.budget,
        chunk_size=args.chunk_size,
        n_local=args.n_local,
        n_stabilizers=min(recommended.n_stabilizers, args.budget - 1),
        decode_budget=args.decode_budget,
        **allocation,
    )
    ids = torch.randint(
        100, model.config.vocab_size - 100, (1, args.length), generator=torch.Generator().manual_seed(0)
    )
    settings = {**vars(args), "dtype": str(dtype).removeprefix("torch."), "threads": torch.get_num_threads()}
    settings["out"] = str(args.out) if args.out else None
    result = {"settings": settings, "config": config.to_dict(), "machine": machine(), "commit": git_commit()}
    print(f"{args.model} {settings['dtype']} threads {settings['threads']}; {config}", flush=True)
    if args.tokens:
        result["compare"] = compare(model, ids, config, args)
    if args.flat_tokens:
        result["flatness"] = [flatness(model, ids, config, args, "static")]
        if args.flat_eager:
            result["flatness"].append(flatness(model, ids, config, args, "eager"))
    text = markdown(result)
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "decode_speed.json").write_text(json.dumps(result, indent=2))
        (args.out / "decode_speed.md").write_text(text)


if __name__ == "__main__":
    main()
