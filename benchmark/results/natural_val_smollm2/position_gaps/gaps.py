"""Does a position gap where the kept cache skips text help the model read it? (`niah_text` validation)

    PYTHONPATH=. python benchmark/results/natural_val_smollm2/position_gaps/gaps.py --length 16384 --gaps 0 64

Repacked positions give the kept entries contiguous positions, so two lines that were 10K tokens apart sit
side by side. Here every entry's repacked position is moved on by ``gap`` for each skip before it (an entry
whose original position is not its predecessor's plus one), in every forward (prefill chunks, the question,
the eager decode steps), so the model sees where text is missing; ``gap`` 0 is the shipped rule, run in the
same process on the same prompts. The shipped heads' recommended scorer (`LineScorer()`), budget 1024, chunk
512, 256 stabilizers, the question as the un-evicted tail, greedy, scored as `benchmark.run` scores
`niah_text`. An experiment by monkeypatching, not a library mode.
"""

from __future__ import annotations

import argparse
import time

import torch

import locret
from benchmark.results.natural_val_smollm2.window_line.needle_kept import DEPTHS, MODEL, validation_needles
from benchmark.run import encode_sample
from benchmark.tasks import score
from locret.acquire import load_tokenizer
from locret.models.base import LocretAttentionMixin
from locret.rope import apply_rope

SHIPPED_ROTATE = LocretAttentionMixin._rotate_with_cache


def gapped_rotation(gap: int):
    """``_rotate_with_cache`` with repacked positions moved on by ``gap`` at every skip (batch 1, uniform
    allocation: every KV head holds the same entries)."""

    def rotate(self, query: torch.Tensor, key: torch.Tensor, cache):
        layer = cache.layers[self.layer_idx]
        original = layer.positions[0, 0]
        if original.shape[0] != key.shape[-2]:
            raise RuntimeError(f"{original.shape[0]} positions for {key.shape[-2]} keys")
        skips = torch.cat([original.new_zeros(1), (original[1:] - original[:-1] > 1).long()]).cumsum(0)
        slots = torch.arange(original.shape[0], device=original.device) + gap * skips
        cos, sin = self.locret_rope.table(int(slots[-1]) + 1, query.dtype, query.device)
        new = query.shape[-2]
        return apply_rope(query, cos[slots[-new:]], sin[slots[-new:]]), apply_rope(
            key, cos[slots], sin[slots]
        )

    return rotate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--length", type=int, required=True)
    parser.add_argument("--gaps", type=int, nargs="+", default=[0, 64])
    args = parser.parse_args()
    torch.set_num_threads(1)
    tokenizer = load_tokenizer(MODEL)
    model = locret.from_pretrained(MODEL, dtype=torch.bfloat16).eval()
    found = {gap: 0 for gap in args.gaps}
    print(f"| depth | prompt | {' | '.join(f'gap {gap}' for gap in args.gaps)} |")
    print(f"|---|---|{'---|' * len(args.gaps)}")
    started = time.perf_counter()
    for depth in DEPTHS:
        for sample in validation_needles(tokenizer, args.length, depth):
            prompt = encode_sample(tokenizer, sample, False)
            config = locret.LocretConfig(
                budget=1024, chunk_size=512, n_stabilizers=256, n_local=prompt.n_question
            )
            replies = []
            for gap in args.gaps:
                LocretAttentionMixin._rotate_with_cache = gapped_rotation(gap) if gap else SHIPPED_ROTATE
                cache = locret.new_cache(model, config, track_positions=True)  # the recommended LineScorer
                out = locret.generate(
                    model,
                    torch.tensor([prompt.ids]),
                    config,
                    sample.max_new_tokens,
                    cache=cache,
                    static_decode=False,
                    eos_token_id=model.generation_config.eos_token_id,
                )
                reply = tokenizer.decode(out.new_tokens[0].tolist(), skip_special_tokens=True)
                value = score("niah_text", reply, sample)
                found[gap] += value
                replies.append(f"{value:g} {reply.strip()[:24]!r}")
            print(f"| {depth:g} | {sample.id} | {' | '.join(replies)} |", flush=True)
    LocretAttentionMixin._rotate_with_cache = SHIPPED_ROTATE
    n = len(DEPTHS) * 5
    print()
    print(", ".join(f"gap {gap}: {found[gap]:g}/{n}" for gap in args.gaps))
    print(f"{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
