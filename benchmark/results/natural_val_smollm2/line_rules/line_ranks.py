"""Screen line-scoring rules by whether each would hold the prose needle, from one recorded prefill per prompt.

    PYTHONPATH=. python benchmark/results/natural_val_smollm2/line_rules/line_ranks.py --length 16384 \
        --save runs/line_rules/values_16k.pt [--task niah_text_paragraphs --max-line 32 --top-tokens 8]

For each `niah_text` (``--task``) validation prompt (depths 0/25/50/75/100%, 5 each, completion style, the
question as the un-evicted tail): Locret's chunked prefill with the `lines` scorer at surprisal weight 1 and
line means (``top_tokens=None`` and ``max_line=256``, its defaults when this ran, unless ``--top-tokens`` and
``--max-line`` say otherwise; budget 1024, chunk 512, 256 stabilizers), recording each
token's two standardized parts as the scorer used them (z of the heads' average, z of the surprisal, each by
the input so far). Then, for each rule, the cache that
rule's fixed line scores would end with: the 4 sinks, the newest 256 entries and the line they start in,
and the best-scoring older lines while they fit the budget (scores never change once a line closes, so online
top-k eviction ends with the global top-k). Printed: per rule, the prompts whose needle that cache holds whole.
``--replay-stabilizers N`` replays the same recordings with the newest N tokens protected (``../window_share/``).

Why: a real run costs minutes per rule and length; this screens many rules from one prefill. It is an
approximation for every rule but the recorded one (the heads' scores depend on what the cache held), so the
recorded run's own count (what its real cache held) is printed above the table, and a chosen rule is then
run for real.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

import torch

import locret
from benchmark.passages import passage_index
from benchmark.results.natural_val_smollm2.window_line.needle_kept import validation_needles
from benchmark.run import encode_sample
from locret.acquire import load_tokenizer
from locret.generation import new_cache
from locret.scorers import LineScorer
from locret.scorers.lines import line_end_tokens
from locret.scorers.surprisal import sentence_end_tokens

MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
DEPTHS = (0.0, 0.25, 0.5, 0.75, 1.0)
BUDGET, CHUNK, STABILIZERS, SINKS = 1024, 512, 256, 4


@dataclass
class RecordingLineScorer(LineScorer):
    """`LineScorer` (built at weight 1, line means) that also keeps each chunk's standardized heads and
    surprisal parts."""

    parts: list = field(default_factory=list, repr=False, compare=False)

    def standardized_parts(self, model, state, heads, input_ids, start, end, hidden_states):
        z_heads, z_surprisal = super().standardized_parts(
            model, state, heads, input_ids, start, end, hidden_states
        )
        self.parts.append((z_heads[0].clone(), z_surprisal[0].clone()))
        return z_heads, z_surprisal


def segments(ids: torch.Tensor, breaks: torch.Tensor, limit: int) -> list[tuple[int, int]]:
    """``[start, end)`` spans of ``ids``' lines (``passage_index``: a line ends after a break id of ``breaks``
    or after ``limit`` tokens)."""
    sizes = torch.unique_consecutive(passage_index(ids, breaks, limit), return_counts=True)[1]
    ends = sizes.cumsum(0).tolist()
    return list(zip([0, *ends[:-1]], ends, strict=True))


def kept_mask(
    spans: list[tuple[int, int]], line_scores: list[float], length: int, stabilizers: int = STABILIZERS
) -> torch.Tensor:
    """The final cache under fixed line scores: sinks, the newest ``stabilizers`` tokens and their first line,
    then whole older lines best first while they fit the budget."""
    keep = torch.zeros(length, dtype=torch.bool)
    keep[:SINKS] = True
    window = length - stabilizers
    keep[window:] = True
    room = BUDGET - SINKS - stabilizers
    candidates = []
    for (start, end), score in zip(spans, line_scores, strict=True):
        if end <= SINKS:
            continue
        start = max(start, SINKS)
        if start < window < end:  # the line the window starts in: kept whole
            keep[start:window] = True
            room -= window - start
        elif end <= window:
            candidates.append((score, start, end))
    for _, start, end in sorted(candidates, key=lambda item: -item[0]):
        if end - start > room:
            continue  # top-k cuts it at the boundary: not whole; a shorter line may still fit
        keep[start:end] = True
        room -= end - start
    return keep


def needle_rank(
    spans: list[tuple[int, int]],
    line_scores: list[float],
    needle: tuple[int, int],
    length: int,
    stabilizers: int = STABILIZERS,
) -> int:
    """Tokens in older lines (outside sinks and window) scoring above the needle's lowest-scoring line: the
    room the needle would need beyond its own tokens (0 where it lies in the window)."""
    window = length - stabilizers
    start, end = needle
    needle_scores = [
        s for (a, b), s in zip(spans, line_scores, strict=True) if a < end and b > start and a < window
    ]
    if not needle_scores:
        return 0
    worst = min(needle_scores)
    return sum(
        min(b, window) - max(a, SINKS)
        for (a, b), s in zip(spans, line_scores, strict=True)
        if s > worst and b <= window and b > SINKS
    )


def line_score_rules() -> dict:
    """Rule name -> function(z_heads, z_surprisal) of one line's tokens -> the line's score."""

    def mean_rule(weight: float):
        return lambda zh, zs: float((zh + weight * zs).mean())

    def prior_rule(weight: float, prior: float):
        return lambda zh, zs: float((zh + weight * zs).sum() / (len(zh) + prior))

    def top_rule(weight: float, k: int):
        return lambda zh, zs: float((zh + weight * zs).topk(min(k, len(zh))).values.mean())

    rules = {f"mean, w={w:g}": mean_rule(w) for w in (0, 0.5, 1, 1.5, 2, 3)}
    rules["mean, surprisal only"] = lambda zh, zs: float(zs.mean())
    rules.update({f"sum/(n+{k:g}), w=1": prior_rule(1, k) for k in (2, 5, 10)})
    rules.update({f"sum/(n+{k:g}), w=2": prior_rule(2, k) for k in (2, 5)})
    rules["sum/sqrt(n), w=1"] = lambda zh, zs: float((zh + zs).sum() / len(zh) ** 0.5)
    rules.update({f"top-{k} mean, w=1": top_rule(1, k) for k in (3, 5, 8, 12)})
    rules.update({f"top-5 mean, w={w:g}": top_rule(w, 5) for w in (0, 0.5, 2)})
    rules.update({f"top-8 mean, w={w:g}": top_rule(w, 8) for w in (0, 0.5, 2)})
    rules["top-5 mean, surprisal only"] = lambda zh, zs: float(zs.topk(min(5, len(zs))).values.mean())
    rules["max, w=1"] = top_rule(1, 1)
    return rules


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--length", type=int, required=True)
    parser.add_argument("--task", default="niah_text", help="niah_text or niah_text_paragraphs")
    parser.add_argument("--max-line", type=int, default=256, help="the recording's and the replays' max_line")
    parser.add_argument(
        "--top-tokens", type=int, default=None, help="the recording's top_tokens (default: none, line means)"
    )
    parser.add_argument("--save", type=Path, help="write the recorded parts here (torch.save of tensors)")
    parser.add_argument("--load", type=Path, help="read recorded parts instead of prefilling")
    parser.add_argument(
        "--replay-stabilizers",
        type=int,
        default=STABILIZERS,
        help="newest tokens the replayed caches protect (the recording always protects 256)",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    tokenizer = load_tokenizer(MODEL)
    line_breaks = line_end_tokens(tokenizer, 0)
    sentence_breaks = sentence_end_tokens(tokenizer, 0)
    records = torch.load(args.load, weights_only=True) if args.load else []
    if not args.load:
        model = locret.from_pretrained(MODEL, dtype=torch.bfloat16)
        for depth in DEPTHS:
            for sample in validation_needles(tokenizer, args.length, depth, args.task):
                prompt = encode_sample(tokenizer, sample, False)
                config = locret.LocretConfig(
                    budget=BUDGET, chunk_size=CHUNK, n_stabilizers=STABILIZERS, n_local=prompt.n_question
                )
                scorer = RecordingLineScorer(
                    tokenizer=tokenizer, max_line=args.max_line, top_tokens=args.top_tokens
                )
                cache = new_cache(model, config, scorer=scorer, track_positions=True)
                ids = torch.tensor([prompt.ids])
                with torch.no_grad():
                    locret.prefill_prompt(model, ids, config, cache=cache)
                length = sum(len(zh) for zh, _ in scorer.parts)
                held = torch.zeros(length, dtype=torch.bool)
                held[cache.layers[0].positions[0, 0]] = True
                records.append(
                    {
                        "depth": torch.tensor(depth),
                        "ids": ids[0, :length],
                        "z_heads": torch.cat([zh for zh, _ in scorer.parts]),
                        "z_surprisal": torch.cat([zs for _, zs in scorer.parts]),
                        "needle": torch.tensor(sample.meta["needle_token_spans"][0]),
                        "held": held,
                    }
                )
                print(f"recorded depth {depth:g} {sample.id}", flush=True)
        if args.save:
            args.save.parent.mkdir(parents=True, exist_ok=True)
            torch.save(records, args.save)
    rules = line_score_rules()
    real = sum(bool(r["held"][r["needle"][0] : r["needle"][1]].all()) for r in records)
    print(
        f"\n{args.length} tokens, {len(records)} prompts; the recorded run (w=1) held the needle whole in {real}"
        f"; replayed caches protect the newest {args.replay_stabilizers} tokens"
    )
    print(
        "| rule | lines: needle held whole | per depth 0/25/50/75/100% | median tokens ranked above the needle "
        "| sentences in lines: held whole |"
    )
    print("|---|---|---|---|---|")
    for name, rule in rules.items():
        row = {}
        for kind, breaks in (("lines", line_breaks), ("sentences", line_breaks | sentence_breaks)):
            held, ranks = [], []
            for record in records:
                ids, zh, zs = record["ids"], record["z_heads"], record["z_surprisal"]
                spans = segments(ids, breaks, args.max_line)
                scores = [rule(zh[a:b], zs[a:b]) for a, b in spans]
                keep = kept_mask(spans, scores, len(ids), args.replay_stabilizers)
                start, end = record["needle"].tolist()
                held.append((float(record["depth"]), bool(keep[start:end].all())))
                ranks.append(needle_rank(spans, scores, (start, end), len(ids), args.replay_stabilizers))
            row[kind] = held
            row[kind + " rank"] = int(torch.tensor(ranks).median())
        per_depth = "/".join(str(sum(h for d, h in row["lines"] if d == depth)) for depth in DEPTHS)
        total = sum(h for _, h in row["lines"])
        sentences = sum(h for _, h in row["sentences"])
        print(f"| {name} | {total} | {per_depth} | {row['lines rank']} | {sentences} |")


if __name__ == "__main__":
    main()
