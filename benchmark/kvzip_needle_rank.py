"""Where the needle ranks under KVzip's scores: per layer and KV head, and in the one global ranking.

    python -m benchmark.kvzip_needle_rank --length 4096 --n 5 --budget 1024 --data-dir ../shared/data \
        --out benchmark/results/natural_val_smollm2/kvzip/needle_rank_4096.json

Builds the ``niah_text`` validation prompts of ``benchmark.run`` (completion style, depth sweep), computes the
KVzip scores of each context (``benchmark.methods.kvzip``: prefill, then the reconstruction pass) with each
``--normalise`` and reports, for the needle's value tokens (the answer's tokens) and its whole sentence:
- per layer and KV head, each token's percentile among that head's context entries (100: the top), and
  whether it is in the head's top ``budget`` (``allocation=uniform`` keeps it);
- in the global ranking over every layer and head, each (layer, head, token) entry's percentile, and whether
  the top ``budget x layers x heads`` (``allocation=global``) keeps it.
Validation split only: never the test split.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from statistics import mean, median

import torch

import locret
from benchmark.methods.kvzip import KVzip, keep_mask, prefill_plain, reconstruction_scores, repeat_chunks
from benchmark.oracle import token_spans
from benchmark.run import encode_sample
from benchmark.tasks import load_task
from locret.acquire import load_tokenizer, resolve_model


def percentiles(scores: torch.Tensor) -> torch.Tensor:
    """Each entry's percentile along the last dimension: the share of entries scored strictly lower."""
    ranks = scores.argsort(dim=-1).argsort(dim=-1).float()  # ties get distinct ranks; scores rarely tie
    return 100.0 * ranks / (scores.shape[-1] - 1)


def global_percentiles(scores: torch.Tensor) -> torch.Tensor:
    return percentiles(scores.reshape(-1)).view_as(scores)


def value_span(sample, tokenizer, head_text: str, head_ids: list[int]) -> tuple[int, int]:
    """Token span of the asked needle's value (the answer) inside the prompt."""
    start, end = sample.meta["needle_char_spans"][0]
    value = sample.meta["needles"][0]["value"]
    offset = start + sample.prompt[start:end].index(value)
    return token_spans(tokenizer, head_text, head_ids, [(offset, offset + len(value))], True)[0]


def summarise_span(scores: torch.Tensor, span: tuple[int, int], budget: int) -> dict:
    """Percentiles and kept shares of one token span under both allocations."""
    local = percentiles(scores)[..., span[0] : span[1]]  # [L, Hkv, k]
    glob = global_percentiles(scores)[..., span[0] : span[1]]
    uniform = keep_mask(scores, budget, "uniform")[..., span[0] : span[1]]
    global_ = keep_mask(scores, budget, "global")[..., span[0] : span[1]]
    return {
        "tokens": span[1] - span[0],
        "head_percentile_mean": local.mean().item(),
        "head_percentile_first_token_median": local[..., 0].median().item(),
        "head_percentile_by_layer": local.mean(dim=(1, 2)).tolist(),
        "best_head_percentile_by_layer": local.mean(dim=2).amax(dim=1).tolist(),
        "uniform_kept_share": uniform.float().mean().item(),
        "uniform_heads_keeping_all": int(uniform.all(dim=-1).sum()),
        "global_percentile_mean": glob.mean().item(),
        "global_kept_share": global_.float().mean().item(),
        "global_heads_keeping_all": int(global_.all(dim=-1).sum()),
        "global_kept_by_layer": global_.float().mean(dim=(1, 2)).tolist(),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        prog="python -m benchmark.kvzip_needle_rank", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--model", default="HuggingFaceTB/SmolLM2-135M-Instruct")
    parser.add_argument("--length", type=int, required=True)
    parser.add_argument("--n", type=int, default=5)
    parser.add_argument("--budget", type=int, default=1024)
    parser.add_argument("--chunk", type=int, default=2048, help="context tokens per reconstruction input")
    parser.add_argument("--normalise", default="chunk,all", help="comma list of kvzip normalisations")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--out", required=True, help="JSON file")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model_dir = resolve_model(args.model)
    tokenizer = load_tokenizer(model_dir)
    model = locret.from_pretrained(model_dir, dtype=getattr(torch, args.dtype)).eval()
    samples = load_task(
        "niah_text",
        data_dir=args.data_dir,
        tokenizer=tokenizer,
        length=args.length,
        n=args.n,
        style="completion",
        split="validation",
    )
    first, later = KVzip(tokenizer=tokenizer).prompts(model)

    def chunks(context: torch.Tensor) -> list:
        return repeat_chunks(context[0].tolist(), first, later, args.chunk)

    results = {"settings": vars(args), "samples": []}
    for sample in samples:
        prompt = encode_sample(tokenizer, sample, chat_template=False)
        head_text = sample.prefix + sample.context
        head_ids = tokenizer.encode(head_text)
        context = torch.tensor([prompt.context_ids])
        spans = {
            "value": value_span(sample, tokenizer, head_text, head_ids),
            "sentence": tuple(sample.meta["needle_token_spans"][0]),
        }
        record = {
            "id": sample.id,
            "depth": sample.meta["depth"],
            "context_tokens": context.shape[1],
            "spans": spans,
        }
        started = time.perf_counter()
        cache = prefill_plain(model, context, 512)
        record["prefill_seconds"] = time.perf_counter() - started
        for normalise in args.normalise.split(","):
            started = time.perf_counter()
            scores = reconstruction_scores(model, cache, chunks(context), normalise).cpu()
            record[normalise] = {
                name: summarise_span(scores, span, args.budget) for name, span in spans.items()
            }
            record[normalise]["seconds"] = time.perf_counter() - started
        results["samples"].append(record)
        print(
            json.dumps(
                {k: record[k] for k in ("id", "depth")}
                | {
                    n: {s: round(record[n][s]["head_percentile_mean"], 1) for s in spans}
                    for n in args.normalise.split(",")
                }
            ),
            flush=True,
        )
    results["summary"] = {
        normalise: {
            span: {
                key: mean(r[normalise][span][key] for r in results["samples"])
                for key in (
                    "head_percentile_mean",
                    "uniform_kept_share",
                    "global_percentile_mean",
                    "global_kept_share",
                )
            }
            | {
                "head_percentile_first_token_median": median(
                    r[normalise][span]["head_percentile_first_token_median"] for r in results["samples"]
                )
            }
            for span in ("value", "sentence")
        }
        for normalise in args.normalise.split(",")
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(results["summary"], indent=1))
    return results


if __name__ == "__main__":
    main()
