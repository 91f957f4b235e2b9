"""``budget_allocation="adaptive"``: one ranking over a layer's KV heads, each head's entries left-padded to the
longest head's, the pads masked in attention."""

import copy

import pytest
import torch
from tiny import random_ids, tiny_locret

import locret
from locret import LocretConfig
from locret.cache import LocretCache
from locret.compat import CACHE_KWARG
from locret.eviction import adaptive_kept, protect_newest
from locret.generation import new_cache
from locret.scorers import RetainingHeadScorer, StreamingLLMScorer

ADAPTIVE = LocretConfig(budget=16, chunk_size=8, n_stabilizers=4, n_local=4, budget_allocation="adaptive")


def brute_force_chosen(scores: torch.Tensor, keep: int, n_protect: int) -> torch.Tensor:
    """The top ``keep x H`` entries of each row by a stable descending sort over all heads."""
    ranked = protect_newest(scores, n_protect)
    batch, heads, length = ranked.shape
    chosen = torch.zeros(batch, heads * length, dtype=torch.bool)
    for row in range(batch):
        order = torch.sort(ranked[row].flatten(), descending=True, stable=True).indices
        chosen[row, order[: keep * heads]] = True
    return chosen.view(batch, heads, length)


@pytest.mark.parametrize("seed", range(3))
def test_adaptive_kept_is_the_top_of_one_ranking_over_heads(seed):
    generator = torch.Generator().manual_seed(seed)
    scores = torch.randn(2, 3, 40, generator=generator)
    scores[:, 1] += 1.0  # head 1 wins more of the ranking
    scores[0, 2, 5] = float("nan")  # the lowest
    indices, pads = adaptive_kept(scores, None, keep=8, n_protect=3)
    chosen = brute_force_chosen(scores, 8, 3)
    assert torch.equal(pads, indices.shape[-1] - chosen.sum(-1))
    assert int(pads.min()) == 0 and (chosen.sum(-1) != 8).any()  # the longest head fills every slot
    for row in range(2):
        assert int(chosen[row].sum()) == 24
        for head in range(3):
            held = indices[row, head, int(pads[row, head]) :]
            assert held.tolist() == chosen[row, head].nonzero().flatten().tolist()  # in order
            assert held[-3:].tolist() == [37, 38, 39]  # the newest are forced in


def test_adaptive_kept_respects_pads_and_the_per_head_cap():
    scores = torch.arange(60, dtype=torch.float32).view(1, 3, 20).clone()  # head 2 scores highest
    held = torch.ones(1, 3, 20, dtype=torch.bool)
    held[0, 0, :15] = False  # head 0 holds only its last 5 slots
    indices, pads = adaptive_kept(scores, held, keep=6, n_protect=2, max_per_head=9)
    counts = indices.shape[-1] - pads
    assert counts.tolist() == [[2, 7, 9]]  # the cap stops head 2; the rest of the total goes to head 1
    assert indices[0, 0, -2:].tolist() == [18, 19]
    assert (indices[0, 0, int(pads[0, 0]) :] >= 15).all()  # pads are never chosen
    few = adaptive_kept(scores, held, keep=20, n_protect=2)[1]  # fewer held entries than the total
    assert (indices.new_tensor([[15, 0, 0]]) == few).all()


def prefilled(config: LocretConfig, scorer=None, length: int = 90) -> tuple[torch.nn.Module, LocretCache]:
    model = tiny_locret("llama")
    cache = new_cache(model, config, scorer=scorer, track_positions=True)
    locret.generate(model, random_ids(length), cache=cache, max_new_tokens=1)
    return model, cache


