"""The online reconstruction scorer (KVzip's score inside Locret's chunked prefill) on tiny random models:
equal to the KVzip method's full-cache scores where no entry was evicted, bounded by the budget when entries
are, its scratch pass leaving the cache as it was, and clear refusals."""

from __future__ import annotations

import copy

import pytest
import torch
from tiny import random_ids, tiny_pair
from transformers import DynamicCache

import locret
from benchmark.methods.kvzip import reconstruction_scores, repeat_chunks
from locret.compat import CACHE_KWARG
from locret.config import LocretConfig
from locret.prefill import new_cache, prefill_prompt
from locret.scorers import SCORERS, ReconstructionScorer
from locret.scorers.reconstruction import N_SINKS

FIRST, LATER = [5, 6, 7], [8, 9]


class PromptTokenizer:
    """Stands in for the model's tokenizer: the reconstruction prompts as a few fixed tiny-vocabulary ids."""

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return list(FIRST) if text.startswith("\n\nRepeat the previous") else list(LATER)


def scorer() -> ReconstructionScorer:
    return ReconstructionScorer(tokenizer=PromptTokenizer())


def prefilled(model, ids: torch.Tensor, config: LocretConfig):
    return prefill_prompt(model, ids, config, cache=new_cache(model, config, scorer=scorer()))


def kvzip_scores(model, context: torch.Tensor) -> torch.Tensor:
    """The KVzip method's scores of ``context`` ``[1, n]`` (a plain cache of all of it, 16-token chunks)."""
    plain = DynamicCache()
    model.model(input_ids=context, use_cache=True, **{CACHE_KWARG: plain})
    chunks = repeat_chunks(context[0].tolist(), FIRST, LATER, chunk_size=16)
    return reconstruction_scores(model, plain, chunks, "chunk")


