"""Diagnostic 4: per-chunk calibration of online vs offline reconstruction scores (depth 0.5 and 0.75), and
sequential eviction (absolute, adaptive) with online scores re-normalised per chunk."""

import json

import torch

import locret
from benchmark.kvzip_needle_rank import value_span
from benchmark.methods.kvzip import KVzip
from benchmark.run import encode_sample, eos_ids
from benchmark.tasks import load_task
from benchmark.tasks import score as task_score
from locret.acquire import load_tokenizer, resolve_model
from locret.cache import LocretLayer
from locret.config import LocretConfig
from locret.prefill import new_cache
from locret.scorers import ReconstructionScorer
from locret.scorers.base import EntryScorer

torch.set_num_threads(2)
model_dir = resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct")
tok = load_tokenizer(model_dir)
model = locret.from_pretrained(model_dir, dtype=torch.bfloat16).eval()
samples = load_task(
    "niah_text",
    data_dir="../shared/data",
    tokenizer=tok,
    length=4096,
    n=5,
    style="completion",
    split="validation",
)
eos = eos_ids(tok, model)


class Precomputed(EntryScorer):
    def __init__(self, scores):
        self.scores = scores

    def score_new(self, attention, head_input, query, key, positions):
        s = self.scores[attention.layer_idx]
        out = torch.zeros(key.shape[:3])
        inside = positions < s.shape[-1]
        out[0][:, inside] = s[:, positions[inside]]
        return out


recorded = {}
orig = LocretLayer.supply_pending_scores


def record(self, raw):
    recorded.setdefault(id(self), []).append(raw[0].float().clone())
    return orig(self, raw)


LocretLayer.supply_pending_scores = record

first, later = KVzip(tokenizer=tok).prompts(model)
for sample in samples:
    if sample.meta["depth"] not in (0.0, 0.5, 0.75):
        continue
    prompt = encode_sample(tok, sample, chat_template=False)
    ids = torch.tensor([prompt.ids])
    ctx = torch.tensor([prompt.context_ids])
    n = ctx.shape[1]
    head_text = sample.prefix + sample.context
    span = value_span(sample, tok, head_text, tok.encode(head_text))
    base = dict(
        budget=1024,
        chunk_size=512,
        n_stabilizers=256,
        n_local=prompt.n_question,
        budget_allocation="adaptive",
        position_mode="absolute",
    )
    recorded.clear()
    config = LocretConfig(**base)
    cache = new_cache(model, config, scorer=ReconstructionScorer(tokenizer=tok))
    out = locret.generate(model, ids, config, 16, eos_token_id=eos, cache=cache, static_decode=False)
    online = torch.stack([torch.cat(recorded[id(l)], -1) for l in cache.layers])[..., :n]
    logged = online.clamp(min=1e-8).log()
    ramp = torch.arange(n, dtype=torch.float32) / 512
    for alpha in (0.45, 0.9):
        sc = logged + alpha * ramp
        cache = new_cache(model, config, scorer=Precomputed(sc))
        out = locret.generate(model, ids, config, 16, eos_token_id=eos, cache=cache, static_decode=False)
        ans = tok.decode(out.new_tokens[0].tolist(), skip_special_tokens=True)
        print(
            json.dumps(
                {
                    "depth": sample.meta["depth"],
                    "alpha": alpha,
                    "score": task_score("niah_text", ans, sample),
                    "answer": ans[:40],
                }
            ),
            flush=True,
        )
