"""When a pass key is lost during a long prefill: per chunk, how many of its digit tokens each layer keeps.

    python -m benchmark.needle_trace --length 32768 --depth 0.5 --index 0

Builds the ``index``-th passkey prompt of ``benchmark.run --task passkey --length L --depth D --seed S``
(completion style, the question as the protected local tail), prefills it with Locret exactly as the
``locret_pooled`` method does (``--pooling 1`` for the paper's rule), and prints after the needle's chunk and
after every later chunk where something changed how many of the key's digit tokens each layer still holds
(summed over its KV heads), then per KV head at the end, and the answer. ``--track needle`` follows every
token of the needle sentence instead, and ends with how many (layer, KV head) pairs kept each token;
``--track instruction`` follows the task instruction before the haystack (which a retention policy must keep
too, ``docs/design.md``, section 8).

Two counterfactuals ask whether retention explains a miss: ``--protect needle instruction`` keeps those spans
in every layer and KV head (score +inf; the heads still choose the rest of the budget), and
``--scores-from J`` replays the heads' scores of the ``J``-th key's prompt (the same haystack and length), so
this key sees exactly the cache entries that key's prompt kept.
``benchmark.passkey_retention`` compares the heads with the true labels but needs a full-attention pass;
this needs none, so it runs at any length.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import torch

import locret
from benchmark.infinite_bench.generators import generate
from benchmark.passkey_retention import digit_positions, needle_token_span, passkey_parser, surviving
from benchmark.run import encode_sample
from benchmark.text import make_counter
from locret.acquire import load_tokenizer
from locret.cache import LocretCache
from locret.config import default_stabilizers
from locret.generation import new_cache
from locret.scorers.retaining_head import RetainingHeadScorer


class NeedleTracingCache(LocretCache):
    """A Locret cache that records, after each prefill chunk, how many ``tracked`` positions every layer holds."""

    def __init__(
        self,
        config: locret.LocretConfig,
        num_layers: int,
        tracked: list[int],
        scorer: RetainingHeadScorer | None = None,
    ) -> None:
        super().__init__(config, num_layers, scorer=scorer, track_positions=True)
        self.tracked = torch.tensor(tracked)
        self.history: list[tuple[int, list[int]]] = []  # (tokens seen, tracked entries kept per layer)

    def evict(self, layer_idx: int) -> None:
        super().evict(layer_idx)
        if self.prefilling and layer_idx == len(self.layers) - 1:
            kept = [int(torch.isin(layer.positions, self.tracked).sum()) for layer in self.layers]
            self.history.append((self.layers[-1].seen, kept))


class CounterfactualScorer(RetainingHeadScorer):
    """The heads' scores, replaced by ``replay`` (one ``[B, Hkv, T]`` tensor per call, in call order) when
    given, with ``protected`` positions raised to +inf (in ``protected_layers`` only, when given); every score
    it returns is appended to ``record``.
    Once ``replay`` runs out (the donor prompt was shorter in decoding), the heads' own scores are used."""

    def __init__(
        self,
        replay: list[torch.Tensor] | None = None,
        protected: Sequence[int] = (),
        protected_layers: range | None = None,
    ) -> None:
        super().__init__()
        self.protected_layers = protected_layers
        self.replay = iter(replay) if replay is not None else None
        self.protected = torch.tensor(list(protected), dtype=torch.long)
        self.record: list[torch.Tensor] = []

    def score_new(self, attention, head_input, query, key, positions) -> torch.Tensor:
        scores = super().score_new(attention, head_input, query, key, positions)
        replayed = next(self.replay, None) if self.replay is not None else None
        if replayed is not None:
            if replayed.shape != scores.shape:
                raise ValueError("--scores-from needs a prompt of the same length, chunked the same way")
            scores = replayed.to(scores.device, scores.dtype)
        in_layers = self.protected_layers is None or attention.layer_idx in self.protected_layers
        if len(self.protected) and in_layers:
            scores = scores.masked_fill(
                torch.isin(positions, self.protected.to(positions.device)), float("inf")
            )
        self.record.append(scores)
        return scores