def test_each_layer_holds_its_total_with_unequal_heads():
    model, cache = prefilled(ADAPTIVE)
    heads = model.config.num_key_value_heads
    unequal = False
    for layer in cache.layers:
        held = layer.held_entries()[0]
        counts = held.sum(-1)
        # budget x heads after the last eviction, then the local tail and the generated token in every head
        assert int(counts.sum()) == (ADAPTIVE.budget + ADAPTIVE.n_local) * heads
        assert layer.stored_length() == int(counts.max())
        unequal |= bool((counts != counts[0]).any())
        for head in range(heads):
            positions = layer.positions[0, head][held[head]]
            assert bool((positions[1:] > positions[:-1]).all())
            assert positions[-ADAPTIVE.n_local :].tolist() == list(range(90 - ADAPTIVE.n_local, 90))
        assert torch.isneginf(layer.scores[0][~held]).all()
    assert unequal  # random heads do not split the budget evenly


def test_pad_slots_do_not_change_the_output():
    model, cache = prefilled(ADAPTIVE)
    spoiled = copy.deepcopy(cache)
    for layer in spoiled.layers:
        pads = ~layer.held_entries()[..., None]
        layer.keys = torch.where(pads, 1e3 * torch.randn_like(layer.keys), layer.keys)
        layer.values = torch.where(pads, 1e3 * torch.randn_like(layer.values), layer.values)
    assert any(bool((~layer.held_entries()).any()) for layer in cache.layers)
    question = random_ids(3, seed=5)
    logits = [model(input_ids=question, **{CACHE_KWARG: c}).logits for c in (cache, spoiled)]
    torch.testing.assert_close(logits[0], logits[1])


def test_heads_that_rank_alike_keep_what_uniform_keeps():
    """StreamingLLM scores every KV head alike, so one ranking over them splits the total evenly."""
    uniform = LocretConfig(budget=16, chunk_size=8, n_stabilizers=4, n_local=4)
    outputs = []
    for config in (uniform, ADAPTIVE):
        model, cache = prefilled(config, scorer=StreamingLLMScorer(n_sink=2))
        outputs.append((model(input_ids=random_ids(3, seed=5), **{CACHE_KWARG: cache}).logits, cache))
    (uniform_logits, uniform_cache), (adaptive_logits, adaptive_cache) = outputs
    torch.testing.assert_close(adaptive_logits, uniform_logits)
    for mine, theirs in zip(adaptive_cache.layers, uniform_cache.layers, strict=True):
        assert (mine.head_pads == 0).all()
        assert torch.equal(mine.positions, theirs.positions)


def test_decode_budget_bounds_every_step():
    config = LocretConfig(
        budget=16, chunk_size=8, n_stabilizers=4, n_local=4, decode_budget=20, budget_allocation="adaptive"
    )
    model = tiny_locret("llama")
    cache = new_cache(model, config, scorer=RetainingHeadScorer())
    out = locret.generate(model, random_ids(70), cache=cache, max_new_tokens=12)
    assert out.new_tokens.shape[-1] == 12
    heads = model.config.num_key_value_heads
    for layer in cache.layers:
        assert int(layer.held_entries().sum()) == config.decode_budget * heads


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"budget_allocation": "per_head"}, "budget_allocation must be one of"),
        ({"budget_allocation": "adaptive", "max_head_budget": 8}, "max_head_budget"),
        ({"max_head_budget": 64}, "max_head_budget"),
        ({"budget_allocation": "adaptive", "eviction_kernel": "triton"}, "torch kernel only"),
    ],
)
def test_bad_settings_are_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        LocretConfig(budget=16, n_stabilizers=4, **settings)


def test_padded_batches_are_refused():
    model = tiny_locret("llama")
    ids = random_ids(40)
    mask = torch.ones(2, 40, dtype=torch.long)
    mask[1, :5] = 0
    with pytest.raises(ValueError, match="budget_allocation='uniform'"):
        locret.generate(model, ids.expand(2, -1), ADAPTIVE, attention_mask=mask, max_new_tokens=2)


def test_sliding_window_layers_are_refused():
    model = tiny_locret("mistral")
    with pytest.raises(ValueError, match="global attention in every layer"):
        locret.generate(model, random_ids(60), ADAPTIVE, max_new_tokens=1)
