"""The baseline scorers run through the same loop and keep what their definitions say."""

import pytest
import torch
from tiny import tiny_locret

import locret
from locret import LocretConfig
from locret.generation import new_cache
from locret.models.base import collecting_scores
from locret.scorers import SCORERS, RetainingHeadScorer, StreamingLLMScorer
from locret.scorers.base import chunk_attention_probs

CONFIG = LocretConfig(budget=24, chunk_size=8, n_stabilizers=4, n_local=4)


@pytest.mark.parametrize("name", sorted(SCORERS))
def test_every_scorer_respects_the_budget(name):
    model = tiny_locret("llama")
    cache = new_cache(model, CONFIG, scorer=SCORERS[name](), track_positions=True)
    ids = torch.randint(3, 97, (1, 150), generator=torch.Generator().manual_seed(0))
    out = locret.generate(model, ids, cache=cache, max_new_tokens=3)
    assert out.cache_length_after_prefill == CONFIG.budget + CONFIG.n_local
    for layer in cache.layers:
        positions = layer.positions[0]
        assert bool((positions[:, 1:] > positions[:, :-1]).all())


def test_streaming_llm_keeps_sinks_and_recent():
    model = tiny_locret("llama")
    cache = new_cache(model, CONFIG, scorer=StreamingLLMScorer(n_sink=4), track_positions=True)
    ids = torch.randint(3, 97, (1, 100), generator=torch.Generator().manual_seed(0))
    locret.generate(model, ids, cache=cache, max_new_tokens=1)
    prefix = 100 - CONFIG.n_local
    expected = list(range(4)) + list(range(prefix - (CONFIG.budget - 4), prefix)) + list(range(prefix, 100))
    for layer in cache.layers:
        for head in layer.positions[0]:
            assert head.tolist() == expected


def test_chunk_attention_probs_is_causal_softmax():
    torch.manual_seed(0)
    query, key = torch.randn(1, 4, 3, 8), torch.randn(1, 2, 5, 8)
    probs = chunk_attention_probs(query, key, scaling=8**-0.5)
    assert probs.shape == (1, 2, 2, 3, 5)
    assert torch.allclose(probs.sum(-1), torch.ones(1, 2, 2, 3))
    assert probs[..., 0, 3:].abs().max() == 0 and probs[..., 1, 4].abs().max() == 0
    manual = torch.softmax((query[0, 0, 0] @ key[0, 0, :3].T) * 8**-0.5, dim=-1)
    assert torch.allclose(probs[0, 0, 0, 0, :3], manual, atol=1e-6)


def test_score_pooling_takes_the_neighbourhood_maximum():
    class Head:  # scores are the features themselves: [B, T, Hkv]
        retaining_head = staticmethod(lambda features: features)

    features = torch.tensor([[[0.0, 2.0], [5.0, 0.0], [0.0, 0.0], [0.0, 0.0], [1.0, 0.0], [0.0, 3.0]]])
    pooled = RetainingHeadScorer(pool_kernel=3).score_new(Head(), features, None, None, None)
    assert pooled.tolist() == [[[5.0, 5.0, 5.0, 1.0, 1.0, 1.0], [2.0, 2.0, 0.0, 0.0, 3.0, 3.0]]]
    unpooled = RetainingHeadScorer().score_new(Head(), features, None, None, None)
    assert torch.equal(unpooled, features.transpose(1, 2))


def test_cache_scores_are_pooled_by_the_config():
    model = tiny_locret("llama")
    ids = torch.randint(3, 97, (1, 20), generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), collecting_scores(model) as sinks:
        model(ids)
    config = LocretConfig(budget=24, chunk_size=32, n_stabilizers=0, n_local=1, score_pooling=5)
    cache = new_cache(model, config)
    locret.generate(model, ids, cache=cache, max_new_tokens=1)
    for layer, sink in zip(cache.layers, sinks, strict=True):
        raw = sink[0].transpose(1, 2)  # [B, Hkv, T]
        expected = torch.nn.functional.max_pool1d(raw[..., :19], 5, stride=1, padding=2)
        assert torch.allclose(layer.scores[..., :19], expected, atol=1e-5)
        assert not torch.allclose(layer.scores[..., :19], raw[..., :19])
