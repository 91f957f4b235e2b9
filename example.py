"""Passkey demo: a small model finds a pass key hidden far beyond its window, with a bounded KV cache.

    python example.py                      # SmolLM2-135M-Instruct + shipped heads, 32K tokens, on CPU
    python example.py --context_length 65536 --depth 0.9
    python example.py --seed -1                # a random key and depth
    python example.py --scorer locret          # the retaining heads' own scores instead of the recommended scorer
    python example.py --model_dir meta-llama/Llama-3.1-8B-Instruct --retaining_head_path PATH --device cuda

Exits with status 0 only when the answer is correct.
"""

from __future__ import annotations

import argparse
import random
import sys
import time

import torch

import locret
from locret.acquire import load_tokenizer
from locret.demo import is_correct, passkey_prompt
from locret.hardware import resolve_device, resolve_dtype

SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"
SETTINGS = ("budget", "chunk_size", "n_stabilizers", "n_local", "score_pooling")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model_dir", default=SMOLLM2, help="checkpoint dir, hub id or .gguf file")
    parser.add_argument(
        "--retaining_head_path", default=None, help="heads adapter dir (default: shipped heads)"
    )
    parser.add_argument("--context_length", type=int, default=32768, help="prompt length in tokens")
    parser.add_argument("--depth", type=float, default=None, help="needle depth in [0, 1] (default: random)")
    parser.add_argument("--budget", type=int, default=None, help="cache entries kept per KV head and layer")
    parser.add_argument("--chunk_size", type=int, default=None, help="prefill chunk size")
    parser.add_argument("--n_stabilizers", type=int, default=None)
    parser.add_argument("--n_local", type=int, default=None)
    parser.add_argument(
        "--score_pooling",
        type=int,
        default=None,
        help="odd max-pool window over head scores (1: paper's rule)",
    )
    parser.add_argument(
        "--scorer",
        choices=sorted(locret.scorers.SCORERS),
        default=None,
        help="what decides which entries stay (default: the scorer the heads recommend; locret: their own scores)",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    parser.add_argument(
        "--dtype", default="auto", help="auto (bf16 where native, else float32), bfloat16, float32"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed for the key and depth (default 0, reproducible; -1: random)"
    )
    return parser.parse_args()


def settings_for(model, args: argparse.Namespace) -> locret.LocretConfig:
    """The settings the heads recommend (their adapter's ``inference`` block: for the shipped SmolLM2 heads
    budget 1024, chunk 512, 256 stabilizers, 64 local tokens, no score pooling, for their recommended line
    scorer), else the paper's settings for a large model of a family it gives them for, else
    ``LocretConfig()``; command-line flags win."""
    defaults = getattr(model, "locret_inference_config", None)
    if defaults is None and model.config.hidden_size >= 3072:
        defaults = locret.PAPER_SETTINGS.get(model.config.model_type.removeprefix("locret_"))
    defaults = defaults or locret.LocretConfig()
    overrides = {k: v for k in SETTINGS if (v := getattr(args, k)) is not None}
    return locret.LocretConfig(**{**defaults.to_dict(), **overrides})


def main() -> int:
    args = parse_args()
    seed = random.SystemRandom().randrange(2**31) if args.seed == -1 else args.seed
    rng = random.Random(seed)
    depth = rng.random() if args.depth is None else args.depth
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)

    started = time.perf_counter()
    tokenizer = load_tokenizer(args.model_dir)
    model = (
        locret.from_pretrained(args.model_dir, heads=args.retaining_head_path, dtype=dtype).to(device).eval()
    )
    config = settings_for(model, args)
    print(f"model {args.model_dir} ({dtype}, {device}) loaded in {time.perf_counter() - started:.1f} s")

    sample = passkey_prompt(tokenizer, args.context_length, depth, rng)
    input_ids = tokenizer(sample.prompt, return_tensors="pt", add_special_tokens=False).input_ids.to(device)
    print(
        f"input: {input_ids.shape[1]} tokens (model window {model.config.max_position_embeddings}), "
        f"pass key {sample.key} at depth {depth:.0%} (seed {seed}: rerun with --seed {seed})"
    )
    scorer = None if args.scorer is None else locret.scorers.SCORERS[args.scorer]()
    cache = locret.new_cache(model, config, scorer)
    print(
        f"locret: budget {config.budget}, chunk {config.chunk_size}, stabilizers {config.n_stabilizers}, "
        f"local {config.n_local}, score pooling {config.score_pooling}, scorer {cache.scorer}"
    )

    out = locret.generate(model, input_ids, config, max_new_tokens=12, cache=cache, progress=True)
    answer = tokenizer.decode(out.new_tokens[0], skip_special_tokens=True)
    correct = is_correct(answer, sample.key)

    full_cache = input_ids.shape[1] * locret_bytes_per_token(model, dtype)
    print(f"expected: {sample.key}   generated: {answer.strip()!r}   -> {'CORRECT' if correct else 'WRONG'}")
    print(
        f"prefill {out.prefill_tokens_per_second:.0f} tokens/s, decode {out.decode_tokens_per_second:.1f} tokens/s"
    )
    print(
        f"KV cache: peak {out.peak_cache_bytes / 2**20:.1f} MiB with Locret vs {full_cache / 2**20:.1f} MiB "
        f"for a full cache ({full_cache / out.peak_cache_bytes:.1f}x less)"
    )
    return 0 if correct else 1


def locret_bytes_per_token(model, dtype: torch.dtype) -> int:
    """Full-cache bytes per token: keys and values of every layer and KV head."""
    config = model.config
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    element = torch.tensor([], dtype=dtype).element_size()
    return 2 * config.num_hidden_layers * config.num_key_value_heads * head_dim * element


if __name__ == "__main__":
    sys.exit(main())
