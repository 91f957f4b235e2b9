"""How KVzip's one global ranking shares a cache budget between layers and KV heads, on training text.

    python -m benchmark.head_budget_profile --length 4096 --budget 1024 --passages 2 --data-dir ../shared/data \
        --out benchmark/results/head_budget_profiles/smollm2_4k.json

For ``--passages`` windows of ``--length`` tokens from each TRAIN book (``benchmark.natural.splits``; never an
evaluation book), computes KVzip's reconstruction scores (``benchmark.methods.kvzip``, its own protocol) and
keeps the top ``budget x layers x KV heads`` entries of one ranking over all of them, as KVzip's default
allocation does. Each (layer, KV head)'s share, as a multiple of ``budget``, is its *quota*; the profile is
the mean quota over the windows, written as JSON with each window's quotas and how well each window's
quotas agree with the others' mean (Pearson r). ``kvzip:allocation=profile:profile=NAME`` (the file's name
in ``benchmark/results/head_budget_profiles/``, without ``.json``) keeps each head's
top ``quota x budget`` entries by any score: whether a fixed, per-head share of the budget (DuoAttention's
premise) is what lets KVzip keep facts in prose that a uniform per-head budget loses.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from tqdm import tqdm

import locret
from benchmark.methods.kvzip import KVzip, global_quotas, prefill_plain, reconstruction_scores, repeat_chunks
from benchmark.natural.books import book_path, strip_gutenberg
from benchmark.natural.splits import TRAIN_BOOKS
from locret.acquire import load_tokenizer, resolve_model


def book_text(data_dir: str, name: str) -> str:
    """A TRAIN book's text, its Project Gutenberg header and footer removed where it has them."""
    text = book_path(data_dir, name).read_text("utf-8")
    try:
        return strip_gutenberg(text)
    except ValueError:  # tinyshakespeare: no Gutenberg markers
        return text


def windows(tokenizer, data_dir: str, length: int, per_book: int) -> list[tuple[str, int, list[int]]]:
    """``per_book`` windows of ``length`` tokens from each TRAIN book at least twice that long (the others are
    left out), evenly spaced from 10% to 90% of it."""
    out = []
    for name in TRAIN_BOOKS:
        ids = tokenizer.encode(book_text(data_dir, name), add_special_tokens=False)
        if len(ids) < length * 2:
            continue
        for index in range(per_book):
            start = int(len(ids) * (0.1 + 0.8 * index / max(per_book, 1)))
            start = min(start, len(ids) - length)
            out.append((name, start, ids[start : start + length]))
    return out


def window_quotas(
    model, method: KVzip, contexts: list[list[int]], budget: int, chunk_size: int
) -> torch.Tensor:
    """Each context's per-head quotas ``[windows, layers, KV heads]`` under KVzip's global ranking."""
    first, later = method.prompts(model)
    quotas = []
    for ids in tqdm(contexts, desc="windows"):
        cache = prefill_plain(model, torch.tensor([ids]), chunk_size)
        chunks = repeat_chunks(ids, first, later, method.chunk)
        quotas.append(global_quotas(reconstruction_scores(model, cache, chunks, method.normalise), budget))
    return torch.stack(quotas)


def agreement(quotas: torch.Tensor) -> list[float]:
    """Pearson r of each window's quotas ``[windows, layers, KV heads]`` against the other windows' mean."""
    out = []
    for index in range(quotas.shape[0]):
        others = torch.cat([quotas[:index], quotas[index + 1 :]]).mean(0)
        out.append(float(torch.corrcoef(torch.stack([quotas[index].flatten(), others.flatten()]))[0, 1]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="HuggingFaceTB/SmolLM2-135M-Instruct")
    parser.add_argument("--length", type=int, default=4096)
    parser.add_argument("--budget", type=int, default=1024)
    parser.add_argument("--passages", type=int, default=2, help="windows per TRAIN book")
    parser.add_argument("--chunk-size", type=int, default=512, help="prefill chunk")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    path = resolve_model(args.model)
    tokenizer = load_tokenizer(path)
    model = locret.from_pretrained(path, dtype=getattr(torch, args.dtype)).eval()
    method = KVzip(tokenizer=tokenizer)
    started = time.time()
    chosen = windows(tokenizer, args.data_dir, args.length, args.passages)
    with torch.no_grad():
        quotas = window_quotas(model, method, [ids for _, _, ids in chosen], args.budget, args.chunk_size)
    agree = agreement(quotas)
    mean = quotas.mean(0)
    report = {
        "model": args.model,
        "length": args.length,
        "budget": args.budget,
        "dtype": args.dtype,
        "scores": f"kvzip reconstruction, normalise={method.normalise}, chunk={method.chunk}",
        "windows": [{"book": name, "start_token": start} for name, start, _ in chosen],
        "seconds": round(time.time() - started, 1),
        "quota": [[round(float(q), 4) for q in layer] for layer in mean],
        "quota_per_window": [[[round(float(q), 4) for q in layer] for layer in window] for window in quotas],
        "agreement_r": [round(r, 4) for r in agree],
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(
        f"{len(chosen)} windows in {report['seconds']} s; each window's quotas against the others' mean: r = "
        + ", ".join(f"{r:.3f}" for r in agree)
    )
    print("mean quota per layer (x budget):", " ".join(f"{float(q):.2f}" for q in mean.mean(-1)))


if __name__ == "__main__":
    main()
