"""Would a within-input novelty term keep more needles? An offline replay of the recommended scorer's selection.

    PYTHONPATH=. python benchmark/results/natural_val_smollm2/novelty/replay.py --features runs/segment_grid

``LineScorer(max_line=32)`` scores each 32-token line by the mean of its 8 highest token values, a token's value
being z of the heads' average plus z of its surprisal. A novelty weight adds z of ``-log(1 + n)``, ``n`` the
times the token's id occurred earlier in the input (``token_novelty``; the trial option
``LineScorer(novelty_weight)`` of commit b268c67 computed the same while reading), standardized by the input so
far like the other terms. This replays the selection on the features ``../segment_grid/`` recorded (a prompt
without them is run and recorded the same way) with novelty weights 0 (the recommended scorer), 0.5, 1 and 2,
and prints per case the prompts whose needle sentence the replayed cache keeps whole, and the rank of the
needle's lowest-ranked line (the needle is kept only if all its lines are; about 24 lines fit the budget). The
model's reading is not replayed: ``README.md`` has the real runs.
"""

from __future__ import annotations

import argparse
import statistics
from collections import Counter
from pathlib import Path

import torch

from benchmark.results.natural_val_smollm2.kept_by_depth.kept_by_depth import load_recommended
from benchmark.results.natural_val_smollm2.kept_by_depth.restandardize import (
    RECOMMENDED,
    line_scores,
    segments,
    selection,
    standardize,
    standardized_terms,
)
from benchmark.results.natural_val_smollm2.local_contrast.local_contrast import features
from benchmark.results.natural_val_smollm2.window_line.needle_kept import validation_needles
from locret.scorers.lines import line_end_tokens

WEIGHTS = (0.0, 0.5, 1.0, 2.0)


def token_novelty(ids: list[int]) -> torch.Tensor:
    """``-log(1 + n)`` per token, ``n`` the times its id occurred earlier in ``ids`` (what the trial option
    computed chunk by chunk, from a count per vocabulary id)."""
    seen: Counter[int] = Counter()
    earlier = []
    for token in ids:
        earlier.append(seen[token])
        seen[token] += 1
    return -torch.log1p(torch.tensor(earlier, dtype=torch.float32))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--features", type=Path, required=True, help="where ../segment_grid/ kept its features"
    )
    parser.add_argument(
        "--cases",
        default="niah_text_paragraphs:16384,niah_text_paragraphs:32768,niah_text:32768",
        help="task:length pairs, comma-separated",
    )
    parser.add_argument("--depths", default="0.25,0.5,0.75")
    args = parser.parse_args()
    model, tokenizer, eos, method = load_recommended()
    ends = line_end_tokens(tokenizer, model.config.vocab_size)
    cases = [(task, int(length)) for task, length in (c.split(":") for c in args.cases.split(","))]
    held = {(weight, case): 0 for weight in WEIGHTS for case in cases}
    ranks: dict[tuple[float, tuple[str, int]], list[int]] = {key: [] for key in held}
    for task, length in cases:
        for depth in (float(d) for d in args.depths.split(",")):
            for sample in validation_needles(tokenizer, length, depth, task):
                path = args.features / f"{task}_{length}_d{depth:g}_{sample.id}.safetensors"
                stored = features(model, tokenizer, eos, method, sample, path)
                ids, bounds = stored["ids"], stored["bounds"].tolist()
                n_context = len(ids)
                spans = segments(ids.tolist(), ends, RECOMMENDED.max_line)
                a, b = stored["needle"].tolist()
                needle_lines = [i for i, (start, end) in enumerate(spans) if start < b and end > a]
                z_heads, z_surprisal = standardized_terms(
                    stored["heads"], stored["surprisal"], bounds, "cumulative", n_context
                )
                novelty = token_novelty(ids.tolist())
                z_novelty = standardize(novelty, bounds, "cumulative", n_context)
                for weight in WEIGHTS:
                    scores = line_scores(z_heads + z_surprisal + weight * z_novelty, spans)
                    keep, _ = selection(scores, spans, n_context)
                    held[weight, (task, length)] += bool(keep[a:b].all())
                    lowest = scores[needle_lines].min()
                    ranks[weight, (task, length)].append(int((scores > lowest).sum()))
    header = " | ".join(f"{task} {length // 1024}K" for task, length in cases)
    print(
        f"validation, depths {args.depths}; per case: needle held whole of n, median rank of its lowest line\n"
    )
    print(f"| novelty weight | {header} |")
    print("|---|" + "---|" * len(cases))
    for weight in WEIGHTS:
        cells = [
            f"{held[weight, case]} of {len(ranks[weight, case])}, {statistics.median(ranks[weight, case]):g}"
            for case in cases
        ]
        print(f"| {weight:g}{' (recommended)' if weight == 0 else ''} | " + " | ".join(cells) + " |")
    print("\nprompts whose needle line ranks higher than with weight 0 (of n):")
    for weight in WEIGHTS[1:]:
        better = [
            sum(x < y for x, y in zip(ranks[weight, case], ranks[0.0, case], strict=True)) for case in cases
        ]
        print(f"  weight {weight:g}: " + ", ".join(str(count) for count in better))


if __name__ == "__main__":
    main()
