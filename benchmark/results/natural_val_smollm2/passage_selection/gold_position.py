"""Who answers a ``multidoc_qa`` question, by how far from the prompt's end its gold passage starts.

    PYTHONPATH=. python benchmark/results/natural_val_smollm2/passage_selection/gold_position.py \
        "full cache=runs/stab/md_base/multidoc_qa-validation/full/bfull_L4096_dsweep" "other=FOLDER" ...

The first case gives the gold passage's place (its records' ``needle_token_spans`` and ``prompt_tokens``); every
case is matched to it by prompt id. Why: the distractors are other questions' gold passages, so before the
question is seen nothing tells the gold passage from them, and a question-agnostic cache keeps it only as
often as it keeps any passage at its place; the table shows where the full cache's answers come from.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmark.paired import answered_ids
from benchmark.run import read_predictions

EDGES = (700, 1400, 2100, 2800)  # tokens from the gold passage's start to the prompt's end


def distance_bin(distance: int) -> int:
    """Index of the bin of ``distance`` among ``EDGES`` (0: under the first edge)."""
    return sum(distance >= edge for edge in EDGES)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "cases", nargs="+", help="label=case folder; the first gives the gold passages' places"
    )
    args = parser.parse_args()
    cases = [(label, Path(folder)) for label, _, folder in (c.partition("=") for c in args.cases)]
    reference = read_predictions(cases[0][1] / "predictions.jsonl")
    bins = {r["id"]: distance_bin(r["prompt_tokens"] - r["needle_token_spans"][0][0]) for r in reference}
    names = (
        [f"< {EDGES[0]}"] + [f"{a}-{b}" for a, b in zip(EDGES, EDGES[1:], strict=False)] + [f">= {EDGES[-1]}"]
    )
    sizes = [sum(b == index for b in bins.values()) for index in range(len(names))]
    print("Answered questions by how many tokens before the prompt's end the gold passage starts.\n")
    print(
        "| case | " + " | ".join(f"{name} (n={n})" for name, n in zip(names, sizes, strict=True)) + " | all |"
    )
    print("|---" * (len(names) + 2) + "|")
    for label, folder in cases:
        ran, answered = answered_ids(folder, 1.0)
        if ran != set(bins):
            raise ValueError(
                f"{label}: ran {len(ran)} prompts, the reference {len(bins)}; they must be the same"
            )
        counts = [sum(bins[i] == index for i in answered) for index in range(len(names))]
        print(f"| {label} | " + " | ".join(str(c) for c in counts) + f" | {len(answered)}/{len(ran)} |")


if __name__ == "__main__":
    main()
