"""How long the lines of the `niah_text` validation prompts are, in SmolLM2 tokens (why `max_line` does not matter).

PYTHONPATH=. python benchmark/results/natural_val_smollm2/max_line/line_lengths.py --length 16384
"""

from __future__ import annotations

import argparse

import torch

from benchmark.results.natural_val_smollm2.window_line.needle_kept import DEPTHS, MODEL, validation_needles
from benchmark.run import encode_sample
from locret.acquire import load_tokenizer
from locret.scorers.lines import line_end_tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--length", type=int, required=True)
    args = parser.parse_args()
    tokenizer = load_tokenizer(MODEL)
    ends = line_end_tokens(tokenizer, len(tokenizer))
    lengths: list[int] = []
    for depth in DEPTHS:
        for sample in validation_needles(tokenizer, args.length, depth):
            ids = torch.tensor(encode_sample(tokenizer, sample, False).ids)
            breaks = torch.nonzero(ends[ids]).flatten().tolist()
            lengths += [b - a for a, b in zip([-1, *breaks], breaks, strict=False)]
    lengths.sort()
    share = {limit: sum(n > limit for n in lengths) / len(lengths) for limit in (32, 64, 128, 256)}
    print(
        f"{len(lengths)} lines in 25 prompts of {args.length} tokens: median {lengths[len(lengths) // 2]} tokens, "
        f"99th percentile {lengths[int(len(lengths) * 0.99)]}, longest {lengths[-1]}"
    )
    print("share of lines longer than " + ", ".join(f"{k}: {v:.2%}" for k, v in share.items()))


if __name__ == "__main__":
    main()
