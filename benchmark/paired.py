"""Compare methods prompt by prompt: which prompts each one answers, and whether a difference is more than chance.

    python -m benchmark.paired base=runs/a/<task>/<method>/<case> other=runs/b/<task>/<method>/<case> ...

Two methods run on the same prompts differ only on the prompts one answers and the other does not; the
prompts both answer or both miss say nothing about which is better. So beside each method's total this
prints, against the first case (the reference), how many prompts only the reference answers, how many only
the other method answers, and the exact two-sided McNemar p-value (a binomial test on those discordant
prompts): with ten answers in 300 prompts, a lead of three is usually noise. A prompt counts as answered
when its score is at least ``--threshold``. Cases must hold the same prompt ids, or, with ``--shared-prompts``
(a stopped run beside a finished one), the comparison keeps the prompts every case ran.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path

from benchmark.run import read_predictions


@dataclass(frozen=True)
class PairedRow:
    """One case against the reference, over the prompts both ran."""

    label: str
    answered: int
    n: int
    only_reference: int
    only_this: int
    p_value: float


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value: the chance of a split of the discordant prompts at least this
    uneven if each were equally likely to go either way."""
    total = only_a + only_b
    if total == 0:
        return 1.0
    tail = sum(math.comb(total, k) for k in range(min(only_a, only_b) + 1)) / 2**total
    return min(1.0, 2 * tail)


def answered_ids(case_folder: Path, threshold: float) -> tuple[set[str], set[str]]:
    """The ids a case ran and the ids it answered, from its ``predictions.jsonl``."""
    records = read_predictions(case_folder / "predictions.jsonl")
    if not records:
        raise FileNotFoundError(f"{case_folder}: no predictions.jsonl with finished samples")
    finished = [r for r in records if r.get("status", "ok") == "ok"]
    return {r["id"] for r in finished}, {r["id"] for r in finished if r["score"] >= threshold}


def compare(
    cases: list[tuple[str, Path]], threshold: float = 1.0, shared_prompts: bool = False
) -> list[PairedRow]:
    """Each case against the first, on the prompts they all ran: an error if their prompt ids differ, unless
    ``shared_prompts``, which keeps the ids every case ran (an error if there are none)."""
    if len(cases) < 2:
        raise ValueError("give at least two cases: a reference and one to compare with it")
    loaded = [(label, *answered_ids(folder, threshold)) for label, folder in cases]
    if shared_prompts:
        shared = set.intersection(*(ran for _, ran, _ in loaded))
        if not shared:
            raise ValueError("the cases share no prompt ids")
        loaded = [(label, shared, hits & shared) for label, _, hits in loaded]
    else:
        for label, ran, _ in loaded[1:]:
            if ran != loaded[0][1]:
                raise ValueError(
                    f"{label} ran other prompts than {loaded[0][0]} ({len(ran ^ loaded[0][1])} ids differ); "
                    "compare cases of the same task, split, length, seed and n, or pass --shared-prompts"
                )
    reference_hits = loaded[0][2]
    rows = []
    for label, ran, hits in loaded:
        only_ref, only_this = len(reference_hits - hits), len(hits - reference_hits)
        rows.append(
            PairedRow(label, len(hits), len(ran), only_ref, only_this, mcnemar_exact(only_ref, only_this))
        )
    return rows


def markdown(rows: list[PairedRow]) -> str:
    reference = rows[0]
    lines = [
        f"| case | answered | only {reference.label} | only this | exact McNemar p |",
        "|---|---|---|---|---|",
        f"| {reference.label} (reference) | {reference.answered}/{reference.n} | | | |",
    ]
    for row in rows[1:]:
        lines.append(
            f"| {row.label} | {row.answered}/{row.n} | {row.only_reference} | {row.only_this} | "
            f"{row.p_value:.3g} |"
        )
    return "\n".join(lines) + "\n"


def _labelled(text: str) -> tuple[str, Path]:
    label, sep, path = text.partition("=")
    return (label, Path(path)) if sep else (Path(text).parent.name, Path(text))


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("cases", nargs="+", type=_labelled, help="case folders, optionally as label=folder")
    parser.add_argument("--threshold", type=float, default=1.0, help="score that counts as answered")
    parser.add_argument(
        "--shared-prompts",
        action="store_true",
        help="compare on the prompts every case ran (e.g. a stopped run) instead of refusing other prompt sets",
    )
    parser.add_argument("--out", type=Path, help="also write the table to this markdown file")
    args = parser.parse_args(argv)
    table = markdown(compare(args.cases, args.threshold, args.shared_prompts))
    print(table, end="")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(table)
    return table


if __name__ == "__main__":
    main()
