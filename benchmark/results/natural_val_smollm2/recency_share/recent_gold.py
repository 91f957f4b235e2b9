"""Of the questions StreamingLLM answers with the gold passage inside the newest tokens, how many does each
other case answer? With 768 newest entries protected (64 of them the question) such a passage is never
evicted, so a loss there is a reading lost to what else the cache holds, not an eviction.

    PYTHONPATH=. python benchmark/results/natural_val_smollm2/recency_share/recent_gold.py [--runs runs/stab]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmark.run import read_predictions

CASE = "multidoc_qa-validation/{method}/{budget}_L4096_dsweep"
CASES = {
    "StreamingLLM": ("md_base", "streaming_llm", "b1024"),
    "heads, 256 newest protected": ("md_s256", "locret_pooled:score_pooling=15", "b1024"),
    "heads, 512 newest protected": ("md_s512", "locret_pooled:score_pooling=15", "b1024"),
    "heads, 768 newest protected": ("md_s768", "locret_pooled:score_pooling=15", "b1024"),
    "random heads, 768 newest protected": ("md_s768", "locret_random_pooled:score_pooling=15", "b1024"),
    "full cache": ("md_base", "full", "bfull"),
}
# The gold passage starts at most this far from the prompt's end: inside the 768 protected entries.
RECENT_TOKENS = 700


def load(runs: Path, folder: str, method: str, budget: str) -> dict[str, dict]:
    path = runs / folder / CASE.format(method=method, budget=budget) / "predictions.jsonl"
    return {r["id"]: r for r in read_predictions(path)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=Path, default=Path("runs/stab"))
    runs = parser.parse_args().runs
    cases = {label: load(runs, *where) for label, where in CASES.items()}
    streaming = cases["StreamingLLM"]
    recent = [
        i
        for i, r in streaming.items()
        if r["score"] >= 1 and r["prompt_tokens"] - r["needle_token_spans"][0][0] <= RECENT_TOKENS
    ]
    print(
        f"StreamingLLM answers {len(recent)} questions whose gold passage starts in the last {RECENT_TOKENS} tokens"
    )
    for label, records in cases.items():
        print(f"  {label}: {sum(records[i]['score'] >= 1 for i in recent)} of them")


if __name__ == "__main__":
    main()
