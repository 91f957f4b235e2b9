"""Run ``benchmark.run`` with the ``surprisal`` method and record, per prompt, every token's surprisal as the
scorer computed it (under the evicting cache), the prompt's ids, its needle spans and its score, so that other
sentence-scoring rules can be screened offline (``screen_rules.py``) before any of them is run end to end.

    PYTHONPATH=. python benchmark/results/natural_val_smollm2/surprisal_rules/record_surprisal.py \
        --record-dir runs/surprisal_rules/8k <benchmark.run arguments, --method surprisal>
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

import benchmark.run as bench_run
import locret.scorers.surprisal as surprisal_module


def main(argv: list[str]) -> None:
    index = argv.index("--record-dir")
    record_dir = Path(argv[index + 1])
    del argv[index : index + 2]
    record_dir.mkdir(parents=True, exist_ok=True)
    calls: list[torch.Tensor] = []
    original_surprisal, original_run_sample = surprisal_module.token_surprisal, bench_run.run_sample

    def recording_surprisal(*args, **kwargs):
        values = original_surprisal(*args, **kwargs)
        calls.append(values[0].detach().float().cpu())
        return values

    def recording_run_sample(case, method, model, sample, prompt, *rest):
        calls.clear()
        record = original_run_sample(case, method, model, sample, prompt, *rest)
        if calls:  # the surprisal of tokens 1..n-1 of the prefilled context, in order
            surprisal = torch.cat(calls).tolist()
            name = f"{case.key}__{sample.id}".replace("/", "_")
            entry = {
                "ids": prompt.ids,
                "context_tokens": len(prompt.context_ids),
                "surprisal": surprisal,
                "needle_token_spans": sample.meta.get("needle_token_spans"),
                "score": record["score"],
                "prediction": record["prediction"],
                "depth": sample.meta.get("depth"),
                "sample": sample.id,
            }
            (record_dir / f"{name}.json").write_text(json.dumps(entry))
        return record

    surprisal_module.token_surprisal = recording_surprisal
    bench_run.run_sample = recording_run_sample
    bench_run.main(argv)


if __name__ == "__main__":
    main(sys.argv[1:])
