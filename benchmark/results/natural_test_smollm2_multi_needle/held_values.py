"""Per needle, not per prompt: how many of the asked values each method's cache held whole and how many the
reply gave, from `benchmark.run`'s predictions.jsonl under the given run folders (the `niah_text_multi*` tasks).

`niah_text_multi_all` asks every needle (answers in the order of `needle_held`); `niah_text_multi` asks the
first needle only (`needle_held[0]`), the other three sit in the text as distractors."""

import argparse
from collections import defaultdict
from pathlib import Path

from benchmark.natural.scoring import contains_value
from benchmark.run import read_predictions


def asked(record: dict, task: str) -> list[tuple[bool | None, bool]]:
    """(held whole, found) for each asked needle of one prediction; held is None where the run did not record
    it (the full cache keeps everything)."""
    held = record.get("needle_held")
    if task.startswith("niah_text_multi_all"):
        return [
            (None if held is None else held[i] == 1.0, contains_value(record["prediction"], value))
            for i, value in enumerate(record["answers"])
        ]
    return [(None if held is None else held[0] == 1.0, record["score"] == 1.0)]  # the task's own score


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("runs", nargs="+", type=Path)
    args = parser.parse_args()
    rows: dict[tuple[str, str, str], list[tuple[bool | None, bool]]] = defaultdict(list)
    for run in args.runs:
        for path in sorted(run.glob("*/*/*/predictions.jsonl")):
            task, method, case = path.parts[-4:-1]
            for record in read_predictions(path):
                if record.get("status", "ok") == "ok":
                    rows[(task, case.split("_")[1], method)].extend(asked(record, task))
    print(
        "| task | length | method | asked needles | held whole | found | found when held | found when not held |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for (task, length, method), pairs in sorted(rows.items()):
        found = sum(f for _, f in pairs)
        if pairs[0][0] is None:
            print(f"| {task} | {length[1:]} | {method} | {len(pairs)} | - | {found} | - | - |")
            continue
        held = [f for is_held, f in pairs if is_held]
        lost = [f for is_held, f in pairs if not is_held]
        print(
            f"| {task} | {length[1:]} | {method} | {len(pairs)} | {len(held)} | {found} | "
            f"{sum(held)}/{len(held)} | {sum(lost)}/{len(lost)} |"
        )


if __name__ == "__main__":
    main()
