"""Whether the `lines` scorer's cache holds the needle, beside whether the model then found it (`niah_text`).

    PYTHONPATH=. python benchmark/results/natural_val_smollm2/window_line/needle_kept.py --length 8000 \
        --run runs/window_line/niah_val_8k/niah_text-validation/lines [--surprisal-weight 0.5]

For each validation prompt of the run (depths 0/25/50/75/100%, 5 each; completion style, the question as the
un-evicted tail): the share of the needle's tokens the cache holds after Locret's chunked prefill (budget 1024,
chunk 512, 256 stabilizers, the `lines` defaults but ``--surprisal-weight`` and ``--top-tokens``), and the
run's score for that prompt. Why: it separates a scorer that drops the needle from a model that misreads a
cache that holds it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import locret
from benchmark.run import encode_sample, read_predictions
from benchmark.tasks import load_task
from locret.acquire import load_tokenizer
from locret.generation import new_cache
from locret.scorers import LineScorer

MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
DEPTHS = (0.0, 0.25, 0.5, 0.75, 1.0)


def validation_needles(tokenizer, length: int, depth: float, task: str = "niah_text") -> list:
    """The run's 5 ``task`` validation prompts at ``length`` and ``depth`` (completion style)."""
    return load_task(
        task,
        data_dir="../shared/data",
        tokenizer=tokenizer,
        length=length,
        depth=depth,
        n=5,
        split="validation",
        style="completion",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--length", type=int, required=True)
    parser.add_argument(
        "--run", type=Path, required=True, help="the method's folder of a `benchmark.run` output"
    )
    parser.add_argument("--surprisal-weight", type=float, default=0.0, help="LineScorer's surprisal_weight")
    parser.add_argument(
        "--top-tokens", type=int, default=None, help="LineScorer's top_tokens (default: none, the line mean)"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    tokenizer = load_tokenizer(MODEL)
    model = locret.from_pretrained(MODEL, dtype=torch.bfloat16)
    print("| depth | prompt | needle tokens held | found |")
    print("|---|---|---|---|")
    totals = {"held whole": [0, 0], "held in part": [0, 0], "dropped": [0, 0]}  # [prompts, found]
    for depth in DEPTHS:
        case = args.run / f"b1024_L{args.length}_d{depth:g}"
        scores = {record["id"]: record["score"] for record in read_predictions(case / "predictions.jsonl")}
        for sample in validation_needles(tokenizer, args.length, depth):
            prompt = encode_sample(tokenizer, sample, False)
            config = locret.LocretConfig(
                budget=1024, chunk_size=512, n_stabilizers=256, n_local=prompt.n_question
            )
            scorer = LineScorer(
                tokenizer=tokenizer, surprisal_weight=args.surprisal_weight, top_tokens=args.top_tokens
            )
            cache = new_cache(model, config, scorer=scorer, track_positions=True)
            with torch.no_grad():
                locret.prefill_prompt(model, torch.tensor([prompt.ids]), config, cache=cache)
            kept = set(cache.layers[0].positions[0, 0].tolist())
            start, end = sample.meta["needle_token_spans"][0]
            held = sum(position in kept for position in range(start, end))
            found = scores[sample.id]
            kind = "held whole" if held == end - start else "held in part" if held else "dropped"
            totals[kind][0] += 1
            totals[kind][1] += found
            print(f"| {depth:g} | {sample.id} | {held}/{end - start} | {found:g} |")
    print()
    for kind, (prompts, found) in totals.items():
        print(f"needle {kind}: {prompts} prompts, found in {found:g}")


if __name__ == "__main__":
    main()
