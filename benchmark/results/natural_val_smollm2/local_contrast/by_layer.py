"""Does one layer's retaining heads rank paragraph needles better than all 30 averaged? From the features
``local_contrast.py`` stored.

    PYTHONPATH=. python benchmark/results/natural_val_smollm2/local_contrast/by_layer.py --length 32768 \
        --features runs/local_contrast

Per rule (all layers as shipped, each single layer, and thirds of the stack): the heads of those layers
averaged, standardized by the input so far and added to the surprisal, lines scored and selected as the shipped
scorer does; prints the prompts whose needle is kept whole and the needle line's median rank.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from safetensors.torch import load_file

from benchmark.results.natural_val_smollm2.kept_by_depth.restandardize import (
    line_scores,
    segments,
    selection,
    standardize,
)
from benchmark.results.natural_val_smollm2.window_line.needle_kept import MODEL
from locret.acquire import load_tokenizer
from locret.scorers.lines import line_end_tokens

N_LAYERS = 30


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--length", type=int, required=True)
    parser.add_argument("--features", type=Path, required=True)
    args = parser.parse_args()
    tokenizer = load_tokenizer(MODEL)
    ends = line_end_tokens(tokenizer, len(tokenizer))
    rules = {"all (shipped)": list(range(N_LAYERS))}
    rules |= {f"layer {layer}": [layer] for layer in range(N_LAYERS)}
    rules |= {f"layers {a}-{a + 9}": list(range(a, a + 10)) for a in (0, 10, 20)}
    held = dict.fromkeys(rules, 0)
    ranks: dict[str, list[int]] = {rule: [] for rule in rules}
    files = sorted(args.features.glob(f"*_{args.length}_*.safetensors"))
    for path in files:
        stored = load_file(path)
        n_context, bounds = len(stored["ids"]), stored["bounds"].tolist()
        spans = segments(stored["ids"].tolist(), ends)
        z_heads = standardize(stored["heads"], bounds, "cumulative", n_context)
        z_surprisal = standardize(stored["surprisal"], bounds, "cumulative", n_context)
        start, end = stored["needle"].tolist()
        line = max(first for first, _ in spans if first <= start)
        for rule, layers in rules.items():
            values = (
                standardize(z_heads[layers].mean(dim=(0, 1)), bounds, "cumulative", n_context) + z_surprisal
            )
            keep, order = selection(line_scores(values[:n_context], spans), spans, n_context)
            held[rule] += bool(keep[start:end].all())
            ranks[rule].append(order.index(line) if line in order else -1)
    print(f"{len(files)} prompts at {args.length} tokens: needle kept whole, median rank of its line\n")
    print("| heads of | kept | median rank |")
    print("|---|---|---|")
    for rule in rules:
        print(f"| {rule} | {held[rule]} | {torch.tensor(ranks[rule]).float().median():.0f} |")


if __name__ == "__main__":
    main()
