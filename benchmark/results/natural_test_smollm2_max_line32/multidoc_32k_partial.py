"""Counts of a `multidoc_qa` run stopped before its case finished (no metrics.json yet), from its per-question
records as `benchmark.run` reads and summarises them: answered of the first 60, 110 and all recorded questions,
and how much of the gold passage the cache held.

    PYTHONPATH=. python benchmark/results/natural_test_smollm2_max_line32/multidoc_32k_partial.py \
        "runs/m32_test/multidoc_32k/multidoc_qa-test/lines:max_line=32/b1024_L32768_dsweep/predictions.jsonl"
"""

import json
import sys
from pathlib import Path

from benchmark.run import Case, read_predictions, summarise

path = Path(sys.argv[1])
config = json.loads((path.parent / "config.json").read_text())
case, expected = Case(**config["case"]), config["n"]
rows = read_predictions(path)
questions = [int(row["id"].split("_")[3]) for row in rows]
if questions != list(range(questions[0], questions[0] + len(rows))):
    raise SystemExit("the records are not the first questions in order")
for first in (60, 110, len(rows)):
    print(f"answered of the first {first}: {sum(row['score'] for row in rows[:first]):g}")
held = summarise(case, rows, expected)["n_needle_held"]
print(f"questions {questions[0]}-{questions[-1]}; gold passage held whole in {held} of {len(rows)}")
share = sum(row["needle_held"][0] for row in rows) / len(rows)
print(f"mean share of the gold passage's tokens held: {100 * share:.1f}%")