# Phi-3 without LongRoPE: the plain cache's repetition crosses the tiny original window (32 positions), where
# LongRoPE switches every position's frequencies; Locret's own LongRoPE handling is tested elsewhere.
@pytest.mark.parametrize("arch, overrides", [("llama", {}), ("phi3", {"longrope": False})])
@pytest.mark.parametrize("position_mode", ["repacked", "absolute"])
def test_scores_equal_kvzip_over_the_cache_each_chunk_saw(arch, overrides, position_mode):
    """With a budget above the context nothing is evicted, and each chunk is repeated over the cache as it
    stood after that chunk: the KVzip method's scores of the context up to the chunk's end (same prompts,
    same columns, same positions)."""
    model, _ = tiny_pair(arch, **overrides)
    ids = random_ids(33, seed=3)  # 32 context tokens in two chunks, then a 1-token tail
    config = LocretConfig(budget=64, chunk_size=16, n_stabilizers=4, n_local=1, position_mode=position_mode)
    cache = prefilled(model, ids, config)
    online = torch.stack([layer.scores[0] for layer in cache.layers])
    expected = torch.cat([kvzip_scores(model, ids[:, :16]), kvzip_scores(model, ids[:, :32])[..., 16:]], -1)
    assert cache.stored_length() == 32 and cache.get_seq_length() == 32  # the repeated tokens are gone
    assert torch.isinf(online[..., :N_SINKS]).all() and torch.isfinite(online[..., N_SINKS:]).all()
    torch.testing.assert_close(online, expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("allocation", ["uniform", "adaptive"])
@pytest.mark.parametrize("position_mode", ["repacked", "absolute"])
def test_evicts_to_the_budget_and_generates(allocation, position_mode):
    model, _ = tiny_pair("llama")
    ids = random_ids(70, seed=4)
    config = LocretConfig(
        budget=20,
        chunk_size=16,
        n_stabilizers=4,
        n_local=2,
        budget_allocation=allocation,
        score_pooling=3,
        position_mode=position_mode,
    )
    cache = prefilled(model, ids, config)
    for layer in cache.layers:
        held = layer.held_entries()
        kept = layer.scores.shape[-1] * layer.scores.shape[1] if held is None else int(held.sum())
        assert kept == 20 * layer.scores.shape[1]  # budget x KV heads, however a layer's heads share it
        assert layer.scratch is None and not layer.pending_scores
        if position_mode == "absolute":  # the repeated tokens' positions are gone too
            assert layer.positions.shape[-1] == layer.stored_length() and int(layer.positions.max()) < 68
    # the peak holds the budget, a chunk and its repetition (prompt + chunk), nothing more
    assert cache.peak_length() <= (20 if allocation == "uniform" else 40) + 16 + len(LATER) + 8 + 16
    out = locret.generate(
        model, ids, config, max_new_tokens=3, cache=new_cache(model, config, scorer=scorer())
    )
    assert out.sequences.shape == (1, 73)


class QuoteOnlyTokenizer(PromptTokenizer):
    """Later chunks' prompt empty, so their first repeating rows are the quoted tokens: in a random tiny model
    the earliest rows give the largest probabilities, and those rows then depend on each row's own text."""

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return list(FIRST) if text.startswith("\n\nRepeat the previous") else []


def test_each_row_of_a_batch_is_scored_as_alone():
    """Every row repeats its own chunk after its own quoted tokens: a batch of two scores as two runs."""
    model, _ = tiny_pair("llama")
    ids = torch.cat([random_ids(50, seed=11), random_ids(50, seed=12)])
    config = LocretConfig(budget=20, chunk_size=16, n_stabilizers=4, n_local=1)

    def run(rows: torch.Tensor):
        scorer = ReconstructionScorer(tokenizer=QuoteOnlyTokenizer())
        return prefill_prompt(model, rows, config, cache=new_cache(model, config, scorer=scorer))

    together = run(ids)
    for row in range(2):
        alone = run(ids[row : row + 1])
        for a, b in zip(together.layers, alone.layers, strict=True):
            torch.testing.assert_close(a.scores[row : row + 1], b.scores, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("position_mode", ["repacked", "absolute"])
def test_the_repeat_pass_leaves_the_cache_as_it_was(position_mode):
    model, _ = tiny_pair("llama")
    ids = random_ids(40, seed=5)
    config = LocretConfig(budget=24, chunk_size=16, n_stabilizers=4, n_local=1, position_mode=position_mode)
    cache = prefilled(model, ids, config)
    names = ("keys", "values", "scores", "positions")
    before = [{name: getattr(layer, name).clone() for name in names} for layer in cache.layers]
    with cache.scratch_tokens():
        model.model(input_ids=ids[:, :10], use_cache=True, **{CACHE_KWARG: cache})
        assert cache.layers[0].stored_length() == 24 + 10  # attended while the block runs
    for layer, tensors in zip(cache.layers, before, strict=True):
        assert all(torch.equal(getattr(layer, name), tensor) for name, tensor in tensors.items())
        assert layer.seen == 39 and layer.scratch is None


def test_adaptive_pads_cannot_change_the_scores():
    """With per-head pads (adaptive allocation) the repeat pass masks them, sinks included: garbage in the pad
    slots changes no score of the next chunk."""
    model, _ = tiny_pair("llama")
    ids = random_ids(90, seed=8)
    config = LocretConfig(budget=20, chunk_size=16, n_stabilizers=4, n_local=1, budget_allocation="adaptive")
    clean = prefilled(model, ids[:, :60], config)
    assert any(int(layer.head_pads.max()) > 0 for layer in clean.layers)  # some head lends slots
    dirty = copy.deepcopy(clean)
    for layer in dirty.layers:
        pads = ~layer.held_entries()[..., None]
        layer.keys = layer.keys.masked_fill(pads, 7.0)
        layer.values = layer.values.masked_fill(pads, -7.0)
    for cache in (clean, dirty):
        prefill_prompt(model, ids, config, cache=cache)
    for a, b in zip(clean.layers, dirty.layers, strict=True):
        torch.testing.assert_close(a.scores, b.scores)


def test_a_chunk_evicted_before_its_repetition_is_an_error():
    """No silent placeholder score: evicting a chunk whose scores wait for the repeat pass raises."""
    model, _ = tiny_pair("llama")
    config = LocretConfig(budget=8, chunk_size=16, n_stabilizers=2, n_local=1)
    cache = new_cache(model, config, scorer=scorer())
    cache.prefilling = True
    with cache.scorer.chunk_pass(), pytest.raises(RuntimeError, match="before it was scored"):
        model.model(input_ids=random_ids(16, seed=6), use_cache=True, **{CACHE_KWARG: cache})


def test_refuses_a_decode_budget():
    model, _ = tiny_pair("llama")
    config = LocretConfig(budget=20, chunk_size=16, n_stabilizers=4, n_local=1, decode_budget=100)
    with pytest.raises(ValueError, match="decode_budget=None"):
        prefilled(model, random_ids(40, seed=7), config)


def test_registered_for_the_benchmark():
    assert SCORERS["reconstruct"] is ReconstructionScorer and ReconstructionScorer.rescores_chunks
