"""A left-padded batch against its rows run one at a time, in one process: decode and total throughput.

    OMP_NUM_THREADS=1 python -m benchmark.batch_throughput --lengths 1024 1365 1706 2048 --new-tokens 64

Random token prompts (throughput does not depend on the text); ``eos_token_id=[]`` so every run generates
``--new-tokens``. The batch prefills every row alone (as its batch-1 run does) and decodes the rows together,
so its gain is in decoding; the script also says whether every row's tokens equal its batch-1 run's.
"""

from __future__ import annotations

import argparse

import torch

import locret
from locret import LocretConfig


def left_padded(rows: list[torch.Tensor], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(row.shape[1] for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for index, row in enumerate(rows):
        ids[index, width - row.shape[1] :], mask[index, width - row.shape[1] :] = row[0], 1
    return ids, mask


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="HuggingFaceTB/SmolLM2-135M-Instruct")
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 1365, 1706, 2048])
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--budget", type=int, default=512)
    parser.add_argument("--chunk-size", type=int, default=256)
    args = parser.parse_args()

    model = locret.from_pretrained(args.model, dtype=torch.float32).eval()
    model.locret_scorer_choice = None  # the heads' own scores, as recorded (lines would need 256 stabilizers)
    config = LocretConfig(budget=args.budget, chunk_size=args.chunk_size, n_stabilizers=64, n_local=64)
    generator = torch.Generator().manual_seed(0)
    vocab = model.config.vocab_size
    rows = [torch.randint(100, vocab, (1, length), generator=generator) for length in args.lengths]
    run = dict(config=config, max_new_tokens=args.new_tokens, eos_token_id=[])
    locret.generate(model, rows[0][:, :300], **run)  # warm-up

    alone = [locret.generate(model, row, **run) for row in rows]
    ids, mask = left_padded(rows, pad_id=0)
    batch = locret.generate(model, ids, attention_mask=mask, **run)

    generated = len(rows) * args.new_tokens
    prompt_tokens = sum(args.lengths)
    alone_decode = sum(out.decode_seconds for out in alone)
    alone_total = sum(out.prefill_seconds + out.decode_seconds for out in alone)
    batch_total = batch.prefill_seconds + batch.decode_seconds
    same = all(torch.equal(batch.new_tokens[i], out.new_tokens[0]) for i, out in enumerate(alone))
    print(
        f"prompts {args.lengths}, {args.new_tokens} new tokens each, budget {args.budget}, chunk {args.chunk_size}"
    )
    print(
        f"batch-1 x{len(rows)}: decode {generated / alone_decode:.1f} tok/s, total {alone_total:.2f} s "
        f"({(prompt_tokens + generated) / alone_total:.0f} tok/s)"
    )
    print(
        f"batch-{len(rows)}:    decode {generated / batch.decode_seconds:.1f} tok/s, total {batch_total:.2f} s "
        f"({(prompt_tokens + generated) / batch_total:.0f} tok/s)"
    )
    decode_ratio, total_ratio = alone_decode / batch.decode_seconds, alone_total / batch_total
    print(f"ratio batch/alone: decode {decode_ratio:.2f}x, total {total_ratio:.2f}x")
    print(f"every row's tokens equal its batch-1 run: {same}")


if __name__ == "__main__":
    main()
