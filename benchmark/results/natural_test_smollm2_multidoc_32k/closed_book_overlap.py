"""How many of each case's answers the model also gives with no context at all (the closed book).

    PYTHONPATH=. python closed_book_overlap.py --closed-book DIR --first 300 [--plot PNG] label=CASE_DIR ...

``multidoc_qa`` ids carry the prompt length, so cases at 4K and 32K are matched by their NQ question index
(the id's fourth field). Every case is restricted to the split's first ``--first`` questions, which all
cases ran. A reply counts as answered at score 1 (``best_subspan_em``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from benchmark.paired import answered_ids  # noqa: E402


def answered_questions(case_folder: Path) -> tuple[set[int], set[int]]:
    """The question indices a case ran and answered (``multidoc_qa_test_2300_32768_rand_0`` -> 2300)."""
    ran, hits = answered_ids(case_folder, 1.0)
    return tuple({int(sample_id.split("_")[3]) for sample_id in ids} for ids in (ran, hits))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--closed-book", type=Path, required=True, help="the closed_book case folder")
    parser.add_argument("--first", type=int, required=True, help="the number of questions to compare on")
    parser.add_argument("--plot", type=Path, help="a bar chart of the table, written here")
    parser.add_argument("cases", nargs="+", help="label=case folder")
    args = parser.parse_args()

    ran, hits = answered_questions(args.closed_book)
    questions = set(sorted(ran)[: args.first])
    if len(questions) < args.first:
        raise SystemExit(f"the closed book ran {len(ran)} questions, fewer than --first {args.first}")
    closed = hits & questions
    print(f"closed book (no context): {len(closed)}/{len(questions)} answered\n")
    print("| case | answered | also closed-book | beyond closed-book | closed-book answers lost |")
    print("|---|---|---|---|---|")
    rows = []
    for spec in args.cases:
        label, _, folder = spec.partition("=")
        case_ran, case_hits = answered_questions(Path(folder))
        if not questions <= case_ran:
            raise SystemExit(f"{label} ran {len(case_ran & questions)} of the first {args.first} questions")
        answered = case_hits & questions
        print(
            f"| {label} | {len(answered)}/{len(questions)} | {len(answered & closed)} | "
            f"{len(answered - closed)} | {len(closed - answered)} |"
        )
        rows.append((label, len(answered & closed), len(answered - closed)))
    if args.plot:
        plot(rows, len(closed), len(questions), args.plot)


def plot(rows: list[tuple[str, int, int]], closed: int, n: int, path: Path) -> None:
    """Each case's answers split into those the closed book also gives and those it needed the context for."""
    labels = [label for label, _, _ in rows]
    also = [count for _, count, _ in rows]
    beyond = [count for _, _, count in rows]
    fig, ax = plt.subplots(figsize=(1.2 * len(rows) + 2, 4))
    ax.bar(labels, also, color="#bbbbbb", label="also answered closed-book")
    ax.bar(labels, beyond, bottom=also, color="#1f77b4", label="answered only with the context")
    ax.axhline(closed, color="black", linestyle="--", linewidth=1, label=f"closed book ({closed})")
    ax.set_ylabel(f"questions answered (of {n})")
    ax.legend(fontsize=8)
    plt.setp(ax.get_xticklabels(), rotation=20, ha="right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