def layer_range(text: str) -> range:
    """``--protect-layers FIRST-LAST`` (inclusive) as a range."""
    try:
        first, last = (int(n) for n in text.split("-"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected FIRST-LAST, e.g. 0-9, got {text!r}") from None
    if not 0 <= first <= last:
        raise argparse.ArgumentTypeError(f"need 0 <= FIRST <= LAST, got {text!r}")
    return range(first, last + 1)


def main() -> None:
    parser = passkey_parser(__doc__, length=32768)
    parser.add_argument("--index", type=int, default=0, help="which key of the seed's sequence (0-based)")
    parser.add_argument("--pooling", type=int, default=7, help="score_pooling (1: the paper's rule)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--track",
        choices=["digits", "needle", "instruction"],
        default="digits",
        help="follow the key's digit tokens, every token of the needle sentence, or the task instruction",
    )
    parser.add_argument(
        "--protect",
        nargs="*",
        choices=["needle", "instruction"],
        default=[],
        help="keep these spans in every layer and KV head (a counterfactual: what if the heads kept them)",
    )
    parser.add_argument(
        "--protect-layers",
        type=layer_range,
        default=None,
        help="FIRST-LAST: protect only in these layers (0-based, inclusive; default every layer)",
    )
    parser.add_argument(
        "--scores-from",
        type=int,
        default=None,
        help="replay the heads' scores of this key's prompt (0-based)",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    tokenizer = load_tokenizer(args.model)
    model = locret.from_pretrained(args.model, heads=args.heads, dtype=torch.float32).eval()
    samples = generate(
        "passkey",
        tokenizer,
        args.length,
        max(args.index, args.scores_from or 0) + 1,
        args.seed,
        depth=args.depth,
        style="completion",
    )
    sample = samples[args.index]
    prompt = encode_sample(tokenizer, sample, chat_template=False)
    needle = needle_token_span(tokenizer, sample)
    spans = {
        "needle": list(needle),
        "instruction": list(range(make_counter(tokenizer)(sample.prefix))),
    }
    if args.track == "digits":
        tracked = digit_positions(tokenizer, prompt.ids, needle)
    else:
        tracked = spans[args.track]
    config = locret.LocretConfig(
        budget=args.budget,
        chunk_size=args.chunk_size,
        n_stabilizers=default_stabilizers(args.budget),
        n_local=prompt.n_question,
        score_pooling=args.pooling,
    )
    replay = None
    if args.scores_from is not None:
        donor = CounterfactualScorer()
        donor_ids = encode_sample(tokenizer, samples[args.scores_from], chat_template=False).ids
        locret.generate(
            model, torch.tensor([donor_ids]), cache=new_cache(model, config, donor), max_new_tokens=1
        )
        replay = donor.record
    protected = [p for name in args.protect for p in spans[name]]
    scorer = CounterfactualScorer(replay, protected, args.protect_layers)
    cache = NeedleTracingCache(config, model.config.num_hidden_layers, tracked, scorer)
    out = locret.generate(model, torch.tensor([prompt.ids]), cache=cache, max_new_tokens=8)
    answer = tokenizer.decode(out.new_tokens[0], skip_special_tokens=True)

    total = len(tracked) * cache.layers[0].keys.shape[1]
    print(
        f"{len(prompt.ids)} tokens, key {sample.answers[0]}, tracked tokens at {tracked} "
        f"(chunk {tracked[0] // args.chunk_size}, offset {tracked[0] % args.chunk_size}); "
        f"per layer at most {total} (tokens x KV heads)"
    )
    previous = None
    for seen, kept in cache.history:
        if seen <= tracked[0] or kept == previous:
            continue
        print(
            f"after {seen:7d} tokens: sum {sum(kept):4d} | "
            + " ".join(f"{i}:{n}" for i, n in enumerate(kept))
        )
        previous = kept
    per_head = (f"{i}:{surviving(layer.positions, tracked)}" for i, layer in enumerate(cache.layers))
    print("at the end, per layer and KV head: " + " ".join(per_head))
    slots = sum(layer.positions.shape[1] for layer in cache.layers)  # layers x KV heads
    per_token = (
        f"{tokenizer.decode([prompt.ids[p]])!r}:{sum(int((layer.positions == p).sum()) for layer in cache.layers)}"
        for p in tracked
    )
    print(f"at the end, per token, of {slots} (layer, KV head) pairs: " + " ".join(per_token))
    print(
        f"answer {answer!r}, expected {sample.answers[0]}: {'CORRECT' if sample.answers[0] in answer else 'WRONG'}"
    )


if __name__ == "__main__":
    main()
