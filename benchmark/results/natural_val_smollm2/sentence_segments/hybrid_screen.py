"""Screen a hybrid segment score from recorded prefills: every piece of text keeps the better of its line's score
(lines of at most 32 tokens, mean of the 8 best token values, heads + surprisal: the shipped rule) and its
sentence's score (sentences within those limits, mean of heads + ``w`` x surprisal), each standardized over the
input's segments, so that a needle is kept by whichever rule ranks it higher.

    PYTHONPATH=. python benchmark/results/natural_val_smollm2/sentence_segments/hybrid_screen.py \
        runs/share/values_par_16384.pt [more recordings]

Pieces are the text between any two consecutive cuts of either segmentation. Replayed as ``screen.py`` does
(an approximation: the heads' scores depend on what the cache held); prints the prompts whose needle the
final cache would hold whole.
"""

from __future__ import annotations

import sys

import torch

from benchmark.results.natural_val_smollm2.line_rules.line_ranks import kept_mask
from benchmark.results.natural_val_smollm2.sentence_segments.screen import (
    end_flags,
    held_counts,
    needle_held,
    packed_spans,
    recordings,
    score_rules,
)


def standardized_per_token(spans: list, scores: list[float], length: int) -> torch.Tensor:
    """Each token's segment score, standardized over the segments (sinks' segment included)."""
    values = torch.tensor(scores)
    values = (values - values.mean()) / values.std()
    out = torch.empty(length)
    for (start, end), value in zip(spans, values.tolist(), strict=True):
        out[start:end] = value
    return out


def main() -> None:
    line_ids, sentence_ids = end_flags()
    rules = score_rules()
    for path, records in recordings(sys.argv[1:]):
        print(f"\n{path}: {len(records)} prompts")
        print("| score | held whole | per depth 0/25/50/75/100% |")
        print("|---|---|---|")
        prepared = []  # per record: its sentences, pieces and standardized line scores, the same for every rule
        for record in records:
            ids, zh, zs = record["ids"], record["z_heads"], record["z_surprisal"]
            lines = packed_spans(line_ids[ids].tolist(), [False] * len(ids), 32, None)
            sentences = packed_spans(line_ids[ids].tolist(), sentence_ids[ids].tolist(), 32, 1)
            by_line = standardized_per_token(
                lines, [rules["top 8, w=1"](zh[a:b], zs[a:b]) for a, b in lines], len(ids)
            )
            cuts = sorted({0, *[b for _, b in lines], *[b for _, b in sentences]})
            prepared.append((record, sentences, list(zip(cuts[:-1], cuts[1:], strict=True)), by_line))
        for sentence_rule in ("mean, w=2", "mean, w=3"):
            for bonus in (0.0, 0.5):
                held = []
                for record, sentences, pieces, by_line in prepared:
                    zh, zs, length = record["z_heads"], record["z_surprisal"], len(record["ids"])
                    by_sentence = standardized_per_token(
                        sentences, [rules[sentence_rule](zh[a:b], zs[a:b]) for a, b in sentences], length
                    )
                    token_scores = torch.maximum(by_line, by_sentence - bonus)
                    keep = kept_mask(pieces, [float(token_scores[a]) for a, _ in pieces], length)
                    held.append(needle_held(record, keep))
                total, per_depth = held_counts(held)
                name = f"max(line top 8, sentence {sentence_rule}{f' - {bonus:g}' if bonus else ''})"
                print(f"| {name} | {total} | {per_depth} |")


if __name__ == "__main__":
    main()
