"""Prefill speed of sentence surprisal (whole vocabulary, or a softmax over the first K ids) against the
shipped heads at their recommended settings (pooling 15), in one process, on validation haystack text;
``--lines`` adds the lines scorer (``locret.scorers.LineScorer``, the same heads averaged per line, heads only:
``surprisal_weight=0, top_tokens=None``),
``--lines-surprisal-weight W`` the lines scorer with the sentence surprisal added (``surprisal_weight=W``),
``--lines-top-tokens K`` each of those lines scorers again with ``top_tokens=K``.

    PYTHONPATH=. python benchmark/results/natural_val_smollm2/surprisal_defaults/prefill_speed.py \
        --tokens 8192 --repeats 3 --threads 1 --softmax-tokens 4096 8192 [--surprising-share 0.125] [--lines] \
        [--lines-surprisal-weight 0.5] [--lines-top-tokens 8]

Each round runs every variant once, in a rotating order, over the same prompt; the table gives each
variant's median prefill tok/s and its ratio to the heads' in the same rounds.
"""

import argparse
import statistics
import time

import torch

import locret
from benchmark.natural.books import split_text
from locret.acquire import load_tokenizer
from locret.generation import new_cache
from locret.scorers import LineScorer, SurprisalScorer

MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=8192)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--softmax-tokens", type=int, nargs="*", default=[4096, 8192])
    parser.add_argument("--surprising-share", type=float, default=None, help="for every surprisal variant")
    parser.add_argument("--lines", action="store_true", help="also time the lines scorer")
    parser.add_argument(
        "--lines-surprisal-weight", type=float, nargs="*", default=[], help="lines + surprisal"
    )
    parser.add_argument("--lines-top-tokens", type=int, nargs="*", default=[], help="lines by top tokens")
    parser.add_argument("--data-dir", default="../shared/data")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = locret.from_pretrained(MODEL, dtype=torch.bfloat16)
    tokenizer = load_tokenizer(MODEL)
    text = split_text(args.data_dir, "validation")[: args.tokens * 8]
    ids = tokenizer(text, return_tensors="pt").input_ids[:, : args.tokens]
    base = dict(budget=1024, chunk_size=512, n_stabilizers=256, n_local=64)
    heads_config = locret.LocretConfig(**base, score_pooling=15)
    prose = locret.LocretConfig(**base)
    variants = {"heads (pooling 15)": (heads_config, lambda: None)}
    capped = "" if args.surprising_share is None else f", surprising share {args.surprising_share}"
    for k in [None, *args.softmax_tokens]:
        name = ("surprisal, whole vocabulary" if k is None else f"surprisal, softmax over {k}") + capped
        variants[name] = (
            prose,
            lambda k=k: SurprisalScorer(
                tokenizer=tokenizer, softmax_tokens=k, surprising_share=args.surprising_share
            ),
        )
    if args.lines:
        variants["lines"] = (
            prose,
            lambda: LineScorer(tokenizer=tokenizer, surprisal_weight=0, top_tokens=None),
        )
    for weight in args.lines_surprisal_weight:
        for top in [None, *args.lines_top_tokens]:
            name = f"lines, surprisal weight {weight}" + ("" if top is None else f", top {top} tokens")
            variants[name] = (
                prose,
                lambda weight=weight, top=top: LineScorer(
                    tokenizer=tokenizer, surprisal_weight=weight, top_tokens=top
                ),
            )
    seconds = {name: [] for name in variants}
    names = list(variants)
    for round_ in range(args.repeats + 1):  # round 0 warms up
        order = names[round_ % len(names) :] + names[: round_ % len(names)]
        for name in order:
            config, scorer = variants[name]
            made = scorer()
            cache = None if made is None else new_cache(model, config, scorer=made)
            start = time.perf_counter()
            with torch.no_grad():
                locret.prefill_prompt(model, ids, config, cache=cache)
            if round_:
                seconds[name].append(time.perf_counter() - start)
    print(
        f"{MODEL} bf16, {ids.shape[1]} tokens of validation text, budget 1024, chunk 512, "
        f"threads {args.threads}, rounds {args.repeats}"
    )
    heads = statistics.median(seconds[names[0]])
    print("| variant | median prefill tok/s | ratio to the heads | seconds per round |\n|---|---|---|---|")
    for name in names:
        median = statistics.median(seconds[name])
        runs = ", ".join(f"{s:.2f}" for s in seconds[name])
        print(f"| {name} | {ids.shape[1] / median:.0f} | {heads / median:.3f} | {runs} |")


if __name__ == "__main__":
    main()
