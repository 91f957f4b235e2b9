"""Where the needle ranks under KVzip's scores: per layer and KV head, and in the one global ranking.

    python -m benchmark.kvzip_needle_rank --length 4096 --n 5 --budget 1024 --data-dir ../shared/data \
        --out benchmark/results/natural_val_smollm2/kvzip/needle_rank_4096.json

Builds the ``niah_text`` validation prompts of ``benchmark.run`` (completion style, depth sweep), computes the
KVzip scores of each context (``benchmark.methods.kvzip``: prefill, then the reconstruction pass) with each
``--normalise`` and reports, for the needle's value tokens (the answer's tokens) and its whole sentence:
- per layer and KV head, each token's percentile among that head's context entries (100: the top), and
  whether it is in the head's top ``budget`` (``allocation=uniform`` keeps it);
- in the global ranking over every layer and head, each (layer, head, token) entry's percentile, and whether
  the top ``budget x layers x heads`` (``allocation=global``) keeps it;
- with ``--heads DIR ...`` (``shipped``: the packaged heads): how well each set of retaining heads imitates
  KVzip under ``allocation=head`` (one ranking per layer over its KV heads, what
  ``LocretConfig(budget_allocation="adaptive")`` keeps), from the heads' scores of the same plain prefill
  pooled over ``--pooling``: the share of KVzip's kept entries the heads keep too, and the share of the
  needle value's (layer, head, token) entries each keeps. A continuous measure of the heads' gap to the
  label, where five needles found or lost say little. ``--scores-dir`` stores KVzip's scores per prompt
  (safetensors) and reuses them, so a new set of heads costs one prefill per prompt.
Validation split only: never the test split.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from statistics import mean, median

import torch
from safetensors.torch import load_file, save_file

import locret
from benchmark.methods.kvzip import (
    KVzip,
    head_scores,
    keep_mask,
    prefill_plain,
    reconstruction_scores,
    repeat_chunks,
)
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


def imitation(kvzip: torch.Tensor, heads: torch.Tensor, span: tuple[int, int], budget: int) -> dict:
    """How much of KVzip's ``allocation=head`` selection the heads' scores reproduce (both ``[L, Hkv, n]``)."""
    wanted, kept = keep_mask(kvzip, budget, "head"), keep_mask(heads, budget, "head")
    return {
        "kvzip_kept_overlap": ((wanted & kept).sum() / wanted.sum()).item(),
        "value_kept_share_kvzip": wanted[..., span[0] : span[1]].float().mean().item(),
        "value_kept_share_heads": kept[..., span[0] : span[1]].float().mean().item(),
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
    parser.add_argument("--heads", nargs="*", default=[], help="adapter dirs (or 'shipped') to compare")
    parser.add_argument("--pooling", type=int, default=7, help="score pooling of the heads' scores")
    parser.add_argument("--scores-dir", type=Path, default=None, help="store / reuse KVzip's scores here")
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

    contexts = {
        sample.id: torch.tensor([encode_sample(tokenizer, sample, chat_template=False).context_ids])
        for sample in samples
    }
    heads_scores = {}
    for name in args.heads:
        heads_model = locret.from_pretrained(
            model_dir, None if name == "shipped" else name, dtype=getattr(torch, args.dtype)
        ).eval()
        heads_scores[name] = {
            key: head_scores(heads_model, context, 512, args.pooling)[1].cpu()
            for key, context in contexts.items()
        }
        del heads_model
    results = {"settings": {**vars(args), "scores_dir": str(args.scores_dir)}, "samples": []}
    for sample in samples:
        head_text = sample.prefix + sample.context
        head_ids = tokenizer.encode(head_text)
        context = contexts[sample.id]
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
        cache = None
        for normalise in args.normalise.split(","):
            started = time.perf_counter()
            path = (
                None if args.scores_dir is None else args.scores_dir / f"{sample.id}-{normalise}.safetensors"
            )
            if path is not None and path.exists():
                scores = load_file(path)["scores"]
            else:
                cache = prefill_plain(model, context, 512) if cache is None else cache
                scores = reconstruction_scores(model, cache, chunks(context), normalise).cpu()
                if path is not None:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    save_file({"scores": scores.contiguous()}, path)
            record[normalise] = {
                name: summarise_span(scores, span, args.budget) for name, span in spans.items()
            }
            record[normalise]["seconds"] = time.perf_counter() - started
            record[normalise]["heads"] = {
                name: imitation(scores, heads_scores[name][sample.id], spans["value"], args.budget)
                for name in args.heads
            }
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
    for normalise in args.normalise.split(","):
        results["summary"][normalise]["heads"] = {
            name: {
                key: mean(r[normalise]["heads"][name][key] for r in results["samples"])
                for key in results["samples"][0][normalise]["heads"][name]
            }
            for name in args.heads
        }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(results["summary"], indent=1))
    return results


if __name__ == "__main__":
    main()
