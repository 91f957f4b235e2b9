"""The KVzip benchmark method on tiny random Llamas: its scores against a brute-force eager computation, its
budgets, its masking against a truly compacted cache, and the question protocol."""

from __future__ import annotations

import math

import pytest
import torch
from tiny import random_ids, tiny_pair
from transformers import DynamicCache

from benchmark.methods import get_method
from benchmark.methods.kvzip import (
    N_SINKS,
    GivenScores,
    KVzip,
    global_quotas,
    head_scores,
    keep_mask,
    masked_entries,
    recency_scores,
    reconstruction_scores,
    repeat_chunks,
    token_scores,
)
from locret.config import LocretConfig
from locret.prefill import new_cache, prefill_prompt

FIRST, LATER = [5, 6, 7], [8, 9]


class PromptTokenizer:
    """Stands in for the model's tokenizer: the reconstruction prompts as a few fixed tiny-vocabulary ids."""

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return list(FIRST) if text.startswith("\n\nRepeat the previous") else list(LATER)


@pytest.fixture(scope="module")
def eager_model():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    model, _ = tiny_pair("llama", attn="eager")
    yield model
    torch.set_num_threads(threads)


def prefilled(model, context: torch.Tensor) -> DynamicCache:
    cache = DynamicCache()
    model.model(input_ids=context, use_cache=True, past_key_values=cache)
    return cache


def brute_force_scores(model, context: list[int], chunks, normalise: str) -> torch.Tensor:
    """Each chunk as one plain eager forward of context + chunk, its attention weights read back: the max
    over the chunk's rows and each group's query heads, renormalised over KVzip's columns for ``chunk``."""
    config = model.config
    n = len(context)
    group = config.num_attention_heads // config.num_key_value_heads
    scores = torch.zeros(config.num_hidden_layers, config.num_key_value_heads, n)
    for chunk in chunks:
        ids = torch.tensor([context + list(chunk.ids)])
        weights = model.model(input_ids=ids, output_attentions=True).attentions
        rows = slice(n, n + len(chunk.ids))
        for layer, attention in enumerate(weights):
            w = attention[0, :, rows].double()  # [H, T, n + T]
            if normalise == "chunk":
                columns = [*range(min(N_SINKS, chunk.start)), *range(chunk.start, chunk.end)]
                columns += list(range(n, n + len(chunk.ids)))
                w = w[..., columns] / w[..., columns].sum(-1, keepdim=True)
                context_columns = columns[: -len(chunk.ids)]
            else:
                context_columns = list(range(n))
            best = w[..., : len(context_columns)].amax(dim=1)  # over rows: [H, c]
            best = best.view(config.num_key_value_heads, group, -1).amax(dim=1).float()
            current = scores[layer][:, context_columns]
            scores[layer][:, context_columns] = torch.maximum(current, best)
    scores[..., :N_SINKS] = float("inf")
    return scores


def test_repeat_chunks_follow_kvzip():
    chunks = repeat_chunks(list(range(100, 130)), FIRST, LATER, chunk_size=12)
    assert [(c.start, c.end) for c in chunks] == [(0, 12), (12, 24), (24, 30)]
    assert chunks[0].ids == (*FIRST, *range(100, 112))
    assert chunks[1].ids == (*LATER, *range(104, 112), *range(112, 124))  # the last 8 tokens quoted


@pytest.mark.parametrize("normalise", ["chunk", "all"])
def test_scores_equal_brute_force_eager_attention(eager_model, normalise):
    context = random_ids(40, seed=1)
    chunks = repeat_chunks(context[0].tolist(), FIRST, LATER, chunk_size=16)
    cache = prefilled(eager_model, context)
    scores = reconstruction_scores(eager_model, cache, chunks, normalise)
    expected = brute_force_scores(eager_model, context[0].tolist(), chunks, normalise)
    assert scores.shape == (2, 2, 40) and cache.get_seq_length() == 40  # the chunks were cropped off
    torch.testing.assert_close(scores, expected, rtol=1e-4, atol=1e-6)
    assert (scores[..., N_SINKS:] > 0).all() and (scores[..., N_SINKS:] <= 1).all()


