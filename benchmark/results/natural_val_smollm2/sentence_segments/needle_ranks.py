"""How many tokens of older segments rank above the needle sentence, under two segmentations and three segment
scores, from recorded prefills (`../line_rules/line_ranks.py --save`):

    PYTHONPATH=. python benchmark/results/natural_val_smollm2/sentence_segments/needle_ranks.py \
        runs/share/values_par_16384.pt [more recordings]

Segmentations: lines of at most 32 tokens (the shipped rule) and sentences within lines of at most 32 tokens
(``screen.py``'s "max 32, pack 1"). Per rule: the median over the prompts of ``line_ranks.needle_rank`` (0 for
a needle in the protected window) and how many prompts' needles have at most 64, 128, 256 or 500 tokens above
them: what a budget share kept for the best segments would need. Also printed: in how many prompts lines of
at most 32 tokens cut the needle sentence into two or more segments.
"""

from __future__ import annotations

import sys

from benchmark.results.natural_val_smollm2.line_rules.line_ranks import needle_rank
from benchmark.results.natural_val_smollm2.sentence_segments.screen import (
    end_flags,
    packed_spans,
    recordings,
    score_rules,
)


def main() -> None:
    line_ids, sentence_ids = end_flags()
    rules = score_rules()
    for path, records in recordings(sys.argv[1:]):
        segmentations = {  # each record's spans under each segmentation: the same for every rule
            segmentation: [
                packed_spans(line_ids[r["ids"]].tolist(), sentence_ids[r["ids"]].tolist(), 32, pack)
                for r in records
            ]
            for segmentation, pack in (("lines, max 32", None), ("sentences, max 32", 1))
        }
        split = 0  # needles that lines of at most 32 tokens cut into two or more segments
        for record, spans in zip(records, segmentations["lines, max 32"], strict=True):
            start, end = record["needle"].tolist()
            split += sum(a < end and b > start for a, b in spans) > 1
        print(f"\n{path}: {len(records)} prompts; lines of at most 32 tokens split the needle in {split}")
        print("| segments | score | median tokens above the needle | <= 64 | <= 128 | <= 256 | <= 500 |")
        print("|---|---|---|---|---|---|---|")
        for segmentation, all_spans in segmentations.items():
            for name in ("top 8, w=1", "mean, w=2", "mean, w=3"):
                ranks = []
                for record, spans in zip(records, all_spans, strict=True):
                    zh, zs = record["z_heads"], record["z_surprisal"]
                    scores = [rules[name](zh[a:b], zs[a:b]) for a, b in spans]
                    needle = tuple(record["needle"].tolist())
                    ranks.append(needle_rank(spans, scores, needle, len(record["ids"])))
                ranks.sort()
                within = " | ".join(str(sum(rank <= room for rank in ranks)) for room in (64, 128, 256, 500))
                print(f"| {segmentation} | {name} | {ranks[len(ranks) // 2]} | {within} |")


if __name__ == "__main__":
    main()
