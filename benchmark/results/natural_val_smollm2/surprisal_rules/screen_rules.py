"""Screen sentence-scoring rules offline on the token surprisals ``record_surprisal.py`` recorded: for each
rule, how many needles the final cache would hold whole, given the scorer's cache layout (4 sinks, the
newest ``--stabilizers`` context tokens, and the top ``budget - sinks - stabilizers`` scored tokens, ties to
the older). With fixed scores the final kept set is the top-k of everything scored, whatever the chunking,
so this is exact for the recorded surprisals; a rule run end to end changes the cache and so, slightly, the
surprisals themselves. Validation prompts only.

    PYTHONPATH=. python benchmark/results/natural_val_smollm2/surprisal_rules/screen_rules.py \
        runs/surprisal_rules/records_seed0 runs/surprisal_rules/records_seed1
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np

from locret.acquire import load_tokenizer
from locret.scorers.segments import N_SINKS as SINKS
from locret.scorers.surprisal import SurprisalScorer, sentence_end_tokens

MAX_SENTENCE = SurprisalScorer.max_sentence  # the scorer's default cut

Rule = Callable[[np.ndarray, list[tuple[int, int]]], np.ndarray]


def sentences(ends: np.ndarray) -> list[tuple[int, int]]:
    """``[start, end)`` spans as the scorer cuts them: at a sentence-ending token or after ``MAX_SENTENCE``
    tokens."""
    spans, first = [], 0
    for index, closing in enumerate(ends):
        if closing or index - first + 1 >= MAX_SENTENCE:
            spans.append((first, index + 1))
            first = index + 1
    if first < len(ends):
        spans.append((first, len(ends)))
    return spans


def per_sentence(values: np.ndarray, spans, reduce) -> np.ndarray:
    out = np.empty(len(values))
    for start, end in spans:
        out[start:end] = reduce(values[start:end])
    return out


def local_baseline(means: np.ndarray, spans, window: int, spread: bool) -> np.ndarray:
    """Each sentence's mean against the token-weighted mean (and spread) of the ``window`` tokens before it."""
    out = np.empty(len(means))
    for start, end in spans:
        before = means[max(0, start - window) : start]
        if len(before) < 16:
            out[start:end] = 0.0
            continue
        centred = means[start] - before.mean()
        out[start:end] = centred / (before.std() + 0.1) if spread else centred
    return out


def top_mean(k: int):
    return lambda v: np.sort(v)[-k:].mean()


def rules() -> dict[str, Rule]:
    def mean(s, spans):
        return per_sentence(s, spans, np.mean)

    def prior(k):
        def rule(s, spans):
            total = np.cumsum(s)
            out = np.empty(len(s))
            for start, end in spans:
                input_mean = total[end - 1] / end
                out[start:end] = (s[start:end].sum() + k * input_mean) / (end - start + k)
            return out

        return rule

    table: dict[str, Rule] = {
        "mean (shipped)": mean,
        "prior 8": prior(8),
        "prior 24": prior(24),
        "prior 48": prior(48),
        "prior 96": prior(96),
        "sum": lambda s, spans: per_sentence(s, spans, np.sum),
        "max": lambda s, spans: per_sentence(s, spans, np.max),
        "top-3 mean": lambda s, spans: per_sentence(s, spans, top_mean(3)),
        "top-5 mean": lambda s, spans: per_sentence(s, spans, top_mean(5)),
        "mean without first token": lambda s, spans: per_sentence(
            s, spans, lambda v: v[1:].mean() if len(v) > 1 else v.mean()
        ),
        "median": lambda s, spans: per_sentence(s, spans, np.median),
    }

    def shortest(m, inner):
        def rule(s, spans):
            out = inner(s, spans)
            for start, end in spans:
                if end - start < m:
                    out[start:end] = 0.0
            return out

        return rule

    for m in (4, 6, 8):
        table[f"mean, under {m} tokens scored 0"] = shortest(m, mean)
        table[f"prior 24, under {m} tokens scored 0"] = shortest(m, prior(24))
    for window in (256, 1024, 4096):
        table[f"mean - previous {window}"] = lambda s, spans, w=window: local_baseline(
            mean(s, spans), spans, w, False
        )
        table[f"z vs previous {window}"] = lambda s, spans, w=window: local_baseline(
            mean(s, spans), spans, w, True
        )
    return table


def kept(scores: np.ndarray, context: int, budget: int, stabilizers: int) -> np.ndarray:
    """Bool per context token: in the final cache."""
    keep = np.zeros(context, dtype=bool)
    keep[:SINKS] = True
    newest = max(SINKS, context - stabilizers)
    keep[newest:] = True
    room = budget - SINKS - stabilizers
    candidates = np.arange(SINKS, newest)
    if len(candidates) <= room:
        keep[candidates] = True
        return keep
    # top ``room`` by score, ties to the older: sort by (-score, position)
    order = np.lexsort((candidates, -scores[candidates]))
    keep[candidates[order[:room]]] = True
    return keep


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("records", nargs="+", type=Path)
    parser.add_argument("--model", default="HuggingFaceTB/SmolLM2-135M-Instruct")
    parser.add_argument("--budget", type=int, default=1024)
    parser.add_argument("--stabilizers", type=int, default=256)
    parser.add_argument(
        "--whole", type=float, default=1.0, help="share of the needle's tokens that counts as kept"
    )
    args = parser.parse_args()
    tokenizer = load_tokenizer(args.model)
    end_table = sentence_end_tokens(tokenizer, len(tokenizer)).numpy()
    table = rules()
    counts: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    totals: dict[int, int] = defaultdict(int)
    answered_when_kept = defaultdict(int)
    for path in sorted(p for d in args.records for p in d.glob("*.json")):
        entry = json.loads(path.read_text())
        context = entry["context_tokens"]
        ids = np.array(entry["ids"][:context])
        s = np.zeros(context)
        s[1:] = np.array(entry["surprisal"][: context - 1])
        spans = sentences(end_table[ids])
        ((needle_start, needle_end),) = entry["needle_token_spans"]
        length = round(len(entry["ids"]) / 1024)
        totals[length] += 1
        for name, rule in table.items():
            scores = rule(s, spans)
            scores[:SINKS] = np.inf
            holds = (
                kept(scores, context, args.budget, args.stabilizers)[needle_start:needle_end].mean()
                >= args.whole
            )
            counts[name][length] += int(holds)
            if name == "mean (shipped)" and holds:
                answered_when_kept[length] += int(entry["score"] == 1.0)
    lengths = sorted(totals)
    print(
        f"needle kept whole (>= {args.whole:.0%} of its tokens), n per length: "
        + ", ".join(f"{k}K: {totals[k]}" for k in lengths)
    )
    print("| rule | " + " | ".join(f"{k}K" for k in lengths) + " | all |")
    print("|---|" + "---|" * (len(lengths) + 1))
    for name in table:
        row = [counts[name][k] for k in lengths]
        print(f"| {name} | " + " | ".join(map(str, row)) + f" | {sum(row)} |")
    print(
        "shipped rule, answered when kept: "
        + ", ".join(f"{k}K {answered_when_kept[k]}/{counts['mean (shipped)'][k]}" for k in lengths)
    )


if __name__ == "__main__":
    main()
