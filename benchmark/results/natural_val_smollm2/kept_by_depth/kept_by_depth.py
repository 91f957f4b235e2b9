"""Where in a long input does the recommended scorer's cache end up? Kept entries and token values by depth.

    PYTHONPATH=. python benchmark/results/natural_val_smollm2/kept_by_depth/kept_by_depth.py --length 65536 \
        [--task niah_text_paragraphs] [--depths 0,0.25,0.5,0.75,1] [--n 1]

For each validation prompt (completion style, the question as the un-evicted tail): Locret's run with the
recommended ``LineScorer(max_line=32)`` (budget 1024, chunk 512, 256 stabilizers), the per-token values the
scorer computed (heads + surprisal, each standardized by the input so far) and the positions the final cache
holds. Prints, per tenth of the context: the share of the kept context entries (sinks and the newest
``n_stabilizers`` left out) and the tokens' mean value; per prompt whether the needle was held, its tokens' top
value and that value's quantile among all the context's token values. An unbiased scorer keeps entries
wherever values are high; if a tenth's mean value drifts, the standardization by "the input so far" favours
or penalises that part of the input.
"""

from __future__ import annotations

import argparse

import torch

import locret
from benchmark.methods import get_method
from benchmark.results.natural_val_smollm2.window_line.needle_kept import MODEL, validation_needles
from benchmark.run import encode_sample, eos_ids, needle_held
from locret.acquire import load_tokenizer
from locret.scorers import LineScorer
from locret.scorers.segments import N_SINKS

TENTHS = 10
WINDOW = 256  # the newest entries, kept whatever their score (n_stabilizers)


def record_token_values(store: list[torch.Tensor]) -> None:
    """Make every ``LineScorer`` append its per-chunk token values ``[T]`` (row 0) to ``store``."""
    original = LineScorer.token_values

    def recorded(self, *args, **kwargs):
        values = original(self, *args, **kwargs)
        store.append(values[0].detach().float().cpu())
        return values

    LineScorer.token_values = recorded


def print_chunks(values: list[torch.Tensor], positions: torch.Tensor, first: int, n_context: int) -> None:
    """Per chunk (the first ``first``, then all later ones together): kept entries and its token values' mean,
    spread, 99th percentile and maximum (the sinks' and the question's left out)."""
    print("| chunk | kept entries | mean | std | 99th percentile | max |")
    print("|---|---|---|---|---|---|")
    bounds = torch.tensor([0, *torch.tensor([len(v) for v in values]).cumsum(0).tolist()])
    groups = [(f"{i}", slice(i, i + 1)) for i in range(first)] + [(f"{first}-", slice(first, len(values)))]
    for name, chunks in groups:
        start, end = bounds[chunks.start].item(), min(bounds[min(chunks.stop, len(values))].item(), n_context)
        chunk = torch.cat(values)[start:end]
        chunk = chunk[chunk.isfinite()]
        kept = ((positions >= start) & (positions < end)).sum().item()
        print(
            f"| {name} | {kept} | {chunk.mean():.2f} | {chunk.std():.2f} | {chunk.quantile(0.99):.2f} |"
            f" {chunk.max():.2f} |"
        )


def load_recommended():
    """The model (bf16, 1 thread), its tokenizer, its end-of-text ids and the recommended scorer's method."""
    torch.set_num_threads(1)
    tokenizer = load_tokenizer(MODEL)
    model = locret.from_pretrained(MODEL, dtype=torch.bfloat16)
    return model, tokenizer, eos_ids(tokenizer, model), get_method("lines:max_line=32")


def recommended_run(model, tokenizer, eos, method, sample, budget: int = 1024):
    """The recommended scorer's prefill of ``sample`` (chunk 512, one new token), as ``benchmark.run`` makes
    it: the prompt's context length and the final cache, its positions tracked."""
    prompt = encode_sample(tokenizer, sample, False)
    config = method.locret_config(budget, 512, WINDOW, prompt.n_question, len(prompt.ids))
    with torch.no_grad():
        out = method.generate(
            model, torch.tensor([prompt.ids]), config, 1, eos_token_id=eos, track_positions=True
        )
    return prompt, len(prompt.ids) - prompt.n_question, out.past_key_values


def tenth_shares(kept: torch.Tensor, n_context: int) -> torch.Tensor:
    """The share ``[TENTHS]`` of the kept context positions ``kept`` (1-D) in each tenth of the context, the
    sinks and the newest ``WINDOW`` entries left out (they are kept whatever their score)."""
    scored = kept[(kept >= N_SINKS) & (kept < n_context - WINDOW)]
    return torch.bincount(scored * TENTHS // n_context, minlength=TENTHS).float() / max(len(scored), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--length", type=int, required=True)
    parser.add_argument("--task", default="niah_text_paragraphs")
    parser.add_argument("--depths", default="0,0.25,0.5,0.75,1")
    parser.add_argument("--n", type=int, default=1, help="prompts per depth (the first n of the run's five)")
    parser.add_argument("--chunks", type=int, default=0, help="also print each of the first CHUNKS chunks")
    args = parser.parse_args()
    model, tokenizer, eos, method = load_recommended()
    values: list[torch.Tensor] = []
    record_token_values(values)
    kept_share, value_mean = torch.zeros(TENTHS), torch.zeros(TENTHS)
    prompts = 0
    print(f"{args.task} validation, {args.length} tokens\n")
    print(
        "| depth | prompt | needle held | needle top value | its quantile | kept context entries by tenth (%) |"
    )
    print("|---|---|---|---|---|---|")
    for depth in (float(d) for d in args.depths.split(",")):
        for sample in validation_needles(tokenizer, args.length, depth, args.task)[: args.n]:
            values.clear()
            _, n_context, cache = recommended_run(model, tokenizer, eos, method, sample)
            token_values = torch.cat(values)[:n_context]
            positions = torch.tensor(sorted(cache.layers[0].positions[0, 0].tolist()))
            shares = tenth_shares(positions, n_context)
            kept_share += shares
            finite = token_values.isfinite()
            bounds = torch.linspace(0, n_context, TENTHS + 1).long()
            value_mean += torch.stack(
                [token_values[a:b][finite[a:b]].mean() for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
            )
            prompts += 1
            start, end = sample.meta["needle_token_spans"][0]
            top = token_values[start:end].max().item()
            quantile = (token_values[finite] < top).float().mean().item()
            held = needle_held(cache, sample.meta["needle_token_spans"][:1]) == [1.0]
            if args.chunks:
                print_chunks(values, positions, args.chunks, n_context)
            cells = " ".join(f"{100 * s:.0f}" for s in shares)
            mark = "yes" if held else "no"
            print(f"| {depth:g} | {sample.id} | {mark} | {top:.2f} | {quantile:.4f} | {cells} |", flush=True)
    print(f"\nmean over {prompts} prompts, by tenth of the context:")
    print("kept share (%):   " + " ".join(f"{100 * s / prompts:5.1f}" for s in kept_share))
    print("mean token value: " + " ".join(f"{v / prompts:5.2f}" for v in value_mean))


if __name__ == "__main__":
    main()
