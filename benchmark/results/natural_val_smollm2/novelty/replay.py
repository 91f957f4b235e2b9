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

import statistics
from collections import Counter

import torch

from benchmark.results.natural_val_smollm2.heads_ablation.replay import recorded_prompts, replay_arguments
from benchmark.results.natural_val_smollm2.kept_by_depth.restandardize import (
    line_scores,
    selection,
    standardize,
)

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
    features_dir, cases, depths = replay_arguments(__doc__.split("\n")[0])
    held = {(weight, case): 0 for weight in WEIGHTS for case in cases}
    ranks: dict[tuple[float, tuple[str, int]], list[int]] = {key: [] for key in held}
    for prompt in recorded_prompts(features_dir, cases, depths):
        a, b = prompt.needle
        needle_lines = [i for i, (start, end) in enumerate(prompt.spans) if start < b and end > a]
        novelty = token_novelty(prompt.ids.tolist())
        z_novelty = standardize(novelty, prompt.bounds, "cumulative", prompt.n_context)
        for weight in WEIGHTS:
            scores = line_scores(prompt.z_heads + prompt.z_surprisal + weight * z_novelty, prompt.spans)
            keep, _ = selection(scores, prompt.spans, prompt.n_context)
            held[weight, prompt.case] += bool(keep[a:b].all())
            lowest = scores[needle_lines].min()
            ranks[weight, prompt.case].append(int((scores > lowest).sum()))
    header = " | ".join(f"{task} {length // 1024}K" for task, length in cases)
    print(f"validation, depths {depths}; per case: needle held whole of n, median rank of its lowest line\n")
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
