"""Would other line lengths, token counts or surprisal weights keep more paragraph needles? An offline replay.

    PYTHONPATH=. python benchmark/results/natural_val_smollm2/segment_grid/segment_grid.py \
        --features runs/segment_grid [--cases niah_text_paragraphs:16384,niah_text_paragraphs:32768,niah_text:32768]

The recommended ``LineScorer(max_line=32)`` scores 32-token lines by the mean of their 8 highest token values
(z of the heads' average + 1 x z of the surprisal). Those three settings were chosen one at a time, on
hard-wrapped books first (``../line_rules/``, ``../paragraphs/``). This script replays the selection for a grid
of them at once on stored features (``../local_contrast/local_contrast.py``'s: one recommended run per
validation prompt, budget 1024, chunk 512, 256 stabilizers; reused when present) and prints, per setting and
case, the prompts whose needle sentence the replayed cache keeps whole. ``sentences`` also closes a line at a
sentence's end. The replay keeps 97-100% of the real cache's entries for the recommended setting
(``../kept_by_depth/``); the model's reading is not replayed.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import torch

from benchmark.results.natural_val_smollm2.kept_by_depth.kept_by_depth import load_recommended
from benchmark.results.natural_val_smollm2.kept_by_depth.restandardize import (
    RECOMMENDED,
    line_scores,
    segments,
    selection,
    token_values,
)
from benchmark.results.natural_val_smollm2.local_contrast.local_contrast import features
from benchmark.results.natural_val_smollm2.window_line.needle_kept import validation_needles
from locret.scorers.lines import line_end_tokens
from locret.scorers.segments import N_SINKS as SINKS
from locret.scorers.surprisal import sentence_end_tokens

MAX_LINES = (16, 24, 32, 48, 64)
TOP_TOKENS = (4, 8, 16, None)
SURPRISAL_WEIGHTS = (0.5, 1.0, 2.0)
SENTENCES = (False, True)
# a top_tokens of max_line or more is the line's whole mean, the None rows
GRID = [
    (sentences, max_line, top, weight)
    for sentences, max_line, top, weight in itertools.product(
        SENTENCES, MAX_LINES, TOP_TOKENS, SURPRISAL_WEIGHTS
    )
    if top is None or top < max_line
]
SHIPPED = (
    RECOMMENDED.split_sentences,
    RECOMMENDED.max_line,
    RECOMMENDED.top_tokens,
    RECOMMENDED.surprisal_weight,
)


def top_means(values: torch.Tensor, spans: list[tuple[int, int]], top: int | None) -> torch.Tensor:
    """Each span's mean of its ``top`` highest ``values`` (all when None; the sinks left out, a span of sinks
    only 0): ``line_scores`` at once for every line, checked against it for the shipped setting."""
    starts = torch.tensor([max(a, SINKS) for a, _ in spans])
    lengths = (torch.tensor([b for _, b in spans]) - starts).clamp_min(0)
    width = int(lengths.max())
    index = starts[:, None] + torch.arange(width)
    valid = torch.arange(width) < lengths[:, None]
    padded = torch.where(valid, values[index.clamp_max(len(values) - 1)], float("-inf"))
    count = lengths if top is None else lengths.clamp_max(top)
    ranked = padded.sort(dim=1, descending=True).values
    taken = torch.arange(width) < count[:, None]
    return torch.where(taken, ranked, 0.0).sum(1) / count.clamp_min(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--features", type=Path, required=True, help="where the recorded features are kept")
    parser.add_argument(
        "--cases",
        default="niah_text_paragraphs:16384,niah_text_paragraphs:32768,niah_text:32768",
        help="task:length pairs, comma-separated",
    )
    parser.add_argument("--depths", default="0.25,0.5,0.75")
    parser.add_argument("--n", type=int, default=5, help="prompts per depth (the first n of the run's five)")
    args = parser.parse_args()
    model, tokenizer, eos, method = load_recommended()
    line_ends = line_end_tokens(tokenizer, model.config.vocab_size)
    ends = {False: line_ends, True: line_ends | sentence_end_tokens(tokenizer, model.config.vocab_size)}
    cases = [(task, int(length)) for task, length in (c.split(":") for c in args.cases.split(","))]
    held = {(setting, case): 0 for setting in GRID for case in cases}
    prompts = dict.fromkeys(cases, 0)
    for task, length in cases:
        for depth in (float(d) for d in args.depths.split(",")):
            for sample in validation_needles(tokenizer, length, depth, task)[: args.n]:
                path = args.features / f"{task}_{length}_d{depth:g}_{sample.id}.safetensors"
                stored = features(model, tokenizer, eos, method, sample, path)
                n_context = len(stored["ids"])
                ids, bounds = stored["ids"].tolist(), stored["bounds"].tolist()
                a, b = stored["needle"].tolist()
                values = {
                    w: token_values(stored["heads"], stored["surprisal"], bounds, "cumulative", n_context, w)
                    for w in SURPRISAL_WEIGHTS
                }
                spans = {
                    cut: segments(ids, ends[cut[0]], cut[1])
                    for cut in itertools.product(SENTENCES, MAX_LINES)
                }
                for setting in GRID:
                    sentences, max_line, top, weight = setting
                    cut = spans[sentences, max_line]
                    scores = top_means(values[weight], cut, top)
                    if setting == SHIPPED:
                        torch.testing.assert_close(scores, line_scores(values[weight], cut))
                    keep, _ = selection(scores, cut, n_context)
                    held[setting, (task, length)] += bool(keep[a:b].all())
                prompts[task, length] += 1
                print(f"{task} {length} depth {depth:g} {sample.id}: replayed", flush=True)
    header = " | ".join(f"{task} {length // 1024}K (of {prompts[task, length]})" for task, length in cases)
    print("\nneedle sentence kept whole, by setting\n")
    print(f"| sentences | max_line | top_tokens | surprisal | {header} | sum |")
    print("|---|---|---|---|" + "---|" * (len(cases) + 1))
    for setting in sorted(GRID, key=lambda s: -sum(held[s, c] for c in cases)):
        counts = [held[setting, case] for case in cases]
        mark = " (shipped)" if setting == SHIPPED else ""
        sentences, max_line, top, weight = setting
        print(
            f"| {'yes' if sentences else 'no'} | {max_line} | {top} | {weight:g}{mark} | "
            + " | ".join(map(str, counts))
            + f" | {sum(counts)} |"
        )


if __name__ == "__main__":
    main()
