"""Question focus on tiny random models: the kept entries are those the question's attention (one full eager
forward of a plain transformers model) ranks highest per layer and KV head, protected entries always kept; a
focus as large as the cache changes nothing; ``locret.generate``, ``model.generate`` and a session apply it;
clear refusals."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from tiny import random_ids, tiny_locret, tiny_pair

import locret
from locret.config import LocretConfig
from locret.focus import KERNEL_SIZE, focus_on_question
from locret.prefill import new_cache, prefill_prompt
from locret.scorers import StreamingLLMScorer

QUESTION = 8


def config(**settings) -> LocretConfig:
    return LocretConfig(
        **{"budget": 64, "chunk_size": 16, "n_stabilizers": 8, "n_local": QUESTION, **settings}
    )


@pytest.mark.parametrize("arch", ["llama", "phi3"])
def test_keeps_the_entries_the_question_attends_to_most(arch):
    """Budget above the context: nothing is evicted before the focus, so the question's votes are the
    attention weights of one full forward, summed over its tokens and each KV group's query heads, pooled."""
    model, vanilla = tiny_pair(arch, attn="eager")
    ids = random_ids(60, seed=3)
    keep, context = 20, ids.shape[1] - QUESTION
    cache = new_cache(model, config(question_focus=keep), track_positions=True)
    locret.generate(model, ids, config(question_focus=keep), cache=cache, max_new_tokens=1)
    with torch.no_grad():
        attentions = vanilla(ids, output_attentions=True).attentions
    for layer, weights in zip(cache.layers, attentions, strict=True):
        kv_heads = layer.keys.shape[1]
        votes = weights[0, :, context:, :context].reshape(kv_heads, -1, QUESTION, context).sum((1, 2))
        pooled = F.avg_pool1d(votes[None], KERNEL_SIZE, stride=1, padding=KERNEL_SIZE // 2)[0]
        expected = pooled.topk(keep, dim=-1).indices.sort(dim=-1).values
        assert torch.equal(layer.positions[0, :, :keep], expected)
        assert torch.equal(layer.positions[0, :, keep:], torch.arange(context, 60).expand(kv_heads, -1))


def test_protected_entries_are_always_kept():
    model = tiny_locret("llama")
    ids = random_ids(60, seed=4)
    settings = config(budget=24, question_focus=6)
    cache = new_cache(model, settings, scorer=StreamingLLMScorer(n_sink=4), track_positions=True)
    out = locret.generate(model, ids, settings, cache=cache, max_new_tokens=2)
    assert out.cache_length_after_prefill == 6 + QUESTION
    for layer in cache.layers:
        assert (layer.positions[0, :, :4] == torch.arange(4)).all()


def test_a_focus_as_large_as_the_cache_changes_nothing():
    model = tiny_locret("llama")
    ids = random_ids(70, seed=5)
    plain = locret.generate(model, ids, config(budget=24), max_new_tokens=6)
    focused = locret.generate(model, ids, config(budget=24, question_focus=24), max_new_tokens=6)
    assert torch.equal(plain.sequences, focused.sequences)
    assert focused.cache_length_after_prefill == plain.cache_length_after_prefill == 24 + QUESTION


def test_model_generate_and_a_session_focus_like_locret_generate():
    model = tiny_locret("llama")
    ids = random_ids(80, seed=6)
    settings = config(budget=32, question_focus=10)
    expected = locret.generate(model, ids, settings, max_new_tokens=5).sequences
    through_hf = model.generate(ids, locret_config=settings, max_new_tokens=5, do_sample=False)
    assert torch.equal(through_hf, expected)
    session = locret.Session(model, settings)
    session.feed(ids[0, :-QUESTION])
    assert torch.equal(session.ask(ids[0, -QUESTION:], max_new_tokens=5).token_ids, expected[0, 80:])


def test_refusals():
    with pytest.raises(ValueError, match="question_focus"):
        config(question_focus=0)
    with pytest.raises(ValueError, match="question_focus"):
        config(question_focus=8, budget_allocation="adaptive")
    model = tiny_locret("llama")
    cache = prefill_prompt(model, random_ids(40), config(n_local=0))
    with pytest.raises(ValueError, match="needs the question"):
        focus_on_question(model, cache, random_ids(40)[:, 40:], 8)
