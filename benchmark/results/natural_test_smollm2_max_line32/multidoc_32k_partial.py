"""Counts of a `multidoc_qa` run stopped before its case finished (no metrics.json yet), from its per-question
records: answered of the first 60, 110 and all recorded questions, and how much of the gold passage the cache held.

    python benchmark/results/natural_test_smollm2_max_line32/multidoc_32k_partial.py \
        "runs/m32_test/multidoc_32k/multidoc_qa-test/lines:max_line=32/b1024_L32768_dsweep/predictions.jsonl"
"""

import json
import sys

rows = [json.loads(line) for line in open(sys.argv[1])]
questions = [int(row["id"].split("_")[3]) for row in rows]
if questions != list(range(questions[0], questions[0] + len(rows))):
    raise SystemExit("the records are not the first questions in order")
for first in (60, 110, len(rows)):
    print(f"answered of the first {first}: {sum(row['score'] for row in rows[:first]):g}")
held = [row["needle_held"][0] for row in rows]
print(
    f"questions {questions[0]}-{questions[-1]}; gold passage held whole in {sum(h == 1.0 for h in held)} of {len(rows)}"
)
print(f"mean share of the gold passage's tokens held: {100 * sum(held) / len(rows):.1f}%")
