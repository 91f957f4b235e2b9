"""Variants of the question-attention scorer (``question_attention.patch``), as a benchmark method ``qvar``.

``rule``: ``max`` (the patch's: the most attention from any question token and query head of the group)
or ``sum`` (SnapKV's vote: summed over question tokens, averaged over the group). ``lo``/``hi`` > 0: one
ranking shared by every layer and KV head, the mean of layers ``lo..hi-1``'s scores (averaged over KV heads);
``hi`` 0: each layer and KV head ranks by its own. Run as ``benchmark.run`` with the method registered:

    PYTHONPATH=. python benchmark/results/natural_val_smollm2/question_attention/qa_variants.py ARGS...
"""

import math
from dataclasses import dataclass
from functools import partial

import torch

from benchmark.methods import METHODS, scorer_method
from benchmark.run import main
from locret.compat import CACHE_KWARG
from locret.scorers import SCORERS, QuestionAttentionScorer
from locret.scorers.attending_rows import N_SINKS


def summed_attention(query, keys, columns, scored, scaling):
    """SnapKV's vote over ``columns`` (the sinks, the chunk, the question): ``[B, Hkv, n]`` for ``scored``."""
    batch, heads, rows, dim = query.shape
    kv_heads = keys.shape[1]
    grouped = query.float().view(batch, kv_heads, heads // kv_heads, rows, dim)
    logits = torch.einsum("bhgtd,bhcd->bhgtc", grouped, keys[:, :, columns].float() * scaling)
    row_positions = torch.arange(keys.shape[2] - rows, keys.shape[2])
    logits.masked_fill_(columns[None, :] > row_positions[:, None], -math.inf)
    return logits.softmax(-1)[..., scored].sum(3).mean(2)


@dataclass
class QuestionVariant(QuestionAttentionScorer):
    """Question attention, variants: the aggregation rule and a ranking shared by a band of layers."""

    rule: str = "sum"
    lo: int = 0
    hi: int = 0

    def after_attention(self, layer, query, key, scaling):
        if self._recording is None or self.rule == "max":
            return super().after_attention(layer, query, key, scaling)
        chunk, rows = self._recording["chunk"], query.shape[-2]
        older = key.shape[-2] - rows - chunk
        reach = min(N_SINKS, older)
        columns = torch.cat([torch.arange(reach), torch.arange(older, key.shape[-2])])
        scored = slice(reach, reach + chunk)
        self._recording[id(layer)] = summed_attention(query, key, columns, scored, scaling)

    @torch.no_grad()
    def rescore_chunk(self, model, cache, input_ids, start, end, hidden_states):
        if not self.hi:
            return super().rescore_chunk(model, cache, input_ids, start, end, hidden_states)
        rows = self.attending_rows(model, cache, input_ids, start, end)
        self._recording = {"chunk": end - start}
        try:
            with cache.scratch_tokens():
                model.model(input_ids=rows, use_cache=True, **{CACHE_KWARG: cache})
            scores = [self._recording[id(layer)] for layer in cache.layers]
            shared = torch.stack([s.mean(1, keepdim=True) for s in scores[self.lo : self.hi]]).mean(0)
            for layer, own in zip(cache.layers, scores, strict=True):
                received = shared.expand_as(own).clone()
                if start < N_SINKS:
                    received[..., : N_SINKS - start] = math.inf
                layer.supply_pending_scores(received)
        finally:
            self._recording = None


SCORERS["qvar"] = QuestionVariant
METHODS["qvar"] = partial(scorer_method, "qvar")

if __name__ == "__main__":
    main()
