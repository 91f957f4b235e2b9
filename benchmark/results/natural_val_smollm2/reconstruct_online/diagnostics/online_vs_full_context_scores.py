"""Diagnostic: online (sequential, evicted-cache) vs offline (full-cache, one-shot) reconstruction scores."""

import json

import torch

import locret
from benchmark.methods.kvzip import (
    Compressed,
    KVzip,
    keep_mask,
    prefill_plain,
    reconstruction_scores,
    repeat_chunks,
)
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


class GivenScores(KVzip):
    given = None

    def compress(self, model, context_ids, config):
        cache = prefill_plain(model, context_ids, config.chunk_size)
        return Compressed(
            cache, self.given, keep_mask(self.given, config.budget, "head"), context_ids.shape[1]
        )


def answer(out):
    return tok.decode(out.new_tokens[0].tolist(), skip_special_tokens=True)


first, later = KVzip(tokenizer=tok).prompts(model)
for sample in samples:
    prompt = encode_sample(tok, sample, chat_template=False)
    ids = torch.tensor([prompt.ids])
    ctx = torch.tensor([prompt.context_ids])
    n = ctx.shape[1]
    config = LocretConfig(
        budget=1024,
        chunk_size=512,
        n_stabilizers=256,
        n_local=prompt.n_question,
        budget_allocation="adaptive",
    )
    # offline scores, chunk 512
    offline = reconstruction_scores(
        model, prefill_plain(model, ctx, 512), repeat_chunks(ctx[0].tolist(), first, later, 512), "chunk"
    ).float()
    # online scores (recorded while prefilling)
    recorded.clear()
    cache = new_cache(model, config, scorer=ReconstructionScorer(tokenizer=tok))
    out_online = locret.generate(model, ids, config, 16, eos_token_id=eos, cache=cache)
    online = torch.stack([torch.cat(recorded[id(l)], -1) for l in cache.layers])[..., :n]
    # sequential with offline scores
    cache2 = new_cache(model, config, scorer=Precomputed(offline))
    out_seq_off = locret.generate(model, ids, config, 16, eos_token_id=eos, cache=cache2)
    # one-shot head allocation with online scores
    g = GivenScores(tokenizer=tok, allocation="head")
    g.given = online
    out_shot_on = g.generate(model, ids, config, 16, eos_token_id=eos)
    fin = torch.isfinite(offline) & torch.isfinite(online)

    # spearman per layer (over heads x tokens)
    def rank(x):
        return x.argsort().argsort().float()

    sp = []
    for l in range(offline.shape[0]):
        a, b = offline[l][fin[l]], online[l][fin[l]]
        sp.append(torch.corrcoef(torch.stack([rank(a), rank(b)]))[0, 1].item())
    res = {
        "depth": sample.meta["depth"],
        "online_seq": task_score("niah_text", answer(out_online), sample),
        "offline_seq": task_score("niah_text", answer(out_seq_off), sample),
        "online_oneshot": task_score("niah_text", answer(out_shot_on), sample),
        "spearman_layer_mean": sum(sp) / len(sp),
        "spearman_min": min(sp),
    }
    print(json.dumps(res), flush=True)
