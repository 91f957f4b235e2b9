"""What both per-head budget allocations (``budget_allocation`` "adaptive" / "profile") share: a cache whose KV
heads hold different numbers of entries attends one KV head at a time over its own entries under SDPA
(``_attend_heads_apart``), the same attention as one call over the padded slots with the pads masked
(``mask_pads``), which other attention functions and batches use; and a saved session keeps its pads."""

import pytest
import torch
from tiny import random_ids, tiny_locret

from locret import LocretConfig, Session
from locret.compat import CACHE_KWARG
from locret.generation import new_cache
from locret.models import base

SETTINGS = {"budget": 16, "chunk_size": 8, "n_stabilizers": 4, "n_local": 4}


def allocation_config(model, allocation: str, **settings) -> LocretConfig:
    if allocation == "adaptive":
        return LocretConfig(budget_allocation="adaptive", **SETTINGS, **settings)
    # layer 0's heads all hold less than the others' smallest: it is first evicted a chunk earlier
    rows = ((0.25, 0.25),) + tuple((0.5, 1.5) for _ in range(model.config.num_hidden_layers - 1))
    return LocretConfig(budget_allocation="profile", head_shares=rows, **SETTINGS, **settings)


def run(model, config: LocretConfig, ids: torch.Tensor, apart: bool, monkeypatch) -> tuple[list, object]:
    """The logits of a chunked prefill of ``ids[:, :-3]`` followed by three one-token steps, and the cache,
    with heads attended apart or all at once over the padded slots; asserts which path ran."""
    calls = []
    real = base.LocretAttentionMixin._attend_heads_apart

    def spy(self, *args, **kwargs):
        calls.append(1)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(base, "attends_heads_apart", lambda *args: apart)
    monkeypatch.setattr(base.LocretAttentionMixin, "_attend_heads_apart", spy)
    cache = new_cache(model, config, track_positions=config.position_mode == "absolute")
    cache.prefilling = True
    logits = []
    with torch.no_grad():
        prompt = ids[:, :-3]
        for start in range(0, prompt.shape[1], config.chunk_size):
            chunk = prompt[:, start : start + config.chunk_size]
            logits.append(model(input_ids=chunk, **{CACHE_KWARG: cache}).logits)
        cache.prefilling = False
        for step in range(-3, 0):
            logits.append(model(input_ids=ids[:, step:][:, :1], **{CACHE_KWARG: cache}).logits)
    assert bool(calls) == apart
    return logits, cache


@pytest.mark.parametrize("allocation", ["adaptive", "profile"])
@pytest.mark.parametrize("position_mode", ["repacked", "absolute"])
@pytest.mark.parametrize("decode_budget", [None, 12])
def test_heads_apart_equal_the_masked_padded_slots(allocation, position_mode, decode_budget, monkeypatch):
    model = tiny_locret("llama")
    config = allocation_config(model, allocation, position_mode=position_mode, decode_budget=decode_budget)
    ids = random_ids(75)
    apart, apart_cache = run(model, config, ids, True, monkeypatch)
    masked, masked_cache = run(model, config, ids, False, monkeypatch)
    assert any(int(layer.head_pads.max()) > 0 for layer in apart_cache.layers)  # heads of unequal lengths
    for mine, theirs in zip(apart, masked, strict=True):
        torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-5)
    for mine, theirs in zip(apart_cache.layers, masked_cache.layers, strict=True):
        assert torch.equal(mine.head_pads, theirs.head_pads)
        torch.testing.assert_close(mine.keys, theirs.keys)


@pytest.mark.parametrize(
    ("implementation", "batch", "expected"),
    [("sdpa", 1, True), ("eager", 1, False), ("sdpa", 2, False), ("flash_attention_2", 1, False)],
)
def test_heads_are_attended_apart_only_by_sdpa_for_one_sequence(implementation, batch, expected):
    assert base.attends_heads_apart(implementation, torch.zeros(batch, 3, dtype=torch.long)) is expected


def test_causal_mask_is_a_view_of_one_growing_table():
    model = tiny_locret("llama")
    cache = new_cache(model, LocretConfig(**SETTINGS))
    lowest = torch.finfo(torch.float32).min
    for new, stored in [(3, 5), (3, 4), (3, 9), (3, 20), (2, 6), (3, 7)]:
        mask = cache.causal_mask(new, stored, torch.float32, torch.device("cpu"))
        visible = torch.ones(new, stored, dtype=torch.bool).tril(stored - new)
        assert torch.equal(mask, torch.zeros(new, stored).masked_fill(~visible, lowest))
    assert cache._causal_table.shape == (3, 7)  # rebuilt for the new query length
    cache.causal_mask(3, 5, torch.float32, torch.device("cpu"))
    assert cache.causal_mask(3, 4, torch.float32, torch.device("cpu"))._base is cache._causal_table


@pytest.mark.parametrize("allocation", ["adaptive", "profile"])
def test_a_saved_per_head_session_answers_as_before(allocation, tmp_path):
    model = tiny_locret("llama")
    config = allocation_config(model, allocation)
    session = Session(model, config)
    session.feed(random_ids(100))
    loaded = Session.load(session.save(tmp_path / "session.safetensors"), model)
    assert loaded.config == config
    if allocation == "profile":  # JSON lists back as tuples
        assert isinstance(loaded.config.head_shares[0], tuple)
    for mine, theirs in zip(loaded.cache.layers, session.cache.layers, strict=True):
        assert torch.equal(mine.head_pads, theirs.head_pads)
    question = random_ids(4, seed=3)
    assert torch.equal(
        loaded.ask(question, max_new_tokens=6).token_ids, session.ask(question, max_new_tokens=6).token_ids
    )
