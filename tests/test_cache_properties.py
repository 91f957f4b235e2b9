"""Invariants of the evicting cache over random settings (hypothesis)."""

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tiny import tiny_locret

from locret import LocretConfig, prefill_prompt
from locret.cache import LocretCache, LocretLayer
from locret.eviction import kept_indices
from locret.generation import new_cache

MODELS = {arch: tiny_locret(arch) for arch in ("llama", "phi3")}


@st.composite
def settings_and_length(draw):
    budget = draw(st.integers(2, 40))
    config = LocretConfig(
        budget=budget,
        chunk_size=draw(st.integers(1, 24)),
        n_stabilizers=draw(st.integers(0, budget - 1)),
        n_local=draw(st.integers(0, 12)),
        position_mode=draw(st.sampled_from(["repacked", "absolute"])),
    )
    return config, draw(st.integers(1, 120)), draw(st.sampled_from(sorted(MODELS)))


class Recorder:
    """Wraps LocretLayer.update/evict to observe every layer after each append and each eviction."""

    def __init__(self, monkeypatch):
        self.after_update, self.evictions = [], []
        original_update, original_evict = LocretLayer.update, LocretLayer.evict
        recorder = self

        def update(layer, *args, **kwargs):
            out = original_update(layer, *args, **kwargs)
            recorder.after_update.append(layer.stored_length())
            return out

        def evict(layer, keep, n_protect, kernel="torch"):
            before = layer.positions.clone()
            original_evict(layer, keep, n_protect, kernel)
            recorder.evictions.append((before, layer.positions.clone(), keep, n_protect))

        monkeypatch.setattr(LocretLayer, "update", update)
        monkeypatch.setattr(LocretLayer, "evict", evict)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=settings_and_length())
def test_prefill_invariants(monkeypatch, case):
    config, length, arch = case
    model = MODELS[arch]
    with monkeypatch.context() as patch:
        recorder = Recorder(patch)
        ids = torch.randint(3, 97, (1, length), generator=torch.Generator().manual_seed(length))
        cache = new_cache(model, config, track_positions=True)
        with torch.no_grad():
            prefill_prompt(model, ids, config, cache=cache)
            prefix = cache.get_seq_length()
            assert all(n <= config.budget + config.chunk_size for n in recorder.after_update)
            model(ids[:, prefix:], past_key_values=cache, use_cache=True)
    tail = torch.arange(length - config.n_local, length) if config.n_local else torch.arange(0)
    tail = tail[tail >= 0]
    for layer in cache.layers:
        assert layer.stored_length() <= config.budget + max(config.n_local, 1)
        positions = layer.positions[0]
        assert bool((positions[:, 1:] > positions[:, :-1]).all()), "retained entries must keep their order"
        for head in positions:
            assert set(tail.tolist()) <= set(head.tolist()), "the local tail must never be evicted"
    for before, after, keep, n_protect in recorder.evictions:
        newest = before[..., before.shape[-1] - min(n_protect, keep) :]
        for b_newest, b_after in zip(newest.flatten(0, -2), after.flatten(0, -2), strict=True):
            assert set(b_newest.tolist()) <= set(b_after.tolist()), "stabilizers must survive eviction"


@settings(max_examples=60, deadline=None)
@given(
    scores=st.lists(st.integers(-1000, 1000), min_size=1, max_size=30, unique=True),
    keep_fraction=st.floats(0.05, 1.0),
    n_protect=st.integers(0, 10),
)
def test_kept_indices_is_top_k_in_order(scores, keep_fraction, n_protect):
    keep = max(1, int(len(scores) * keep_fraction))
    n_protect = min(n_protect, keep)
    tensor = torch.tensor(scores, dtype=torch.float32)[None, None]
    got = kept_indices(tensor, keep, n_protect)[0, 0].tolist()
    protected = set(range(len(scores) - n_protect, len(scores)))
    ranked = sorted(range(len(scores)), key=lambda i: (i not in protected, -scores[i]))
    assert got == sorted(ranked[:keep])


def test_heads_evict_independently():
    layer = LocretLayer(track_positions=True)
    keys = torch.randn(1, 2, 6, 4)
    scores = torch.tensor([[[0, 5, 1, 4, 2, 3], [5, 0, 4, 1, 3, 2]]], dtype=torch.float32)
    layer.update(keys, keys.clone(), scores=scores)
    layer.evict(keep=3, n_protect=0)
    assert layer.positions.tolist() == [[[1, 3, 5], [0, 2, 4]]]
    assert torch.equal(layer.keys[0, 0], keys[0, 0, [1, 3, 5]])
    assert torch.equal(layer.keys[0, 1], keys[0, 1, [0, 2, 4]])


def test_evicting_layers_together_equals_evicting_each():
    """``LocretCache.evict_together`` (one ranking for the layers of one length) keeps what each layer's own
    eviction keeps, with ties and a NaN among the scores, and layers of other lengths ranked apart."""
    config = LocretConfig(budget=5, chunk_size=4, n_stabilizers=2)
    generator = torch.Generator().manual_seed(0)
    lengths = [9, 9, 7, 9]
    together, alone = LocretCache(config, len(lengths)), LocretCache(config, len(lengths))
    for index, length in enumerate(lengths):
        keys = torch.randn(1, 2, length, 4, generator=generator)
        scores = torch.randint(0, 4, (1, 2, length), generator=generator).float()  # many ties
        scores[0, 0, 1] = float("nan")
        for cache in (together, alone):
            cache.layers[index].update(keys, keys + 1, scores=scores)
    together.evict_together(config.budget)
    for layer in alone.layers:
        layer.evict(config.budget, config.n_stabilizers)
    for mine, theirs in zip(together.layers, alone.layers, strict=True):
        assert mine.stored_length() == theirs.stored_length() == config.budget
        for name in ("keys", "values", "scores"):
            assert torch.equal(getattr(mine, name), getattr(theirs, name)), name
