"""How much of what the recommended scorer holds comes from the trained heads? An offline replay.

    PYTHONPATH=. python benchmark/results/natural_val_smollm2/heads_ablation/replay.py --features runs/segment_grid

``LineScorer(max_line=32)`` scores each 32-token line by the mean of its 8 highest token values, a token's value
being z of the heads' average plus z of its surprisal. This replays the selection on the features
``../segment_grid/`` recorded (raw head scores and surprisal of one recommended run per validation prompt:
budget 1024, chunk 512, 256 stabilizers; a prompt without them is run and recorded the same way) with either
term alone, and prints, per case, the prompts whose needle sentence the replayed cache keeps whole. The model's
reading is not replayed; ``README.md`` has the real runs with random heads beside.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmark.results.natural_val_smollm2.kept_by_depth.kept_by_depth import load_recommended
from benchmark.results.natural_val_smollm2.kept_by_depth.restandardize import (
    RECOMMENDED,
    line_scores,
    segments,
    selection,
    standardized_terms,
)
from benchmark.results.natural_val_smollm2.local_contrast.local_contrast import features
from benchmark.results.natural_val_smollm2.window_line.needle_kept import validation_needles
from locret.scorers.lines import line_end_tokens

# (heads weight, surprisal weight) of each token's value; (1, 1) is the recommended scorer
TERMS = {
    "heads + surprisal (recommended)": (1.0, 1.0),
    "heads only": (1.0, 0.0),
    "surprisal only": (0.0, 1.0),
}


@dataclass
class RecordedPrompt:
    """One validation prompt's recorded features, cut and standardized as the recommended scorer does."""

    case: tuple[str, int]  # (task, length)
    n_context: int
    ids: torch.Tensor  # [n_context]
    bounds: list[int]  # the prefill chunks' bounds
    spans: list[tuple[int, int]]  # the scorer's lines
    needle: tuple[int, int]  # the needle sentence's token span
    z_heads: torch.Tensor  # [n_context]: the heads' term, standardized as the scorer does
    z_surprisal: torch.Tensor  # [n_context]: the surprisal's term


def replay_arguments(description: str) -> tuple[Path, list[tuple[str, int]], str]:
    """The replays' command line: where the features are, which task:length cases, which depths."""
    parser = argparse.ArgumentParser(description=description)
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
    cases = [(task, int(length)) for task, length in (c.split(":") for c in args.cases.split(","))]
    return args.features, cases, args.depths


def recorded_prompts(
    features_dir: Path, cases: list[tuple[str, int]], depths: str
) -> Iterator[RecordedPrompt]:
    """Each validation prompt of ``cases`` at ``depths`` (comma-separated) with its features from
    ``features_dir`` (a prompt without them is run and recorded as ``../segment_grid/`` does)."""
    model, tokenizer, eos, method = load_recommended()
    ends = line_end_tokens(tokenizer, model.config.vocab_size)
    for task, length in cases:
        for depth in (float(d) for d in depths.split(",")):
            for sample in validation_needles(tokenizer, length, depth, task):
                path = features_dir / f"{task}_{length}_d{depth:g}_{sample.id}.safetensors"
                stored = features(model, tokenizer, eos, method, sample, path)
                n_context, bounds = len(stored["ids"]), stored["bounds"].tolist()
                z_heads, z_surprisal = standardized_terms(
                    stored["heads"], stored["surprisal"], bounds, "cumulative", n_context
                )
                a, b = stored["needle"].tolist()
                yield RecordedPrompt(
                    (task, length),
                    n_context,
                    stored["ids"],
                    bounds,
                    segments(stored["ids"].tolist(), ends, RECOMMENDED.max_line),
                    (a, b),
                    z_heads,
                    z_surprisal,
                )


def main() -> None:
    features_dir, cases, depths = replay_arguments(__doc__.split("\n")[0])
    held = {(name, case): 0 for name in TERMS for case in cases}
    prompts = dict.fromkeys(cases, 0)
    for prompt in recorded_prompts(features_dir, cases, depths):
        a, b = prompt.needle
        for name, (heads_weight, surprisal_weight) in TERMS.items():
            values = heads_weight * prompt.z_heads + surprisal_weight * prompt.z_surprisal
            keep, _ = selection(line_scores(values, prompt.spans), prompt.spans, prompt.n_context)
            held[name, prompt.case] += bool(keep[a:b].all())
        prompts[prompt.case] += 1
    header = " | ".join(f"{task} {length // 1024}K (of {prompts[task, length]})" for task, length in cases)
    print("needle sentence kept whole (validation, depths " + depths + ")\n")
    print(f"| token value | {header} |")
    print("|---|" + "---|" * len(cases))
    for name in TERMS:
        print(f"| {name} | " + " | ".join(str(held[name, case]) for case in cases) + " |")


if __name__ == "__main__":
    main()
