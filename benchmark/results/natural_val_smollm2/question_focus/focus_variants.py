"""Probe variants of the question focus (``question_focus.patch`` applied first): run ``benchmark.run`` with
``locret.focus.focus_on_question`` replaced by a variant, and print per prompt how many of the needle's tokens
the focused cache still holds (the fewest over layers and KV heads, every third layer) and the reply.

Variant (environment): ``MODE=shared`` ranks entries once for all layers by the question's votes summed
over layers ``LO..HI-1`` (each layer's votes normalised to sum 1; ``perlayer``: each layer by its own);
``R`` widens each vote to ``R`` tokens either side (max pooling, after the patch's 7-token average), so a
fact's value tokens come with the words the question matches; ``PROTECT`` keeps that many newest entries.
The input's first 4 tokens are always kept.

    git apply benchmark/results/natural_val_smollm2/question_focus/question_focus.patch
    MODE=shared LO=12 HI=27 R=8 PROTECT=0 PYTHONPATH=. python \
        benchmark/results/natural_val_smollm2/question_focus/focus_variants.py <benchmark.run arguments, \
        --method surprisal:focus_budget=256>
"""

from __future__ import annotations

import os
import sys

import torch
import torch.nn.functional as F

import benchmark.methods.base as method_base
import benchmark.run as bench_run
import locret.focus as focus
import locret.generation as generation
from locret.compat import CACHE_KWARG
from locret.eviction import kept_indices
from locret.prefill import new_cache

SINKS = 4
MODE = os.environ.get("MODE", "shared")
LOW, HIGH = int(os.environ.get("LO", "0")), int(os.environ.get("HI", "30"))
RADIUS = int(os.environ.get("R", "8"))
PROTECT = int(os.environ.get("PROTECT", "0"))
current: dict = {}


def tracked_cache(model, config, scorer=None, track_positions=False):
    """Every method's cache tracks positions, so the needle's entries can be found after the focus."""
    return new_cache(model, config, scorer, True)


def recording_run_sample(case, method, model, sample, prompt, *rest):
    current["spans"] = sample.meta.get("needle_token_spans")
    record = original_run_sample(case, method, model, sample, prompt, *rest)
    print("reply", repr(record["prediction"][:40]), "score", record["score"], flush=True)
    return record


def focus_variant(model, cache, question_ids, keep, kernel_size=7):
    votes, scorer = focus._QuestionVotes(), cache.scorer
    cache.scorer = votes
    try:
        with cache.scratch_tokens():
            model.model(input_ids=question_ids, use_cache=True, **{CACHE_KWARG: cache})
    finally:
        cache.scorer = scorer
    pooled = [F.avg_pool1d(votes.votes[id(layer)], 7, 1, 3) for layer in cache.layers]
    for layer_votes in pooled:
        layer_votes[..., :SINKS] = 0
    if MODE == "shared":
        normalised = [v / v.sum(-1, keepdim=True) for v in pooled[LOW:HIGH]]
        total = torch.stack(normalised).sum(0).sum(1, keepdim=True)
        pooled = [total.expand_as(v) for v in pooled]
    if RADIUS:
        pooled = [F.max_pool1d(v, 2 * RADIUS + 1, 1, RADIUS) for v in pooled]
    ((start, end),) = current["spans"]
    held = []
    for layer, layer_votes in zip(cache.layers, pooled, strict=True):
        ranking = layer_votes.clone()
        ranking[..., :SINKS] = float("inf")
        layer.keep_entries(kept_indices(ranking, keep, PROTECT))
        inside = (layer.positions[0] >= start) & (layer.positions[0] < end)
        held.append(int(inside.sum(-1).min()))
    print("needle tokens", end - start, "held (fewest over heads), every third layer:", held[::3], flush=True)


original_run_sample = bench_run.run_sample
method_base.new_cache = tracked_cache
bench_run.run_sample = recording_run_sample
generation.focus_on_question = focus_variant

if __name__ == "__main__":
    bench_run.main(sys.argv[1:])
