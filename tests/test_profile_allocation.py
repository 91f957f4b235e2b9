"""``budget_allocation="profile"``: each KV head keeps a fixed share of the budget (``head_shares``), stored as
an adaptive allocation is (left pads, masked in attention)."""

import pytest
import torch
from tiny import random_ids, tiny_locret

import locret
from locret import LocretConfig
from locret.compat import CACHE_KWARG
from locret.eviction import profile_kept
from locret.generation import new_cache
from locret.scorers import StreamingLLMScorer


def shares(model, rows: list[float]) -> tuple[tuple[float, ...], ...]:
    """The same per-head shares in every layer of ``model``."""
    return tuple(tuple(rows) for _ in range(model.config.num_hidden_layers))


def profile_config(model, rows: list[float], **settings) -> LocretConfig:
    settings = {"budget": 16, "chunk_size": 8, "n_stabilizers": 4, "n_local": 4, **settings}
    return LocretConfig(budget_allocation="profile", head_shares=shares(model, rows), **settings)


@pytest.mark.parametrize("seed", range(3))
def test_profile_kept_is_each_heads_own_top(seed):
    generator = torch.Generator().manual_seed(seed)
    scores = torch.randn(2, 3, 40, generator=generator)
    scores[0, 2, 5] = float("nan")  # the lowest
    scores[1, 0, 10:14] = 7.0  # ties: the older ones win
    counts = torch.tensor([4, 10, 1])
    indices, pads = profile_kept(scores, None, counts, n_protect=3)
    assert torch.equal(indices.shape[-1] - pads, counts.expand(2, 3))
    for row in range(2):
        for head, count in enumerate(counts.tolist()):
            held = indices[row, head, int(pads[row, head]) :].tolist()
            protected = min(3, count)
            assert held[-protected:] == list(range(40 - protected, 40))  # the newest forced in
            rest = scores[row, head, : 40 - protected]
            order = torch.sort(rest, descending=True, stable=True).indices[: count - protected]
            assert held[: count - protected] == sorted(order.tolist())


def test_profile_kept_never_chooses_a_pad():
    scores = torch.arange(60, dtype=torch.float32).view(1, 3, 20).clone()
    held = torch.ones(1, 3, 20, dtype=torch.bool)
    held[0, 0, :15] = False  # head 0 holds only its last 5 slots
    indices, pads = profile_kept(scores, held, torch.tensor([8, 8, 2]), n_protect=2)
    assert (indices.shape[-1] - pads).tolist() == [[5, 8, 2]]
    assert indices[0, 0, int(pads[0, 0]) :].tolist() == [15, 16, 17, 18, 19]


def test_each_head_holds_its_share_after_every_eviction():
    model = tiny_locret("llama")
    config = profile_config(model, [0.5, 1.5])
    cache = new_cache(model, config, track_positions=True)
    locret.generate(model, random_ids(90), cache=cache, max_new_tokens=1)
    for layer in cache.layers:
        counts = layer.held_entries()[0].sum(-1)
        # each head's share of the budget after the last eviction, then the local tail and one new token
        assert counts.tolist() == [8 + config.n_local, 24 + config.n_local]
        assert layer.stored_length() == 24 + config.n_local


def test_small_shares_are_kept_after_every_chunk():
    """A layer whose heads all hold less than ``budget`` is evicted to their shares after every chunk, too."""
    model = tiny_locret("llama")
    config = profile_config(model, [0.25, 0.5])  # 4 and 8 entries: 8 + a chunk of 8 fits in 16 slots
    cache = new_cache(model, config)
    cache.prefilling = True
    ids = random_ids(64)
    for start in range(0, 64, config.chunk_size):
        model(input_ids=ids[:, start : start + config.chunk_size], **{CACHE_KWARG: cache})
        for layer in cache.layers:
            assert layer.held_entries()[0].sum(-1).tolist() == [4, 8]


def test_equal_shares_keep_what_uniform_keeps():
    """With every share 1 each head keeps ``budget`` entries by its own ranking: uniform's choice."""
    model = tiny_locret("llama")
    uniform = LocretConfig(budget=16, chunk_size=8, n_stabilizers=4, n_local=4)
    outputs = []
    for config in (uniform, profile_config(model, [1.0, 1.0])):
        cache = new_cache(model, config, track_positions=True)
        locret.generate(model, random_ids(90), cache=cache, max_new_tokens=1)
        outputs.append((model(input_ids=random_ids(3, seed=5), **{CACHE_KWARG: cache}).logits, cache))
    (uniform_logits, uniform_cache), (profile_logits, profile_cache) = outputs
    torch.testing.assert_close(profile_logits, uniform_logits)
    for mine, theirs in zip(profile_cache.layers, uniform_cache.layers, strict=True):
        assert (mine.head_pads == 0).all() and torch.equal(mine.positions, theirs.positions)


def test_a_head_with_a_small_share_keeps_only_the_newest():
    model = tiny_locret("llama")
    config = profile_config(model, [0.25, 1.75])
    cache = new_cache(model, config, scorer=StreamingLLMScorer(n_sink=0), track_positions=True)
    locret.generate(model, random_ids(60), cache=cache, max_new_tokens=1)
    layer = cache.layers[0]
    small = layer.positions[0, 0][layer.held_entries()[0, 0]]
    assert small.tolist() == list(range(52, 60))  # its 4 newest before the local tail, then the tail


def test_decode_budget_scales_the_shares():
    model = tiny_locret("llama")
    config = profile_config(model, [0.5, 1.5], decode_budget=20)
    cache = new_cache(model, config)
    out = locret.generate(model, random_ids(70), cache=cache, max_new_tokens=10)
    assert out.new_tokens.shape[-1] == 10
    for layer in cache.layers:
        assert layer.held_entries()[0].sum(-1).tolist() == [10, 30]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"budget_allocation": "profile"}, "needs head_shares"),
        ({"head_shares": ((1.0, 1.0),)}, "needs head_shares"),
        ({"budget_allocation": "profile", "head_shares": ((1.0, 1.0), (1.0,))}, "head_shares must be"),
        ({"budget_allocation": "profile", "head_shares": ((1.0, -1.0),)}, "head_shares must be"),
        ({"budget_allocation": "profile", "head_shares": ((1.0, float("nan")),)}, "head_shares must be"),
        ({"budget_allocation": "profile", "head_shares": ()}, "head_shares must be"),
        (
            {"budget_allocation": "profile", "head_shares": ((1.0,),), "eviction_kernel": "triton"},
            "torch kernel only",
        ),
    ],
)
def test_bad_settings_are_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        LocretConfig(budget=16, n_stabilizers=4, **settings)


def test_shares_for_another_model_are_refused():
    model = tiny_locret("llama")
    layers = model.config.num_hidden_layers
    with pytest.raises(ValueError, match="layers"):
        new_cache(model, LocretConfig(budget_allocation="profile", head_shares=((1.0, 1.0),) * (layers + 1)))
    wrong_heads = LocretConfig(
        budget=16,
        chunk_size=8,
        n_stabilizers=4,
        n_local=4,
        budget_allocation="profile",
        head_shares=((1.0, 1.0, 1.0),) * layers,
    )
    with pytest.raises(ValueError, match="KV heads"):
        locret.generate(model, random_ids(40), wrong_heads, max_new_tokens=1)
