"""Cross a recorded prefill's "needle held whole" with the same prompts' `benchmark.run` scores.

    PYTHONPATH=. python benchmark/results/natural_val_smollm2/sentence_segments/held_found.py \
        runs/share/values_par_16384.pt runs/paragraphs/niah_val_16k/niah_text_paragraphs-validation/lines:max_line=32

The recording (`../line_rules/line_ranks.py --save`) holds the prompts in the run's order: depths
0/25/50/75/100%, five each. Why: whether a scorer's misses are needles it dropped or needles the model misread.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from benchmark.results.natural_val_smollm2.line_rules.line_ranks import DEPTHS
from benchmark.results.natural_val_smollm2.sentence_segments.screen import needle_held
from benchmark.run import read_predictions


def main() -> None:
    records = torch.load(sys.argv[1], weights_only=True)
    run = Path(sys.argv[2])
    length = len(records[0]["ids"])
    scores = []
    for depth in DEPTHS:
        case = next(run.glob(f"b1024_L*_d{depth:g}"))
        scores += [record["score"] for record in read_predictions(case / "predictions.jsonl")]
    if len(scores) != len(records):
        raise SystemExit(f"{len(records)} recorded prompts but {len(scores)} scored replies")
    table = {True: [0, 0], False: [0, 0]}  # held -> [prompts, found]
    for record, score in zip(records, scores, strict=True):
        _, held = needle_held(record, record["held"])
        table[held][0] += 1
        table[held][1] += score
    print(f"{sys.argv[1]} (about {length} tokens) against {run}:")
    for held, (prompts, found) in table.items():
        print(f"  needle {'held whole' if held else 'not held whole'}: {prompts} prompts, found in {found:g}")


if __name__ == "__main__":
    main()
