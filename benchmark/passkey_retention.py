"""Why a passkey is lost: how the true CIS labels and the heads rank the instruction and the needle.

    python -m benchmark.passkey_retention --model HuggingFaceTB/SmolLM2-135M-Instruct --length 2048

For one generated passkey prompt (completion style), prints per layer the mean percentile (0 = lowest,
1 = highest, averaged over tokens and KV heads) of the task instruction's tokens, the needle's tokens and the
first token, under (a) the CIS labels computed with the true answer and (b) the retaining heads' scores.
A budget of ``b`` out of ``n`` entries keeps roughly what ranks above percentile ``1 - b/n``.

Then it answers the prompt twice with ``--budget``: once evicting by the heads, once by the true labels
themselves (an oracle no method can have: it saw the answer), and prints how many of the key's digit
tokens each layer and KV head still holds. If the oracle fails too, better-fitted heads cannot help; the
labels (training data, label definition) have to change.
"""

from __future__ import annotations

import argparse
import random
from dataclasses import dataclass

import torch

import locret
from benchmark.infinite_bench.generators import generate_passkey
from benchmark.text import make_counter
from locret.acquire import load_tokenizer
from locret.config import default_stabilizers
from locret.generation import new_cache
from locret.models.base import collecting_scores
from locret.scorers import EntryScorer
from locret.train.labels import compute_cis_labels


def percentile(scores: torch.Tensor, positions: list[int]) -> list[float]:
    """Mean rank percentile of ``positions`` in ``scores [L, H, n]``, per layer."""
    ranks = scores.argsort(-1).argsort(-1).float() / (scores.shape[-1] - 1)
    return ranks[..., positions].mean(dim=(-1, -2)).tolist()


def digit_positions(tokenizer, ids: list[int], positions: range) -> list[int]:
    """The ``positions`` whose token in ``ids`` is a digit (this tokenizer spells one digit per token)."""
    return [p for p in positions if tokenizer.decode([ids[p]]).strip().isdigit()]


def needle_token_span(tokenizer, sample) -> range:
    """Token positions of the needle sentence in the prompt, without a margin for merges at its edges.

    It starts at the generator's ``needle_token_offset`` and ends where the text up to the needle's last
    character, counted the way the generator counts, ends.
    """
    end_char = sample.meta["needle_char_offset"] + len(sample.meta["needle"])
    end = make_counter(tokenizer)(sample.prefix + sample.context[:end_char])
    return range(sample.meta["needle_token_offset"], end)


def passkey_parser(description: str, length: int) -> argparse.ArgumentParser:
    """The options the passkey diagnostics share: the model and heads, the prompt, budget and chunk."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="HuggingFaceTB/SmolLM2-135M-Instruct")
    parser.add_argument("--heads", default=None, help="adapter dir (default: the shipped heads)")
    parser.add_argument("--length", type=int, default=length)
    parser.add_argument("--depth", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--budget", type=int, default=1024)
    parser.add_argument("--chunk-size", type=int, default=512)
    return parser


def surviving(positions: torch.Tensor, wanted: list[int]) -> str:
    """How many of ``wanted`` positions each KV head of a layer still holds, as ``a/b/c``."""
    hits = torch.isin(positions[0], torch.tensor(wanted, device=positions.device)).sum(-1)
    return "/".join(str(int(n)) for n in hits)


@dataclass
class KnownScores(EntryScorer):
    """Scores given in advance, per layer ``[L, Hkv, n]`` (positions past ``n``, the question, score 0)."""

    scores: torch.Tensor

    def score_new(self, attention, head_input, query, key, positions) -> torch.Tensor:
        table = torch.nn.functional.pad(self.scores[attention.layer_idx], (0, int(positions[-1]) + 1))
        return table[:, positions].unsqueeze(0)


def main() -> None:
    args = passkey_parser(__doc__, length=2048).parse_args()

    tokenizer = load_tokenizer(args.model)
    model = locret.from_pretrained(args.model, heads=args.heads, dtype=torch.float32).eval()
    sample = generate_passkey(
        tokenizer, args.length, args.depth, random.Random(args.seed), style="completion"
    )

    def encode(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False).input_ids

    context = encode(sample.prefix + sample.context)
    question, answer = encode(sample.question), encode(" " + sample.answers[0] + ".")
    n_instruction = len(encode(sample.prefix))
    needle_span = needle_token_span(tokenizer, sample)
    needle = list(needle_span)

    ids = torch.tensor(context + question + answer)
    labels = compute_cis_labels(model, ids, len(context) + len(question))[..., : len(context)]
    with torch.no_grad(), collecting_scores(model) as sinks:
        model.model(input_ids=torch.tensor([context]))
    predicted = torch.stack([layer[0][0] for layer in sinks]).transpose(1, 2)

    print(
        f"prompt {len(context)} tokens; instruction 0..{n_instruction - 1}; needle {needle[0]}..{needle[-1]}"
    )
    rows = {
        "instruction": list(range(1, n_instruction)),
        "needle": needle,
        "first token": [0],
    }
    print("layer | " + " | ".join(f"{name} label / heads" for name in rows))
    table = {name: (percentile(labels, pos), percentile(predicted, pos)) for name, pos in rows.items()}
    for layer in range(labels.shape[0]):
        cells = [f"{table[name][0][layer]:.2f} / {table[name][1][layer]:.2f}" for name in rows]
        print(f"{layer:5d} | " + " | ".join(cells))

    config = locret.LocretConfig(
        budget=args.budget,
        chunk_size=args.chunk_size,
        n_stabilizers=default_stabilizers(args.budget),
        n_local=len(question),
    )
    prompt = torch.tensor([context + question])
    digits = digit_positions(tokenizer, context, needle_span)
    for name, scorer in (("heads", None), ("true labels (oracle)", KnownScores(labels))):
        cache = new_cache(model, config, scorer=scorer, track_positions=True)
        out = locret.generate(model, prompt, cache=cache, max_new_tokens=8)
        answer = tokenizer.decode(out.new_tokens[0], skip_special_tokens=True)
        print(f"evicting by {name}, budget {args.budget}: {answer!r} (expected {sample.answers[0]})")
        print(f"  key digit tokens kept after the prefill (of {len(digits)}), per layer, per KV head:")
        print(
            "  "
            + " ".join(f"{i}:{surviving(layer.positions, digits)}" for i, layer in enumerate(cache.layers))
        )


if __name__ == "__main__":
    main()
