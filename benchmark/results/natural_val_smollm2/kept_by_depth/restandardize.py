"""Would the recommended scorer keep more of a long input's middle if every entry were standardized alike?

    PYTHONPATH=. python benchmark/results/natural_val_smollm2/kept_by_depth/restandardize.py --length 65536 \
        [--task niah_text_paragraphs] [--depths 0.5] [--n 5]

``LineScorer`` standardizes each chunk's head scores and surprisal by the moments of the input so far and
keeps an entry's score from then on. Early in a long input those moments come from few chunks (their spread
misses the variation between passages), so early lines score higher than like lines read later. This script
runs the recommended ``LineScorer(max_line=32)`` (budget 1024, chunk 512, 256 stabilizers) on validation
prompts, records each chunk's raw head scores and surprisal, and replays the selection offline: each
32-token line scored by the mean of its 8 highest token values (z of the head average + z of the
surprisal), the best lines kept up to the budget (the 4 sinks and the newest 256 entries kept anyway), with
the moments taken three ways: ``cumulative`` (as the scorer does; checked against the real cache),
``final`` (the whole input's moments, for every chunk: not computable while streaming, a reference) and
``chunk`` (each chunk's own moments). Prints, per way, whether the needle sentence is kept whole, its line's
rank, and the kept entries' share by tenth of the context.
"""

from __future__ import annotations

import argparse

import torch

import locret.scorers.lines as lines_module
from benchmark.results.natural_val_smollm2.kept_by_depth.kept_by_depth import (
    TENTHS,
    WINDOW,
    load_recommended,
    recommended_run,
    tenth_shares,
)
from benchmark.results.natural_val_smollm2.window_line.needle_kept import validation_needles
from benchmark.run import needle_held
from locret.scorers.lines import LineScorer, line_end_tokens
from locret.scorers.segments import N_SINKS as SINKS

BUDGET = 1024
# its segment rule (max_line), line score (segment_score) and surprisal weight are replayed
RECOMMENDED = LineScorer(max_line=32)
WAYS = ("cumulative", "final", "chunk")


def record_raw(store: dict[str, list[torch.Tensor]]) -> None:
    """Make ``LineScorer`` append each chunk's raw head scores ``[L, H, T]`` and surprisal ``[T]`` to ``store``."""
    original = lines_module.standardized

    def recorded(state, key, values, start):
        if key in ("moments", "surprisal_moments"):
            store[key].append(values[0].detach().float().cpu())
        return original(state, key, values, start)

    lines_module.standardized = recorded


def standardize(values: torch.Tensor, bounds: list[int], way: str, n_context: int) -> torch.Tensor:
    """``values`` ``[..., N]`` standardized per chunk (``bounds``) by the moments ``way`` names (sinks left out)."""
    out = torch.empty_like(values)
    for start, end in zip(bounds[:-1], bounds[1:], strict=True):
        lo, hi = {"cumulative": (SINKS, end), "final": (SINKS, n_context), "chunk": (max(start, SINKS), end)}[
            way
        ]
        counted = values[..., lo:hi]
        if counted.shape[-1] == 0:
            out[..., start:end] = 0
            continue
        mean = counted.mean(-1, keepdim=True)
        std = counted.std(-1, unbiased=False, keepdim=True).clamp_min(1e-6)
        out[..., start:end] = (values[..., start:end] - mean) / std
    return out


def segments(
    ids: list[int], ends: torch.Tensor, max_line: int = RECOMMENDED.max_line
) -> list[tuple[int, int]]:
    """The scorer's lines: closed at a token ``ends`` flags (inclusive) or at ``max_line`` tokens."""
    spans, first = [], 0
    for index, token in enumerate(ids):
        if ends[token] or index + 1 - first >= max_line:
            spans.append((first, index + 1))
            first = index + 1
    if first < len(ids):
        spans.append((first, len(ids)))
    return spans


