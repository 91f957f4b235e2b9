"""Issue 25's natural-text grid in one picture: needles found of 25 against context length, on hard-wrapped books
and with a paragraph per line, for the recommended scorer, its random-heads control, the chunked baselines, the
full cache and the needle oracle (test split, budget 1024).

    python benchmark/results/natural_test_grid/grid.py

Reads the committed ``results.json`` of the folders named in ``SOURCES`` (the ones "Natural-text results now" in
``benchmark/README.md`` cites), keeps a length only where all five depths ran whole (a partial cell, as
StreamingLLM's 100%-deep-only runs at 64K and 128K with a paragraph per line, is left out), stops if two folders
disagree on a cell, and writes ``grid.png`` and ``grid.md`` beside this file. It runs nothing: every number is a
committed run's.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = Path(__file__).resolve().parent
RESULTS = HERE.parent
DEPTHS = (0.0, 0.25, 0.5, 0.75, 1.0)
PER_DEPTH = 5
TARGET = 0.9  # issue 25: >= 90% in every cell from 8K to 128K

TEXTS = {
    "niah_text-test": "hard-wrapped books (niah_text)",
    "niah_text_paragraphs-test": "a paragraph per line",
}

# (task, method) -> (label, results folders holding its cells)
SOURCES: dict[tuple[str, str], tuple[str, list[str]]] = {
    ("niah_text-test", "lines:max_line=32"): (
        "lines:max_line=32 (recommended)",
        ["natural_test_smollm2_max_line32/wrapped", "natural_test_smollm2_max_line32/wrapped_128k"],
    ),
    ("niah_text-test", "lines:max_line=32:heads=random"): (
        "same, random heads (control)",
        ["natural_test_smollm2_heads_ablation/random_heads"],
    ),
    ("niah_text-test", "streaming_llm"): (
        "StreamingLLM",
        ["natural_test_smollm2_v030/lengths_4k_8k", "natural_test_smollm2_v030/lengths_16k_32k"],
    ),
    ("niah_text-test", "h2o"): (
        "chunked H2O",
        [
            "natural_test_smollm2_v030/lengths_4k_8k",
            "natural_test_smollm2_v030/lengths_16k_32k",
            "natural_test_smollm2_chunked_baselines/wrapped_32k",
            "natural_test_smollm2_chunked_baselines/wrapped_64k",
            "natural_test_smollm2_chunked_baselines/wrapped_128k",
        ],
    ),
    ("niah_text-test", "snapkv"): (
        "chunked SnapKV",
        [
            "natural_test_smollm2_v030/lengths_4k_8k",
            "natural_test_smollm2_v030/lengths_16k_32k",
            "natural_test_smollm2_chunked_baselines/wrapped_32k",
            "natural_test_smollm2_chunked_baselines/wrapped_64k",
            "natural_test_smollm2_chunked_baselines/wrapped_128k",
        ],
    ),
    ("niah_text-test", "full"): ("full cache", ["natural_test_smollm2_v030/lengths_4k_8k"]),
    ("niah_text-test", "needle_oracle"): (
        "needle oracle",
        [
            "natural_test_smollm2_v030/lengths_4k_8k",
            "natural_test_smollm2_v030/lengths_16k_32k",
            "natural_test_smollm2_line_surprisal/niah_64k",
            "natural_test_smollm2_line_rules/niah_128k",
        ],
    ),
    ("niah_text_paragraphs-test", "lines:max_line=32"): (
        "lines:max_line=32 (recommended)",
        ["natural_test_smollm2_max_line32/paragraphs", "natural_test_smollm2_max_line32/paragraphs_128k"],
    ),
    ("niah_text_paragraphs-test", "lines:max_line=32:heads=random"): (
        "same, random heads (control)",
        ["natural_test_smollm2_heads_ablation/random_heads"],
    ),
    ("niah_text_paragraphs-test", "streaming_llm"): (
        "StreamingLLM",
        ["natural_test_smollm2_max_line32/paragraphs", "natural_test_smollm2_max_line32/paragraphs_128k"],
    ),
    ("niah_text_paragraphs-test", "h2o"): (
        "chunked H2O",
        [
            "natural_test_smollm2_chunked_baselines/paragraphs",
            "natural_test_smollm2_chunked_baselines/paragraphs_64k",
            "natural_test_smollm2_chunked_baselines/paragraphs_128k",
        ],
    ),
    ("niah_text_paragraphs-test", "snapkv"): (
        "chunked SnapKV",
        [
            "natural_test_smollm2_chunked_baselines/paragraphs",
            "natural_test_smollm2_chunked_baselines/paragraphs_64k",
            "natural_test_smollm2_chunked_baselines/paragraphs_128k",
        ],
    ),
    ("niah_text_paragraphs-test", "full"): ("full cache", ["natural_test_smollm2_max_line32/paragraphs"]),
    ("niah_text_paragraphs-test", "needle_oracle"): (
        "needle oracle",
        ["natural_test_smollm2_max_line32/paragraphs", "natural_test_smollm2_max_line32/paragraphs_128k"],
    ),
}

STYLES = {
    "lines:max_line=32": dict(color="tab:blue", marker="o", linewidth=2.5),
    "lines:max_line=32:heads=random": dict(
        color="tab:cyan", marker="x", linestyle="none", markersize=9, zorder=5
    ),
    "streaming_llm": dict(color="tab:gray", marker="s"),
    "h2o": dict(color="tab:orange", marker="^"),
    "snapkv": dict(color="tab:red", marker="v"),
    "full": dict(color="black", marker="D", linestyle="--"),
    "needle_oracle": dict(color="tab:green", marker="*", linestyle=":", markersize=9),
}


def found_by_length(task: str, method: str, folders: list[str]) -> dict[int, int]:
    """Needles found per length, summed over the five depths, from the lengths where every depth ran whole;
    a cell two folders hold with different scores stops the script."""
    by_length: dict[int, dict[float, int]] = defaultdict(dict)
    for folder in folders:
        for row in json.loads((RESULTS / folder / "results.json").read_text()):
            if row["task"] != task or row["method"] != method or row["budget"] not in (1024, None):
                continue
            if row["status"] != "complete" or row["n_scored"] != PER_DEPTH:
                continue
            found = round(row["mean_score"] * row["n_scored"])
            depths = by_length[row["length"]]
            if depths.setdefault(row["depth"], found) != found:
                raise SystemExit(
                    f"{task} {method} {row['length']} d{row['depth']}: {folder} says {found}, "
                    f"another folder {depths[row['depth']]}"
                )
    return {
        length: sum(depths.values())
        for length, depths in sorted(by_length.items())
        if set(depths) == set(DEPTHS)
    }


def main() -> None:
    grid = {key: found_by_length(*key, folders) for key, (_, folders) in SOURCES.items()}
    lengths = sorted({length for series in grid.values() for length in series})
    ticks = [f"{round(x / 1024)}K" for x in lengths]
    n = PER_DEPTH * len(DEPTHS)
    fig, axes = plt.subplots(1, len(TEXTS), figsize=(12, 4.6), sharey=True)
    lines = [f"Needles found of {n} (test split, budget 1024; empty: not run or not whole)", ""]
    for ax, (task, title) in zip(axes, TEXTS.items(), strict=True):
        lines += [
            f"**{title}**",
            "",
            "| method | " + " | ".join(ticks) + " |",
        ]
        lines.append("|---|" + "---|" * len(lengths))
        for (series_task, method), (label, _) in SOURCES.items():
            if series_task != task:
                continue
            series = grid[task, method]
            lines.append(f"| {label} | " + " | ".join(str(series.get(x, "")) for x in lengths) + " |")
            if series:
                ax.plot(list(series), list(series.values()), label=label, **STYLES[method])
        lines.append("")
        ax.axhline(
            TARGET * n, color="tab:purple", linewidth=0.8, linestyle="--", label="issue 25 target (90%)"
        )
        ax.set_xscale("log", base=2)
        ax.set_xticks(lengths, ticks)
        ax.set_ylim(0, n + 0.5)
        ax.set_title(title)
        ax.set_xlabel("context length (tokens)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"needles found (of {n})")
    axes[-1].legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.suptitle(
        "niah_text test split, SmolLM2-135M-Instruct bf16, budget 1024 (full cache: within its 8K window)"
    )
    fig.tight_layout()
    fig.savefig(HERE / "grid.png", dpi=100)
    (HERE / "grid.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
