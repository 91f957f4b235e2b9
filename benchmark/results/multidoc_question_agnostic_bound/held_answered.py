"""Per method: how often its cache held `multidoc_qa`'s gold passage whole, and how many questions it answered
with and without it, over the first questions every given run has finished (`benchmark.run`'s
predictions.jsonl; `needle_held` is the gold passage's share of tokens kept, None where
nothing is evicted: the full cache, the closed book)."""

import argparse
from pathlib import Path

from benchmark.run import read_predictions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("runs", nargs="+", type=Path, help="case folders, each holding a predictions.jsonl")
    parser.add_argument("--first", type=int, default=None, help="at most this many questions (file order)")
    args = parser.parse_args()
    records = {run: {r["id"]: r for r in read_predictions(run / "predictions.jsonl")} for run in args.runs}
    order = [i for i in next(iter(records.values())) if all(i in done for done in records.values())]
    common = order[: args.first]
    print(f"{len(common)} questions finished by every run")
    print("| method | gold passage held whole | answered | answered when held | answered when not held |")
    print("|---|---|---|---|---|")
    for run, done in records.items():
        rows = [done[i] for i in common]
        if any(r["needle_held"] is None for r in rows):  # no evicting cache (the full cache, the closed book)
            print(f"| {run.parts[-2]} | (not evicted) | {sum(r['score'] for r in rows):g} | | |")
            continue
        held = [r for r in rows if r["needle_held"][0] == 1.0]
        missed = [r for r in rows if r["needle_held"][0] < 1.0]
        print(
            f"| {run.parts[-2]} | {len(held)} | {sum(r['score'] for r in rows):g} "
            f"| {sum(r['score'] for r in held):g} of {len(held)} "
            f"| {sum(r['score'] for r in missed):g} of {len(missed)} |"
        )


if __name__ == "__main__":
    main()