def standardized_terms(
    stored_heads: torch.Tensor, surprisal: torch.Tensor, bounds: list[int], way: str, n_context: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The two terms of a token's value, each ``[n_context]``: the heads' z-scores averaged and standardized
    again, and the surprisal's z-score, the moments taken the way ``way`` names (``cumulative`` is the scorer's)."""
    z_heads = standardize(stored_heads, bounds, way, n_context).mean(dim=(0, 1))
    z_surprisal = standardize(surprisal, bounds, way, n_context)
    return standardize(z_heads, bounds, way, n_context)[:n_context], z_surprisal[:n_context]


def token_values(
    stored_heads: torch.Tensor,
    surprisal: torch.Tensor,
    bounds: list[int],
    way: str,
    n_context: int,
    surprisal_weight: float = RECOMMENDED.surprisal_weight,
):
    """Each context token's value ``[n_context]``: the heads' term plus ``surprisal_weight`` x the surprisal's
    (``standardized_terms``)."""
    z_heads, z_surprisal = standardized_terms(stored_heads, surprisal, bounds, way, n_context)
    return z_heads + surprisal_weight * z_surprisal


def line_scores(
    values: torch.Tensor, spans: list[tuple[int, int]], scorer: LineScorer = RECOMMENDED
) -> torch.Tensor:
    """Each line's score as ``scorer`` (by default the recommended one) computes it from its tokens'
    ``values`` (the sinks left out; a line of sinks only scores 0, and is kept anyway)."""
    return torch.tensor(
        [
            scorer.segment_score(values[max(a, SINKS) : b].tolist(), 0.0) if b > SINKS else 0.0
            for a, b in spans
        ]
    )


def selection(
    scores: torch.Tensor, spans: list[tuple[int, int]], n_context: int
) -> tuple[torch.Tensor, list]:
    """Kept positions (sinks, the newest ``WINDOW`` with the line they start in, then the best lines by
    ``scores`` up to the budget) and the scored lines' starts in rank order."""
    window = n_context - WINDOW
    keep = torch.zeros(n_context, dtype=torch.bool)
    keep[:SINKS] = True
    keep[window:] = True
    ranked = []
    for (start, end), score in zip(spans, scores.tolist(), strict=True):
        if end <= SINKS:
            continue
        if end > window:  # the line the window starts in is kept whole
            keep[start:] = True
            continue
        ranked.append((score, start, end))
    ranked.sort(reverse=True)
    room = BUDGET - int(keep.sum())
    for _, start, end in ranked:
        if room <= 0:
            break
        take = min(end - start, room)
        keep[start : start + take] = True
        room -= take
    return keep, [start for _, start, _ in ranked]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--length", type=int, required=True)
    parser.add_argument("--task", default="niah_text_paragraphs")
    parser.add_argument("--depths", default="0.5")
    parser.add_argument("--n", type=int, default=5, help="prompts per depth (the first n of the run's five)")
    args = parser.parse_args()
    model, tokenizer, eos, method = load_recommended()
    ends = line_end_tokens(tokenizer, model.config.vocab_size)
    raw: dict[str, list[torch.Tensor]] = {"moments": [], "surprisal_moments": []}
    record_raw(raw)
    held = {way: 0 for way in WAYS}
    shares = {way: torch.zeros(TENTHS) for way in WAYS}
    prompts = 0
    print(f"{args.task} validation, {args.length} tokens\n")
    print(
        "| depth | prompt | real cache: needle held | agreement with the real cache | "
        + " | ".join(f"{w}: held, line rank" for w in WAYS)
        + " |"
    )
    print("|---|---|---|---|" + "---|" * len(WAYS))
    for depth in (float(d) for d in args.depths.split(",")):
        for sample in validation_needles(tokenizer, args.length, depth, args.task)[: args.n]:
            for chunks in raw.values():
                chunks.clear()
            prompt, n_context, cache = recommended_run(model, tokenizer, eos, method, sample, BUDGET)
            real = torch.zeros(n_context, dtype=torch.bool)
            positions = torch.tensor(cache.layers[0].positions[0, 0].tolist())
            real[positions[positions < n_context]] = True
            real_held = needle_held(cache, sample.meta["needle_token_spans"][:1]) == [1.0]
            heads, surprisal = torch.cat(raw["moments"], -1), torch.cat(raw["surprisal_moments"], -1)
            sizes = [c.shape[-1] for c in raw["surprisal_moments"]]
            bounds = [0, *torch.tensor(sizes).cumsum(0).tolist()]
            spans = segments(prompt.ids[:n_context], ends)
            a, b = sample.meta["needle_token_spans"][0]
            cells, agreement = [], ""
            for way in WAYS:
                values = token_values(heads, surprisal, bounds, way, n_context)
                keep, order = selection(line_scores(values, spans), spans, n_context)
                needle_kept = bool(keep[a:b].all())
                held[way] += needle_kept
                line = max(start for start, _ in spans if start <= a)
                cells.append(
                    f"{'yes' if needle_kept else 'no'}, {order.index(line) if line in order else '-'}"
                )
                shares[way] += tenth_shares(keep.nonzero().squeeze(-1), n_context)
                if way == "cumulative":
                    agreement = f"{(keep & real).sum().item() / real.sum().item():.2f}"
            prompts += 1
            print(
                f"| {depth:g} | {sample.id} | {'yes' if real_held else 'no'} | {agreement} | "
                + " | ".join(cells)
                + " |",
                flush=True,
            )
    print(f"\nof {prompts} prompts, needle held and kept share (%) by tenth of the context:")
    for way in WAYS:
        tenths = " ".join(f"{100 * s / prompts:5.1f}" for s in shares[way])
        print(f"{way:>10}: held {held[way]}/{prompts}; {tenths}")


if __name__ == "__main__":
    main()