def test_normalising_over_the_chunk_raises_every_score():
    """KVzip's softmax runs over fewer columns than the whole cache, so no probability can be smaller."""
    model, _ = tiny_pair("llama")
    context = random_ids(40, seed=2)
    chunks = repeat_chunks(context[0].tolist(), FIRST, LATER, chunk_size=16)
    local = reconstruction_scores(model, prefilled(model, context), chunks, "chunk")
    everything = reconstruction_scores(model, prefilled(model, context), chunks, "all")
    assert (local[..., N_SINKS:] >= everything[..., N_SINKS:] - 1e-6).all()
    assert (local[..., N_SINKS:] > everything[..., N_SINKS:] + 1e-4).any()


def test_uniform_keeps_the_budget_per_head_and_global_the_same_total():
    scores = torch.rand(3, 2, 50, generator=torch.Generator().manual_seed(0))
    scores[0] *= 10  # layer 0 wins most of a global ranking
    uniform, global_ = keep_mask(scores, 8, "uniform"), keep_mask(scores, 8, "global")
    assert (uniform.sum(-1) == 8).all()
    assert global_.sum() == uniform.sum() == 8 * 3 * 2
    assert global_[0].sum() > 16 and not torch.equal(global_, uniform)
    threshold = scores[global_].min()
    assert (scores[~global_] <= threshold).all()  # the global mask is the top of one ranking
    assert keep_mask(scores, 50, "global").all() and keep_mask(scores, 60, "uniform").all()
    with pytest.raises(ValueError, match="allocation"):
        keep_mask(scores, 8, "per_layer")


