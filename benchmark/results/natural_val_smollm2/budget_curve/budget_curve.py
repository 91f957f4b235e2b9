"""Needles found and held against the cache budget, per prompt length: one figure and one table.

    PYTHONPATH=. python benchmark/results/natural_val_smollm2/budget_curve/budget_curve.py \
        benchmark/results/natural_val_smollm2/budget_curve/results.json \
        [--earlier benchmark/results/natural_val_smollm2/paragraphs/results.json]

Reads ``benchmark.summary``'s rows (every depth of a method, budget and length summed) and prints, per length,
method and budget, the prompts answered and the prompts whose needle the final cache held whole, then draws
both against the budget. ``--earlier`` adds the rows of an earlier summary for (method, budget, length) cells
this one lacks, of the lengths and methods it has; those ran before ``benchmark.run`` recorded held needles, so
they have no held count.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def summed(path: Path) -> dict[tuple[int, str, int], dict]:
    """One summary's (length, method, budget) -> n, found, held (None where not recorded), summed over depths."""
    cells: dict[tuple[int, str, int], dict] = defaultdict(lambda: {"n": 0, "found": 0.0, "held": 0})
    for row in json.loads(path.read_text()):
        cell = cells[row["length"], row["method"], row["budget"]]
        cell["n"] += row["n"]
        cell["found"] += row["mean_score"] * row["n"]
        if row.get("n_needle_recorded") != row["n"]:
            cell["held"] = None
        elif cell["held"] is not None:
            cell["held"] += row["n_needle_held"]
    return {
        key: {**cell, "found": round(cell["found"]), "source": path.parent.name}
        for key, cell in cells.items()
    }


def cells(paths: list[Path], earlier: list[Path]) -> dict[tuple[int, str, int], dict]:
    """The summaries' cells, then the earlier summaries' cells they lack, of the lengths and methods they have."""
    totals = {key: cell for path in paths for key, cell in summed(path).items()}
    primary = {key[:2] for key in totals}
    for path in earlier:
        for key, cell in summed(path).items():
            if key[:2] in primary:
                totals.setdefault(key, cell)
    return totals


def table(totals: dict[tuple[int, str, int], dict]) -> str:
    lines = ["| length | method | budget | compression | found | needle held | n | from |", "|---" * 8 + "|"]
    for (length, method, budget), cell in sorted(totals.items()):
        held = "-" if cell["held"] is None else cell["held"]
        lines.append(
            f"| {length} | {method} | {budget} | {length / budget:.0f}x | {cell['found']} | {held} | {cell['n']} "
            f"| {cell['source']} |"
        )
    return "\n".join(lines)


def plot(totals: dict[tuple[int, str, int], dict], out: Path) -> None:
    """Complete cells only (as many prompts as the largest cell): a stopped run's partial cell is tabled, not drawn."""
    full_n = max(cell["n"] for cell in totals.values())
    totals = {key: cell for key, cell in totals.items() if cell["n"] == full_n}
    lengths = sorted({key[0] for key in totals})
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    colors = dict(zip(sorted({key[1] for key in totals}), palette, strict=False))
    fig, axes = plt.subplots(1, len(lengths), figsize=(5 * len(lengths), 4), sharey=True, squeeze=False)
    for ax, length in zip(axes[0], lengths, strict=True):
        for method, color in colors.items():
            budgets = sorted(key[2] for key in totals if key[:2] == (length, method))
            if not budgets:
                continue
            found = [totals[(length, method, b)]["found"] for b in budgets]
            ax.plot(budgets, found, "o-", color=color, label=f"{method}: found")
            held = [(b, totals[(length, method, b)]["held"]) for b in budgets]
            held = [(b, h) for b, h in held if h is not None]
            if held and method != "needle_oracle":
                ax.plot(
                    *zip(*held, strict=True), "s--", color=color, alpha=0.5, label=f"{method}: needle held"
                )
        ax.set_xscale("log", base=2)
        ax.set_xlabel("budget (entries per KV head and layer)")
        ax.set_title(f"niah_text_paragraphs validation, {length // 1024}K tokens")
        ax.set_ylim(-0.5, full_n + 0.5)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower left")
    axes[0][0].set_ylabel(f"prompts of {full_n}")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("summaries", nargs="+", type=Path, help="benchmark.summary results.json files")
    parser.add_argument("--earlier", nargs="*", type=Path, default=[], help="older summaries filling gaps")
    parser.add_argument("--plot", type=Path, default=Path(__file__).with_name("found_and_held_by_budget.png"))
    args = parser.parse_args()
    totals = cells(args.summaries, args.earlier)
    print(table(totals))
    plot(totals, args.plot)
    print(f"\nplot: {args.plot}")


if __name__ == "__main__":
    main()
