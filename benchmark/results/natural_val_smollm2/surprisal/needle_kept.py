"""Probe: whether the sentence-surprisal scorer keeps each validation needle, and whether the model then
answers (niah_text validation, completion prompt, budget 1024, chunk 512, SmolLM2 bf16, 1 thread).

    PYTHONPATH=. python benchmark/results/natural_val_smollm2/surprisal/needle_kept.py 8000 0.25,0.75 5 \
        '{"stabilizers 256": {}, "stabilizers 896": {"n_stabilizers": 896}, "absolute": {"position_mode": "absolute"}}'

Arguments: length, depths, needles per depth, and a JSON object of variants (``LocretConfig`` fields over
budget 1024, chunk 512, 256 stabilizers, pooling 1; a ``"scorer"`` entry holds ``SurprisalScorer`` fields,
e.g. ``{"share 1/8": {"scorer": {"surprising_share": 0.125}}}``; before the share, ``surprising_budget`` counted
entries, and the runs of ``../surprisal_capped/`` used it). Per prompt and variant: 1/0 for the answer (the value
in the reply's first non-empty line, lowercased: close to the task's own score), how many of the needle
sentence's tokens layer 0 kept (every layer and head keeps the same), and the reply's first line.
"""

import json
import sys

import torch

import locret
from benchmark.run import encode_sample
from benchmark.tasks import load_task
from locret.acquire import load_tokenizer, resolve_model
from locret.generation import new_cache
from locret.scorers import SurprisalScorer

torch.set_num_threads(1)
model_dir = resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct")
tokenizer = load_tokenizer(model_dir)
model = locret.from_pretrained(model_dir, dtype=torch.bfloat16).eval()
length, depths, n = int(sys.argv[1]), [float(x) for x in sys.argv[2].split(",")], int(sys.argv[3])
variants = json.loads(sys.argv[4])
for depth in depths:
    samples = load_task(
        "niah_text",
        data_dir="../shared/data",
        tokenizer=tokenizer,
        length=length,
        n=n,
        depth=depth,
        style="completion",
        split="validation",
    )
    for sample in samples:
        prompt = encode_sample(tokenizer, sample, chat_template=False)
        ids = torch.tensor([prompt.ids])
        start, end = sample.meta["needle_token_spans"][0]
        line = [sample.id]
        for name, settings in variants.items():
            settings = dict(settings)
            scorer_settings = settings.pop("scorer", {})
            config = locret.LocretConfig(
                **{"budget": 1024, "chunk_size": 512, "n_stabilizers": 256, "score_pooling": 1}
                | {"n_local": prompt.n_question}
                | settings
            )
            cache = new_cache(
                model,
                config,
                scorer=SurprisalScorer(tokenizer=tokenizer, **scorer_settings),
                track_positions=True,
            )
            out = locret.generate(model, ids, config, cache=cache, max_new_tokens=16)
            reply = tokenizer.decode(out.sequences[0, ids.shape[1] :])
            first = next((text for text in reply.split("\n") if text.strip()), "").lower()
            positions = cache.layers[0].positions[0, 0]
            kept = int(((positions >= start) & (positions < end)).sum())
            found = int(sample.answers[0].lower() in first)
            line.append(f"{name}: {found} (kept {kept}/{end - start}) {first[:50]!r}")
        print(" | ".join(line), flush=True)
