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
        split = 0  # needles that lines of at most 32 tokens cut into two or more segments
        for record in records:
            ids, (start, end) = record["ids"], record["needle"].tolist()
            spans = packed_spans(line_ids[ids].tolist(), sentence_ids[ids].tolist(), 32, None)
            split += sum(a < end and b > start for a, b in spans) > 1
        print(f"\n{path}: {len(records)} prompts; lines of at most 32 tokens split the needle in {split}")
        print("| segments | score | median tokens above the needle | <= 64 | <= 128 | <= 256 | <= 500 |")
        print("|---|---|---|---|---|---|---|")
        for segmentation, pack in (("lines, max 32", None), ("sentences, max 32", 1)):
            for name in ("top 8, w=1", "mean, w=2", "mean, w=3"):
                ranks = []
                for record in records:
                    ids, zh, zs = record["ids"], record["z_heads"], record["z_surprisal"]
                    spans = packed_spans(line_ids[ids].tolist(), sentence_ids[ids].tolist(), 32, pack)
                    scores = [rules[name](zh[a:b], zs[a:b]) for a, b in spans]
                    ranks.append(needle_rank(spans, scores, tuple(record["needle"].tolist()), len(ids)))
                ranks.sort()
                within = " | ".join(str(sum(rank <= room for rank in ranks)) for room in (64, 128, 256, 500))
                print(f"| {segmentation} | {name} | {ranks[len(ranks) // 2]} | {within} |")


if __name__ == "__main__":
    main()
