"""Screen ways to cut text into the `lines` scorer's segments, from recorded prefills (`../line_rules/line_ranks.py
--save`): for each segmentation and segment score (``score_rules``: the shipped mean of the 8 best token values,
and means of heads + w x surprisal), whether the final cache under those fixed scores would hold the prose
needle whole.

    PYTHONPATH=. python benchmark/results/natural_val_smollm2/sentence_segments/screen.py \
        runs/share/values_par_16384.pt [more recordings]

Segmentations: a segment ends at a line break, or after ``max`` tokens (the shipped rule), and with
``pack=m`` also at the first sentence end once it holds at least ``m`` tokens (so a segment is one or more
whole sentences where sentences are short enough, and never cuts a needle sentence at an arbitrary token);
"no line ends": a line break ends no segment (the sentence ends and the cap still do).
The replay (``kept_mask``) is exact for the recorded rule and an approximation for the others, as in
``line_ranks.py``.
"""

from __future__ import annotations

import sys

import torch

from benchmark.results.natural_val_smollm2.line_rules.line_ranks import DEPTHS, kept_mask
from locret.acquire import load_tokenizer
from locret.scorers.lines import line_end_tokens
from locret.scorers.surprisal import sentence_end_tokens

MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"


def packed_spans(line_end: list[bool], sentence_end: list[bool], limit: int, pack: int | None) -> list:
    """``[start, end)`` segments: end at a line break, after ``limit`` tokens, or (with ``pack``) at a sentence
    end once the segment holds at least ``pack`` tokens."""
    spans, start = [], 0
    for index, (line, sentence) in enumerate(zip(line_end, sentence_end, strict=True)):
        size = index + 1 - start
        if line or size >= limit or (pack is not None and sentence and size >= pack):
            spans.append((start, index + 1))
            start = index + 1
    if start < len(line_end):
        spans.append((start, len(line_end)))
    return spans


def end_flags() -> tuple[torch.Tensor, torch.Tensor]:
    """SmolLM2's line-break ids and sentence-end ids (bool over its vocabulary)."""
    tokenizer = load_tokenizer(MODEL)
    return line_end_tokens(tokenizer, 0), sentence_end_tokens(tokenizer, 0)


def recordings(paths: list[str]):
    """``(path, records)`` of each recording (``line_ranks.py --save``)."""
    for path in paths:
        yield path, torch.load(path, weights_only=True)


def held_counts(held: list[tuple[float, bool]]) -> tuple[int, str]:
    """``(depth, needle held whole)`` per prompt -> the prompts held and "n/n/n/n/n" per depth 0-100%."""
    return sum(h for _, h in held), "/".join(str(sum(h for d, h in held if d == depth)) for depth in DEPTHS)


def needle_held(record: dict, keep: torch.Tensor) -> tuple[float, bool]:
    """``(depth, whether keep holds the record's needle whole)``."""
    start, end = record["needle"].tolist()
    return float(record["depth"]), bool(keep[start:end].all())


def score_rules() -> dict:
    """Rule name -> function(z_heads, z_surprisal) of one segment's tokens -> the segment's score."""

    def top(weight: float, k: int):
        return lambda zh, zs: float((zh + weight * zs).topk(min(k, len(zh))).values.mean())

    def mean(weight: float):
        return lambda zh, zs: float((zh + weight * zs).mean())

    def shrunk(weight: float, prior: float):
        return lambda zh, zs: float((zh + weight * zs).sum() / (len(zh) + prior))

    return {
        "top 8, w=1": top(1, 8),
        "mean, w=1": mean(1),
        "mean, w=2": mean(2),
        "mean, w=3": mean(3),
        "sum/(n+5), w=2": shrunk(2, 5),
        "sum/(n+5), w=3": shrunk(3, 5),
    }


def main() -> None:
    line_ids, sentence_ids = end_flags()
    variants = {"max 32": (32, None, True)}
    for limit in (32, 48, 64):
        for pack in (1, 8):
            variants[f"max {limit}, pack {pack}"] = (limit, pack, True)
            variants[f"max {limit}, pack {pack}, no line ends"] = (limit, pack, False)
    rules = score_rules()
    for path, records in recordings(sys.argv[1:]):
        real = sum(bool(r["held"][r["needle"][0] : r["needle"][1]].all()) for r in records)
        print(f"\n{path}: {len(records)} prompts; the recorded run held the needle whole in {real}")
        print("| segments | " + " | ".join(rules) + " |")
        print("|---" * (len(rules) + 1) + "|")
        for name, (limit, pack, at_lines) in variants.items():
            segmented = []  # (record, its spans under this segmentation): the same for every rule
            for record in records:
                ids = record["ids"]
                line_end = line_ids[ids] if at_lines else torch.zeros(len(ids), dtype=torch.bool)
                segmented.append(
                    (record, packed_spans(line_end.tolist(), sentence_ids[ids].tolist(), limit, pack))
                )
            cells = []
            for rule in rules.values():
                held = []
                for record, spans in segmented:
                    zh, zs = record["z_heads"], record["z_surprisal"]
                    keep = kept_mask(spans, [rule(zh[a:b], zs[a:b]) for a, b in spans], len(record["ids"]))
                    held.append(needle_held(record, keep))
                total, per_depth = held_counts(held)
                cells.append(f"{total} ({per_depth})")
            print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
