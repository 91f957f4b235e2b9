"""How much of what the recommended scorer holds comes from the trained heads? An offline replay.

    PYTHONPATH=. python benchmark/results/natural_val_smollm2/heads_ablation/replay.py --features runs/segment_grid

``LineScorer(max_line=32)`` scores each 32-token line by the mean of its 8 highest token values, a token's value
being z of the heads' average plus z of its surprisal. This replays the selection on the features
``../segment_grid/`` recorded (raw head scores and surprisal of one recommended run per validation prompt:
budget 1024, chunk 512, 256 stabilizers; a prompt without them is run and recorded the same way) with either
term alone, and prints, per case, the prompts whose needle sentence the replayed cache keeps whole. The model's
reading is not replayed; ``README.md`` has the real runs with random heads beside.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmark.results.natural_val_smollm2.kept_by_depth.kept_by_depth import load_recommended
from benchmark.results.natural_val_smollm2.kept_by_depth.restandardize import (
    RECOMMENDED,
    line_scores,
    segments,
    selection,
    standardized_terms,
)
from benchmark.results.natural_val_smollm2.local_contrast.local_contrast import features
from benchmark.results.natural_val_smollm2.window_line.needle_kept import validation_needles
from locret.scorers.lines import line_end_tokens

# (heads weight, surprisal weight) of each token's value; (1, 1) is the recommended scorer
TERMS = {
    "heads + surprisal (recommended)": (1.0, 1.0),
    "heads only": (1.0, 0.0),
    "surprisal only": (0.0, 1.0),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--features", type=Path, required=True, help="where ../segment_grid/ kept its features"
    )
    parser.add_argument(
        "--cases",
        default="niah_text_paragraphs:16384,niah_text_paragraphs:32768,niah_text:32768",
        help="task:length pairs, comma-separated",
    )
    parser.add_argument("--depths", default="0.25,0.5,0.75")
    args = parser.parse_args()
    model, tokenizer, eos, method = load_recommended()
    ends = line_end_tokens(tokenizer, model.config.vocab_size)
    cases = [(task, int(length)) for task, length in (c.split(":") for c in args.cases.split(","))]
    held = {(name, case): 0 for name in TERMS for case in cases}
    prompts = dict.fromkeys(cases, 0)
    for task, length in cases:
        for depth in (float(d) for d in args.depths.split(",")):
            for sample in validation_needles(tokenizer, length, depth, task):
                path = args.features / f"{task}_{length}_d{depth:g}_{sample.id}.safetensors"
                stored = features(model, tokenizer, eos, method, sample, path)
                n_context = len(stored["ids"])
                spans = segments(stored["ids"].tolist(), ends, RECOMMENDED.max_line)
                a, b = stored["needle"].tolist()
                z_heads, z_surprisal = standardized_terms(
                    stored["heads"], stored["surprisal"], stored["bounds"].tolist(), "cumulative", n_context
                )
                for name, (heads_weight, surprisal_weight) in TERMS.items():
                    values = heads_weight * z_heads + surprisal_weight * z_surprisal
                    keep, _ = selection(line_scores(values, spans), spans, n_context)
                    held[name, (task, length)] += bool(keep[a:b].all())
                prompts[task, length] += 1
    header = " | ".join(f"{task} {length // 1024}K (of {prompts[task, length]})" for task, length in cases)
    print("needle sentence kept whole (validation, depths " + args.depths + ")\n")
    print(f"| token value | {header} |")
    print("|---|" + "---|" * len(cases))
    for name in TERMS:
        print(f"| {name} | " + " | ".join(str(held[name, case]) for case in cases) + " |")


if __name__ == "__main__":
    main()
