"""How often can a scorer that never sees the question hold `multidoc_qa`'s gold passage whole? (issue 25)

Every passage of a `multidoc_qa` prompt is some question's gold passage from the same split, and the gold
passage's position is drawn independently of the text (``benchmark/natural/multidoc.py``), so a scorer that
reads only the context cannot tell the gold passage from a distractor: whatever it keeps, the chance that
it holds the gold passage whole is the prior weight of the positions it holds whole. The gold sits at
``round(f * k)`` for ``f`` uniform in [0, 1) and ``k`` distractors: each inner position has weight ``1/k``,
the first and the last ``1/(2k)``.

Per prompt, with the prompt tokenized as ``benchmark.run`` does (chat template), this script computes the
largest such weight any cache of ``budget`` entries can hold: the first ``N_SINKS`` tokens and the newest
``n_stabilizers`` context tokens are kept anyway (a passage they cover wholly is free, the one the window
starts in costs only its older part); the rest of the budget buys whole passages, an exact optimum since
only two weights occur (try each choice of the two end passages, then buy inner passages cheapest first):
the passages the ``passage_oracle`` method keeps (``benchmark/methods/passage_oracle.py``).
It also computes what StreamingLLM (the sinks and the newest ``budget - N_SINKS`` tokens) holds. Only the
tokenizer runs: no model, no prediction. Nothing is chosen from it.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from benchmark.methods.passage_oracle import passages_to_keep
from benchmark.natural.multidoc import generate_multidoc_qa, gold_position_weights
from benchmark.run import encode_sample
from locret.acquire import load_tokenizer
from locret.scorers.segments import N_SINKS


def analyse(
    tokenizer, data_dir: str, split: str, length: int, budget: int, n_stabilizers: int, n: int | None
):
    rows = []
    for sample in generate_multidoc_qa(data_dir, split, tokenizer, length, n, seed=0):
        context_length = len(encode_sample(tokenizer, sample, chat_template=True).context_ids)
        spans = tuple(tuple(span) for span in sample.meta["document_token_spans"])
        if spans[-1][1] != context_length:
            raise ValueError(f"{sample.id}: the context does not end with its last document")
        weights = dict(zip(spans, gold_position_weights(len(spans)), strict=True))
        start, _ = spans[sample.meta["gold_index"]]
        rows.append(
            {
                "id": sample.id,
                "n_documents": len(spans),
                "mean_document_tokens": statistics.fmean(e - s for s, e in spans),
                "bound": sum(weights[span] for span in passages_to_keep(spans, budget, n_stabilizers)),
                "streaming_llm_holds_gold": start >= context_length - (budget - N_SINKS),
            }
        )
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="HuggingFaceTB/SmolLM2-135M-Instruct")
    p.add_argument("--data-dir", default="../shared/data")
    p.add_argument("--splits", nargs="+", default=["validation", "test"])
    p.add_argument("--lengths", nargs="+", type=int, default=[4096, 32768])
    p.add_argument("--budget", type=int, default=1024)
    p.add_argument("--n-stabilizers", type=int, default=256)
    p.add_argument("--n", type=int, default=None, help="the first n questions of each split (default: all)")
    p.add_argument("--out", type=Path, required=True, help="a JSON file of per-prompt rows")
    a = p.parse_args()
    tokenizer = load_tokenizer(a.model)
    results = {}
    print(f"budget {a.budget}, {a.n_stabilizers} stabilizers, {N_SINKS} sinks")
    print(
        "| split | length | prompts | documents (mean) | tokens per document (mean) "
        "| bound on P(gold held whole) | StreamingLLM holds it |"
    )
    print("|---|---|---|---|---|---|---|")
    for split in a.splits:
        for length in a.lengths:
            rows = analyse(tokenizer, a.data_dir, split, length, a.budget, a.n_stabilizers, a.n)
            results[f"{split}/{length}"] = rows
            print(
                f"| {split} | {length} | {len(rows)} | {statistics.fmean(r['n_documents'] for r in rows):.1f} "
                f"| {statistics.fmean(r['mean_document_tokens'] for r in rows):.0f} "
                f"| {100 * statistics.fmean(r['bound'] for r in rows):.1f}% "
                f"| {sum(r['streaming_llm_holds_gold'] for r in rows)} of {len(rows)} "
                f"({100 * statistics.fmean(r['streaming_llm_holds_gold'] for r in rows):.1f}%) |"
            )
    a.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