def test_layer_allocation_gives_each_layer_its_global_share_per_head():
    scores = torch.rand(3, 2, 50, generator=torch.Generator().manual_seed(0))
    scores[0] *= 10  # layer 0 wins most of a global ranking
    global_, layer = keep_mask(scores, 8, "global"), keep_mask(scores, 8, "layer")
    per_head = layer.sum(-1)
    assert (per_head == per_head[:, :1]).all()  # one length per layer
    assert torch.equal(per_head[:, 0], (global_.sum(dim=(1, 2)) // 2).clamp(min=1))
    assert per_head[0, 0] > 8 > per_head[1, 0]
    for index in range(3):  # each head keeps its own top entries
        count = int(per_head[index, 0])
        assert torch.equal(layer[index], keep_mask(scores[index : index + 1], count, "uniform")[0])


def test_head_allocation_keeps_each_layers_total_ranked_over_its_heads():
    scores = torch.rand(3, 2, 50, generator=torch.Generator().manual_seed(0))
    scores[:, 0] *= 10  # head 0 of every layer wins most of its layer's ranking
    head = keep_mask(scores, 8, "head")
    assert (head.sum(dim=(1, 2)) == 16).all()  # each layer's total is fixed
    assert (head[:, 0].sum(-1) > 8).all() and (head[:, 1].sum(-1) < 8).all()
    for index in range(3):  # the top of one ranking over the layer's heads
        assert (scores[index][~head[index]].max() <= scores[index][head[index]].min()).all()


def test_token_allocation_keeps_the_same_tokens_everywhere_by_mean_rank():
    scores = torch.rand(3, 2, 50, generator=torch.Generator().manual_seed(0))
    scores[..., 7] = 2.0  # first in every layer and head
    scores[0, 0, 9] = 3.0  # first in one head only, last elsewhere
    scores[1:, :, 9] = scores[0, 1:, 9] = -1.0
    scores[..., 0] = math.inf  # a sink
    kept = keep_mask(scores, 8, "token")
    assert (kept.sum(-1) == 8).all() and (kept == kept[:1, :1]).all()  # the same 8 tokens in every head
    assert kept[0, 0, 0] and kept[0, 0, 7] and not kept[0, 0, 9]
    mean_rank = token_scores(scores)[0, 0]
    assert (mean_rank[~kept[0, 0]].max() <= mean_rank[kept[0, 0]].min()).all()


def test_profile_keeps_each_heads_quota_of_its_own_top_entries():
    scores = torch.rand(3, 2, 50, generator=torch.Generator().manual_seed(0))
    scores[1, 0] *= 10
    quotas = global_quotas(scores, 8)
    assert quotas.shape == (3, 2) and quotas.mean() == pytest.approx(1.0) and quotas[1, 0] > 1
    profiled, global_ = keep_mask(scores, 8, "profile", quotas), keep_mask(scores, 8, "global")
    some = quotas > 0  # the global ranking's own shares give its mask back; an empty head keeps one entry
    assert torch.equal(profiled[some], global_[some]) and (profiled[~some].sum(-1) == 1).all()
    quota = torch.tensor([[0.5, 2.0], [1.0, 0.0], [10.0, 1.0]])
    kept = keep_mask(scores, 8, "profile", quota)
    assert kept.sum(-1).tolist() == [[4, 16], [8, 1], [50, 8]]  # at least one entry, at most all
    for layer in range(3):
        for head in range(2):
            chosen = scores[layer, head][kept[layer, head]]
            assert (scores[layer, head][~kept[layer, head]] <= chosen.min()).all()
    tied = keep_mask(torch.zeros(1, 2, 10), 2, "profile", torch.tensor([[1.5, 2.0]]))
    assert tied[0].nonzero()[:, 1].tolist() == [0, 1, 2, 0, 1, 2, 3]  # ties go to the older entries
    with pytest.raises(ValueError, match="quota"):
        keep_mask(scores, 8, "profile", torch.ones(2, 2))
    with pytest.raises(ValueError, match="profile"):
        keep_mask(scores, 8, "uniform", quota)


def test_recency_scores_keep_the_sinks_and_the_newest():
    config = type("Config", (), {"num_key_value_heads": 2, "num_attention_heads": 4, "num_hidden_layers": 3})
    kept = keep_mask(recency_scores(config, 40, "cpu"), 10, "uniform")
    expected = torch.zeros(40, dtype=torch.bool)
    expected[:N_SINKS] = expected[-(10 - N_SINKS) :] = True
    assert kept.shape == (3, 2, 40) and (kept == expected).all()


def test_masked_entries_equal_a_compacted_cache():
    """Masking the evicted entries gives the logits of a cache that holds only the kept ones."""
    model, _ = tiny_pair("llama")
    context, question = random_ids(40, seed=3), random_ids(5, seed=4)
    scores = torch.rand(2, 2, 40, generator=torch.Generator().manual_seed(1))
    keep = keep_mask(scores, 12, "uniform")
    cache = prefilled(model, context)
    with masked_entries(model, keep):
        masked = model(input_ids=question, past_key_values=cache, use_cache=True).logits
        step = model(input_ids=question[:, :1], past_key_values=cache, use_cache=True).logits
    compact = DynamicCache()
    full = prefilled(model, context)
    for index, layer in enumerate(full.layers):
        rows = keep[index].nonzero()[:, 1].view(2, 12)  # kept positions per KV head, in order
        keys = layer.keys[0].gather(1, rows[..., None].expand(-1, -1, layer.keys.shape[-1]))[None]
        values = layer.values[0].gather(1, rows[..., None].expand(-1, -1, layer.values.shape[-1]))[None]
        compact.update(keys, values, index)
    positions = torch.arange(40, 46)[None]
    expected = model(input_ids=question, past_key_values=compact, position_ids=positions[:, :5]).logits
    expected_step = model(
        input_ids=question[:, :1], past_key_values=compact, position_ids=positions[:, 5:]
    ).logits
    torch.testing.assert_close(masked, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(step, expected_step, rtol=1e-5, atol=1e-5)
    with masked_entries(model, torch.zeros_like(keep)):  # nothing kept: the logits change
        unseen = model(input_ids=question, past_key_values=prefilled(model, context)).logits
    assert not torch.allclose(unseen, masked, atol=1e-3)


def test_method_with_room_for_everything_generates_as_the_plain_model():
    model, vanilla = tiny_pair("llama")
    ids = random_ids(60, seed=5)
    method = KVzip(allocation="global", chunk=16, tokenizer=PromptTokenizer())
    config = LocretConfig(budget=100, chunk_size=16, n_stabilizers=0, n_local=6)
    out = method.generate(model, ids, config, max_new_tokens=5, eos_token_id=[])
    expected = vanilla.generate(ids, max_new_tokens=5, do_sample=False, eos_token_id=None, pad_token_id=0)
    assert torch.equal(out.sequences, expected)
    assert out.cache_length_after_prefill == 60  # 54 context entries kept, 6 question tokens


@pytest.mark.parametrize("allocation", ["uniform", "global"])
def test_the_question_is_not_seen_before_compression(monkeypatch, allocation):
    """Scores and kept entries come from the context alone: two questions on it keep the same entries."""
    model, _ = tiny_pair("llama")
    method = get_method(f"kvzip:allocation={allocation}:chunk=16")
    method.tokenizer = PromptTokenizer()
    seen = []
    compress = method.compress
    monkeypatch.setattr(method, "compress", lambda m, c, cfg: seen.append(compress(m, c, cfg)) or seen[-1])
    context = random_ids(50, seed=6)
    config = LocretConfig(budget=10, chunk_size=16, n_stabilizers=0, n_local=4)
    for seed in (7, 8):
        out = method.generate(model, torch.cat([context, random_ids(4, seed=seed)], 1), config, 3)
        assert out.new_tokens.shape == (1, 3)
    assert all(s.scores.shape[-1] == 50 for s in seen)
    assert torch.equal(seen[0].keep, seen[1].keep) and seen[0].keep.sum() == 10 * 2 * 2
    assert method.name == f"kvzip:allocation={allocation}:chunk=16"
    assert method.params()["allocation"] == allocation


def test_head_scores_are_the_heads_on_each_entry_pooled_whatever_the_chunking(eager_model):
    """``scores=heads``: every entry's score is its layer's retaining head on that token (as Locret scores it),
    max-pooled over its neighbours; chunking the prefill changes nothing."""
    context = random_ids(40, seed=3)
    _, whole = head_scores(eager_model, context, chunk_size=40, pooling=1)
    _, chunked = head_scores(eager_model, context, chunk_size=7, pooling=1)
    torch.testing.assert_close(whole, chunked, atol=1e-5, rtol=1e-5)
    assert whole.shape == (eager_model.config.num_hidden_layers, eager_model.config.num_key_value_heads, 40)
    assert torch.isinf(whole[..., :N_SINKS]).all() and torch.isfinite(whole[..., N_SINKS:]).all()
    _, pooled = head_scores(eager_model, context, chunk_size=40, pooling=3)
    first = N_SINKS + 1  # past the sinks' neighbours (+inf here)
    neighbours = torch.stack([whole[..., first - 1 : -2], whole[..., first:-1], whole[..., first + 1 :]])
    torch.testing.assert_close(pooled[..., first:-1], neighbours.amax(0))
    method = get_method("kvzip:scores=heads:allocation=global")
    assert method.heads == "trained" and method.params()["scores"] == "heads"


def test_given_scores_decide_what_locrets_cache_keeps():
    """``evict=locret``'s scorer: scores by absolute position; the oldest-favouring scores keep the oldest
    entries (and the protected newest), whatever the chunking."""
    model, _ = tiny_pair("llama")
    context = 50
    scores = -torch.arange(context, dtype=torch.float32).expand(2, 2, context)  # older is better
    config = LocretConfig(budget=20, chunk_size=16, n_stabilizers=4, n_local=1)
    cache = new_cache(model, config, scorer=GivenScores(scores), track_positions=True)
    prefill_prompt(model, random_ids(context + 1, seed=9), config, cache=cache)
    expected = torch.tensor([*range(16), *range(46, 50)])  # the best 16, then the 4 newest
    assert all(torch.equal(layer.positions[0, h], expected) for layer in cache.layers for h in range(2))


def test_token_scores_make_locrets_cache_keep_the_same_tokens_in_every_layer_and_head():
    model, _ = tiny_pair("llama")
    context = 50
    scores = torch.rand(2, 2, context, generator=torch.Generator().manual_seed(1))  # heads disagree
    config = LocretConfig(budget=20, chunk_size=16, n_stabilizers=4, n_local=1)
    cache = new_cache(model, config, scorer=GivenScores(token_scores(scores)), track_positions=True)
    prefill_prompt(model, random_ids(context + 1, seed=9), config, cache=cache)
    first = cache.layers[0].positions[0, 0]
    assert len(first) == 20
    assert all(torch.equal(layer.positions[0, h], first) for layer in cache.layers for h in range(2))


@pytest.mark.parametrize(
    "allocation, positions", [("uniform", "repacked"), ("head", "absolute"), ("token", "repacked")]
)
def test_evict_in_locret_runs_locrets_cache_with_kvzips_scores(allocation, positions):
    model, _ = tiny_pair("llama")
    method = get_method(f"kvzip:evict=locret:allocation={allocation}:positions={positions}:chunk=16")
    method.tokenizer = PromptTokenizer()
    config = LocretConfig(budget=12, chunk_size=16, n_stabilizers=4, n_local=4)
    out = method.generate(model, random_ids(60, seed=10), config, max_new_tokens=3)
    assert out.new_tokens.shape == (1, 3)
    assert out.config.budget_allocation == ("adaptive" if allocation == "head" else "uniform")
    assert out.config.position_mode == positions
    assert 12 + 4 <= out.cache_length_after_prefill <= 12 * 2 + 4  # the budget (adaptive: longest head's)
    assert method.params()["evict"] == "locret" and "evict" not in get_method("kvzip").params()


def test_bad_settings_are_rejected():
    with pytest.raises(ValueError, match="allocation"):
        get_method("kvzip:allocation=kv_head")
    with pytest.raises(ValueError, match="normalise"):
        get_method("kvzip:normalise=row")
    with pytest.raises(ValueError, match="chunk"):
        get_method("kvzip:chunk=0")
    with pytest.raises(ValueError, match="scores"):
        get_method("kvzip:scores=labels")
    with pytest.raises(ValueError, match="pooling"):
        get_method("kvzip:scores=heads:pooling=4")
    with pytest.raises(ValueError, match="evict"):
        get_method("kvzip:evict=drop")
    with pytest.raises(ValueError, match="evict=locret takes allocation"):
        get_method("kvzip:evict=locret:allocation=global")
    with pytest.raises(ValueError, match="positions"):
        get_method("kvzip:positions=absolute")  # the masked compression keeps true positions anyway
    with pytest.raises(ValueError, match="profile=NAME"):
        get_method("kvzip:allocation=profile")
    with pytest.raises(ValueError, match="no head budget profile"):
        get_method("kvzip:allocation=profile:profile=not_a_profile")


def test_needle_rank_reports_percentiles_and_kept_shares():
    from benchmark.kvzip_needle_rank import percentiles, summarise_span

    assert percentiles(torch.tensor([0.1, 0.5, 0.3])).tolist() == [0.0, 100.0, 50.0]
    scores = torch.rand(2, 3, 40, generator=torch.Generator().manual_seed(2))
    scores[..., 10:13] += torch.tensor([[5.0], [1.0]])[..., None]  # the "needle": high, higher in layer 0
    scores[1, :, 20:23] = 10.0  # layer 1's own top 3, above everything
    report = summarise_span(scores, (10, 13), budget=3)
    assert report["tokens"] == 3 and report["head_percentile_mean"] > 85
    assert report["uniform_kept_share"] == 0.5 and report["uniform_heads_keeping_all"] == 3
    assert report["global_kept_share"] == 0.5 and report["global_kept_by_layer"] == [1.0, 0.0]


def test_needle_rank_measures_how_much_of_kvzips_selection_the_heads_keep():
    from benchmark.kvzip_needle_rank import imitation

    kvzip = torch.rand(2, 3, 40, generator=torch.Generator().manual_seed(3))
    kvzip[..., 10:13] = -1.0
    kvzip[:, 1, 10:13] = 5.0  # the needle's value: kept by head 1 of every layer, by no other head
    same = imitation(kvzip, kvzip.clone(), (10, 13), budget=4)
    assert same["kvzip_kept_overlap"] == 1.0
    assert same["value_kept_share_kvzip"] == same["value_kept_share_heads"] == pytest.approx(1 / 3)
    blind = kvzip.clone()
    blind[..., 10:13] = -10.0  # heads that miss the needle and agree on everything else
    missed = imitation(kvzip, blind, (10, 13), budget=4)
    assert missed["kvzip_kept_overlap"] == pytest.approx(9 / 12) and missed["value_kept_share_heads"] == 0.0
