"""Would scoring a line against its neighbours keep more deep paragraph needles? An offline replay.

    PYTHONPATH=. python benchmark/results/natural_val_smollm2/local_contrast/local_contrast.py --length 32768 \
        --features runs/local_contrast [--depths 0.25,0.5,0.75] [--n 5]

At 32K-128K the recommended ``LineScorer(max_line=32)`` ranks a paragraph needle's line 40-340th of ~1,000-4,000
where ~24 fit the budget, and its kept lines crowd some stretches of the input (the first tenth held 20% of them
at 64K: ``../kept_by_depth/``). If stretches of a book score high as a whole (dialogue, names), a line that
stands out from its own neighbours, as an inserted fact does, could be ranked by that contrast instead. This
script runs the recommended scorer once per validation prompt (budget 1024, chunk 512, 256 stabilizers), stores
each chunk's raw head scores and surprisal (``--features``, safetensors; a rerun reuses them), and replays the
selection offline as ``../kept_by_depth/restandardize.py`` does (its ``cumulative`` way: 97-100% of the real
cache), with each line's score ``s`` (the mean of its 8 highest token values) replaced by
``s - weight * mean(s of the K lines before it)`` (``causal``: computable while streaming) or of the K lines on
each side (``two-sided``: a reference; the lines after a chunk's last ones are not read yet). Prints, per rule,
the prompts whose needle sentence is kept whole and the needle line's rank.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from benchmark.results.natural_val_smollm2.kept_by_depth.kept_by_depth import (
    load_recommended,
    recommended_run,
)
from benchmark.results.natural_val_smollm2.kept_by_depth.restandardize import (
    BUDGET,
    line_scores,
    record_raw,
    segments,
    selection,
    token_values,
)
from benchmark.results.natural_val_smollm2.window_line.needle_kept import validation_needles
from locret.scorers.lines import line_end_tokens

RULES = [("shipped", None, 0, 0.0)] + [
    (side, side, k, w) for side in ("causal", "two-sided") for k in (8, 32, 128) for w in (0.5, 1.0)
]


def features(model, tokenizer, eos, method, sample, path: Path) -> dict[str, torch.Tensor]:
    """The prompt's raw head scores ``[L, H, T]``, surprisal ``[T]``, chunk bounds, context ids and needle
    span, from ``path`` or from one recommended run (then stored there)."""
    if path.is_file():
        return load_file(path)
    raw: dict[str, list[torch.Tensor]] = {"moments": [], "surprisal_moments": []}
    record_raw(raw)
    prompt, n_context, _ = recommended_run(model, tokenizer, eos, method, sample, BUDGET)
    sizes = [c.shape[-1] for c in raw["surprisal_moments"]]
    stored = {
        "heads": torch.cat(raw["moments"], -1).contiguous(),
        "surprisal": torch.cat(raw["surprisal_moments"], -1).contiguous(),
        "bounds": torch.tensor([0, *torch.tensor(sizes).cumsum(0).tolist()]),
        "ids": torch.tensor(prompt.ids[:n_context]),
        "needle": torch.tensor(sample.meta["needle_token_spans"][0]),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(stored, path)
    return stored


def contrasted(scores: torch.Tensor, side: str | None, k: int, weight: float) -> torch.Tensor:
    """``scores`` less ``weight`` x the mean score of the ``k`` lines before each (``causal``) or on each side."""
    if side is None:
        return scores
    padded = torch.cat([scores.new_zeros(1), scores.cumsum(0)])
    index = torch.arange(len(scores))
    lo = (index - k).clamp_min(0)
    before = (padded[index] - padded[lo]) / (index - lo).clamp_min(1)
    if side == "causal":
        return scores - weight * before
    hi = (index + 1 + k).clamp_max(len(scores))
    after_sum = padded[hi] - padded[index + 1]
    around = (padded[index] - padded[lo] + after_sum) / ((index - lo) + (hi - index - 1)).clamp_min(1)
    return scores - weight * around


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--length", type=int, required=True)
    parser.add_argument("--features", type=Path, required=True, help="where the recorded features are kept")
    parser.add_argument("--task", default="niah_text_paragraphs")
    parser.add_argument("--depths", default="0.25,0.5,0.75")
    parser.add_argument("--n", type=int, default=5, help="prompts per depth (the first n of the run's five)")
    args = parser.parse_args()
    model, tokenizer, eos, method = load_recommended()
    ends = line_end_tokens(tokenizer, model.config.vocab_size)
    held = {rule: 0 for rule in RULES}
    ranks: dict[tuple, list[int]] = {rule: [] for rule in RULES}
    prompts = 0
    print(f"{args.task} validation, {args.length} tokens\n")
    print("| depth | prompt | lines | " + " | ".join(_name(rule) for rule in RULES) + " |")
    print("|---|---|---|" + "---|" * len(RULES))
    for depth in (float(d) for d in args.depths.split(",")):
        for sample in validation_needles(tokenizer, args.length, depth, args.task)[: args.n]:
            path = args.features / f"{args.task}_{args.length}_d{depth:g}_{sample.id}.safetensors"
            stored = features(model, tokenizer, eos, method, sample, path)
            n_context = len(stored["ids"])
            spans = segments(stored["ids"].tolist(), ends)
            values = token_values(
                stored["heads"], stored["surprisal"], stored["bounds"].tolist(), "cumulative", n_context
            )
            base = line_scores(values, spans)
            a, b = stored["needle"].tolist()
            line = max(start for start, _ in spans if start <= a)
            cells = []
            for rule in RULES:
                keep, order = selection(contrasted(base, *rule[1:]), spans, n_context)
                kept = bool(keep[a:b].all())
                rank = order.index(line) if line in order else -1
                held[rule] += kept
                ranks[rule].append(rank)
                cells.append(f"{'yes' if kept else 'no'} {rank}")
            prompts += 1
            print(f"| {depth:g} | {sample.id} | {len(spans)} | " + " | ".join(cells) + " |", flush=True)
    print(f"\nof {prompts} prompts: needle kept whole, median rank of its line")
    for rule in RULES:
        median = torch.tensor(ranks[rule]).float().median().item()
        print(f"{_name(rule):>22}: {held[rule]:2d}/{prompts}, median rank {median:.0f}")


def _name(rule: tuple) -> str:
    name, side, k, weight = rule
    return name if side is None else f"{name} K={k} w={weight:g}"


if __name__ == "__main__":
    main()
