"""Diagnostic 3: offline KVzip scores (chunk 512) in Locret's sequential cache: position modes absolute /
repacked / union (each retained token's rank among the tokens any head of its layer keeps), uniform and
adaptive allocation; depths 0.5 and 0.75."""

import json

import torch

import locret
from benchmark.methods.kvzip import KVzip, prefill_plain, reconstruction_scores, repeat_chunks
from benchmark.run import encode_sample, eos_ids
from benchmark.tasks import load_task
from benchmark.tasks import score as task_score
from locret.acquire import load_tokenizer, resolve_model
from locret.config import LocretConfig
from locret.models.base import LocretAttentionMixin
from locret.prefill import new_cache
from locret.rope import apply_rope
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


UNION = {"on": False}
original = LocretAttentionMixin._rotate_with_cache


def rotate(self, query, key, cache):
    if not UNION["on"]:
        return original(self, query, key, cache)
    layer = cache.layers[self.layer_idx]
    pos = layer.positions
    held = layer.held_entries()
    valid = pos if held is None else pos.masked_fill(~held.expand_as(pos), -1)
    uniq = torch.unique(valid[valid >= 0])
    rank = torch.searchsorted(uniq, pos.contiguous())
    n, new = uniq.numel(), query.shape[-2]
    cos, sin = self.locret_rope.table(n, query.dtype, query.device)
    return apply_rope(query, cos[n - new :], sin[n - new :]), apply_rope(key, cos[rank], sin[rank])


LocretAttentionMixin._rotate_with_cache = rotate

first, later = KVzip(tokenizer=tok).prompts(model)
for sample in samples:
    if sample.meta["depth"] not in (0.5, 0.75):
        continue
    prompt = encode_sample(tok, sample, chat_template=False)
    ids = torch.tensor([prompt.ids])
    ctx = torch.tensor([prompt.context_ids])
    offline = reconstruction_scores(
        model, prefill_plain(model, ctx, 512), repeat_chunks(ctx[0].tolist(), first, later, 512), "chunk"
    ).float()
    for alloc in ("adaptive", "uniform"):
        for mode in ("union", "absolute", "repacked"):
            UNION["on"] = mode == "union"
            config = LocretConfig(
                budget=1024,
                chunk_size=512,
                n_stabilizers=256,
                n_local=prompt.n_question,
                budget_allocation=alloc,
                position_mode="repacked" if mode == "union" else mode,
            )
            cache = new_cache(model, config, scorer=Precomputed(offline), track_positions=True)
            out = locret.generate(model, ids, config, 16, eos_token_id=eos, cache=cache, static_decode=False)
            ans = tok.decode(out.new_tokens[0].tolist(), skip_special_tokens=True)
            print(
                json.dumps(
                    {
                        "depth": sample.meta["depth"],
                        "alloc": alloc,
                        "mode": mode,
                        "score": task_score("niah_text", ans, sample),
                        "answer": ans[:40],
                    }
                ),
                flush=True,
            )
