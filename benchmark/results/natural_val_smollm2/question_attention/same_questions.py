"""Answered counts of several case folders on one set of questions: those of the first folder (the
question-attention runs covered the first 100 validation questions; the reference runs all 300).

    PYTHONPATH=. python benchmark/results/natural_val_smollm2/question_attention/same_questions.py CASE CASE...
"""

import sys
from pathlib import Path

from benchmark.paired import answered_ids


def main(folders: list[Path]) -> None:
    ids = answered_ids(folders[0], threshold=1.0)[0]
    for folder in folders:
        ran, hit = answered_ids(folder, threshold=1.0)
        print(f"{len(hit & ids)}/{len(ran & ids)}\t{folder.parent.name}")


if __name__ == "__main__":
    main([Path(arg) for arg in sys.argv[1:]])
