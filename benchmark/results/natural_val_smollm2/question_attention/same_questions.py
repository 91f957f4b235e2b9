"""Answered counts of several case folders on one set of questions: those of the first folder (the
question-attention runs covered the first 100 validation questions; the reference runs all 300).

    PYTHONPATH=. python benchmark/results/natural_val_smollm2/question_attention/same_questions.py CASE CASE...
"""

import sys
from pathlib import Path

from benchmark.run import read_predictions


def answered(folder: Path, ids: set[str]) -> tuple[int, int]:
    """(answered, asked) among ``ids`` in the case folder's finished records."""
    records = [
        r for r in read_predictions(folder / "predictions.jsonl") if r["id"] in ids and r["status"] == "ok"
    ]
    return sum(r["score"] > 0 for r in records), len(records)


def main(folders: list[Path]) -> None:
    ids = {r["id"] for r in read_predictions(folders[0] / "predictions.jsonl")}
    for folder in folders:
        hits, asked = answered(folder, ids)
        print(f"{hits}/{asked}\t{folder.parent.name}")


if __name__ == "__main__":
    main([Path(arg) for arg in sys.argv[1:]])
