"""Benchmark methods on a tiny random Llama: one interface, the same loop, LongHeads' attention path."""

from __future__ import annotations

import json

import pytest
import torch
from tiny import tiny_pair

import locret
from benchmark import longheads
from benchmark.methods import METHODS, get_method
from benchmark.methods.base import ScorerMethod
from locret.cache import LocretCache
from locret.scorers import SCORERS


@pytest.fixture(scope="module")
def pair():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread is fastest, and the machine is shared
    yield tiny_pair("llama")
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def ids():
    return torch.randint(0, 97, (1, 150), generator=torch.Generator().manual_seed(0))


def test_registry_names_every_method():
    assert set(METHODS) == {
        "full",
        "closed_book",
        "kvzip",
        "locret",
        "locret_pooled",
        "locret_random",
        "locret_random_pooled",
        "streaming_llm",
        "h2o",
        "snapkv",
        "reconstruct",
        "surprisal",
        "lines",
        "longheads",
        "needle_oracle",
        "passage_oracle",
    }
    for name in METHODS:
        method = get_method(name)
        assert method.name == name and method.description and method.params()["name"] == name
    with pytest.raises(ValueError, match="unknown method"):
        get_method("nope")


def test_a_setting_of_none_reaches_the_scorer_as_none():
    shared = get_method("surprisal:surprising_share=0.25").make_scorer()
    plain = get_method("surprisal:surprising_share=none").make_scorer()
    assert shared.surprising_share == 0.25 and plain.surprising_share is None and not plain.needs_positions


@pytest.mark.parametrize(
    "name",
    ["locret", "locret_pooled", "locret_random", "locret_random_pooled", "streaming_llm", "h2o", "snapkv"],
)
def test_eviction_methods_share_the_loop_and_the_budget(pair, ids, name):
    model, _ = pair
    method = get_method(name)
    config = method.locret_config(budget=32, chunk_size=16, n_stabilizers=8, n_local=6, prompt_length=150)
    cache = method.make_cache(model, config)
    assert isinstance(cache, LocretCache) and type(cache.scorer) is SCORERS[method.scorer]
    out = method.generate(model, ids, config, max_new_tokens=3)
    assert out.new_tokens.shape == (1, 3)
    assert out.cache_length_after_prefill == 32 + 6  # budget + the protected local tail (the question)
    assert method.fits(10**6, 10, model)  # re-packed positions: any length runs
    # positions (needle_held) only when asked: memory and speed measurements run without them
    assert not out.past_key_values.layers[0].track_positions
    tracked = method.generate(model, ids, config, max_new_tokens=3, track_positions=True).past_key_values
    assert all(layer.positions.shape == layer.scores.shape for layer in tracked.layers)


@pytest.mark.parametrize(
    ("name", "pooling"),
    [("locret", 1), ("locret_pooled", 7), ("locret_random", 1), ("locret_random_pooled", 7)],
)
def test_locret_methods_pool_the_head_scores_as_configured(pair, name, pooling):
    method = get_method(name)
    config = method.locret_config(budget=32, chunk_size=16, n_stabilizers=8, n_local=6, prompt_length=150)
    assert config.score_pooling == pooling and method.params().get("score_pooling", 1) == pooling
    assert all(layer.pool_kernel == pooling for layer in method.make_cache(pair[0], config).layers)


def test_full_cache_is_the_vanilla_model_within_the_window(pair, ids):
    model, vanilla = pair
    method = get_method("full")
    assert method.budget_independent
    config = method.locret_config(budget=8, chunk_size=16, n_stabilizers=4, n_local=6, prompt_length=150)
    out = method.generate(model, ids, config, max_new_tokens=4)
    assert out.cache_length_after_prefill == 150
    expected = vanilla.generate(ids, max_new_tokens=4, do_sample=False)
    assert torch.equal(out.sequences, expected)
    window = model.config.max_position_embeddings
    assert method.fits(window - 4, 4, model) and not method.fits(window - 3, 4, model)


def test_longheads_below_its_span_is_full_attention(pair, ids):
    model, vanilla = pair
    state = longheads.LongHeadsState(model.config.num_hidden_layers, longheads.LongHeadsConfig(16, 160))
    with longheads.longheads_attention(model, state), torch.no_grad():
        logits = torch.cat(
            [model(input_ids=ids[:, s : s + 40], use_cache=False).logits for s in (0, 40, 80, 120)], 1
        )
    with torch.no_grad():
        expected = vanilla(input_ids=ids).logits
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)
    assert not hasattr(model.model.layers[0].self_attn, "forward") or "forward" not in vars(
        model.model.layers[0].self_attn
    )  # the patch is removed afterwards


def test_longheads_selects_chunks_and_keeps_all_kv(pair, ids, monkeypatch):
    model, _ = pair
    config = longheads.LongHeadsConfig(window_size=8, span=40)  # k = 5 chunks per query, 150 tokens
    attended = []
    original = longheads._attend

    def spy(attention, layer, query, first, cfg):
        out = original(attention, layer, query, first, cfg)
        attended.append((first, query.shape[2]))
        return out

    monkeypatch.setattr(longheads, "_attend", spy)
    out = longheads.generate(model, ids, config, 4, chunk_size=24)
    assert out.cache_length_final == 150 + 3  # nothing evicted: every token's KV is kept
    heads, dim = (
        model.config.num_key_value_heads,
        model.config.hidden_size // model.config.num_attention_heads,
    )
    full_kv = model.config.num_hidden_layers * 2 * heads * dim * 4 * 150
    assert out.peak_cache_bytes >= full_kv
    # Prefill blocks never straddle a chunk: selection is made per 8-token chunk, decode per token.
    assert all(first // 8 == (first + n - 1) // 8 for first, n in attended)
    # The same answer whatever the forward size (selection does not depend on how the prompt is fed).
    again = longheads.generate(model, ids, config, 4, chunk_size=8)
    assert torch.equal(out.sequences, again.sequences)


def test_longheads_method_maps_budget_to_span(pair):
    model, _ = pair
    method = get_method("longheads")
    assert not isinstance(method, ScorerMethod)
    cfg = method.longheads_config(1024, model)  # capped to the tiny window (256)
    assert cfg.span <= model.config.max_position_embeddings and cfg.n_chunks >= 4
    assert method.longheads_config(4096, model).span == 256
    with pytest.raises(ValueError, match="span"):
        longheads.LongHeadsConfig(window_size=64, span=128)


def test_retention_diagnostic_counts_kept_positions_per_kv_head():
    from benchmark.passkey_retention import surviving

    positions = torch.tensor([[[0, 5, 7], [1, 2, 3]]])  # [batch, kv heads, kept]
    assert surviving(positions, [5, 7, 3]) == "2/1"
    assert surviving(positions, [4]) == "0/0"


@pytest.mark.parametrize(("length", "depth"), [(4096, 0.5), (32768, 0.5), (8192, 0.9)])
def test_needle_token_span_is_exactly_the_needle(length, depth, smollm2_tokenizer):
    """The diagnostics follow the needle's own tokens, including where it straddles a chunk boundary (32K)."""
    from benchmark.infinite_bench.generators import generate
    from benchmark.passkey_retention import needle_token_span
    from benchmark.run import encode_sample

    (sample,) = generate("passkey", smollm2_tokenizer, length, 1, 0, depth=depth, style="completion")
    ids = encode_sample(smollm2_tokenizer, sample, chat_template=False).ids
    span = needle_token_span(smollm2_tokenizer, sample)
    assert smollm2_tokenizer.decode(ids[span.start : span.stop]) == sample.meta["needle"]
    # and no wider: one more token on either side is no longer the needle alone
    assert smollm2_tokenizer.decode(ids[span.start - 1 : span.stop]) != sample.meta["needle"]
    assert smollm2_tokenizer.decode(ids[span.start : span.stop + 1]) != sample.meta["needle"]


def test_needle_trace_records_each_chunk_and_ends_with_what_survived(pair, ids):
    """The trace's counts per chunk: one row per prefill chunk, never more than tracked tokens x KV heads, and the
    last row equal to what the cache holds when the prefill is over."""
    import locret
    from benchmark.needle_trace import NeedleTracingCache

    model, _ = pair
    config = locret.LocretConfig(budget=24, chunk_size=16, n_stabilizers=4, n_local=4)
    needle = list(range(40, 46))
    cache = NeedleTracingCache(config, model.config.num_hidden_layers, needle)
    locret.generate(model, ids[:, :100], cache=cache, max_new_tokens=1)
    assert [seen for seen, _ in cache.history] == [16, 32, 48, 64, 80, 96]
    heads = model.config.num_key_value_heads
    assert all(0 <= n <= len(needle) * heads for _, kept in cache.history for n in kept)
    assert cache.history[1][1] == [0, 0]  # the needle is not seen yet
    assert any(n < len(needle) * heads for n in cache.history[-1][1])  # budget 24 of 96 loses some
    final = [int(torch.isin(layer.positions, torch.tensor(needle)).sum()) for layer in cache.layers]
    assert cache.history[-1][1] == final


def test_needle_trace_counterfactuals_protect_spans_and_replay_another_prompts_choices(pair, ids):
    """``--protect`` keeps a span in every layer and KV head; ``--scores-from`` makes a prompt keep exactly the
    positions another prompt of the same length kept."""
    import locret
    from benchmark.needle_trace import CounterfactualScorer, NeedleTracingCache

    model, _ = pair
    config = locret.LocretConfig(budget=24, chunk_size=16, n_stabilizers=4, n_local=4)
    needle = list(range(40, 46))

    def kept(prompt, scorer):
        cache = NeedleTracingCache(config, model.config.num_hidden_layers, needle, scorer)
        locret.generate(model, prompt, cache=cache, max_new_tokens=1)
        return [layer.positions for layer in cache.layers], cache

    _, unprotected = kept(ids[:, :100], CounterfactualScorer())
    assert any(n < len(needle) * model.config.num_key_value_heads for n in unprotected.history[-1][1])
    _, protected = kept(ids[:, :100], CounterfactualScorer(protected=needle))
    assert protected.history[-1][1] == [len(needle) * model.config.num_key_value_heads] * 2
    _, first_layer_only = kept(
        ids[:, :100], CounterfactualScorer(protected=needle, protected_layers=range(1))
    )
    layer0, layer1 = first_layer_only.history[-1][1]
    assert layer0 == len(needle) * model.config.num_key_value_heads > layer1  # layer 1 still evicts some

    other = ids[:, :100].flip(1)  # same length, other tokens: the heads choose other positions
    donor = CounterfactualScorer()
    donor_positions, _ = kept(ids[:, :100], donor)
    own_positions, _ = kept(other, CounterfactualScorer())
    replayed_positions, _ = kept(other, CounterfactualScorer(replay=donor.record))
    assert any(not torch.equal(a, b) for a, b in zip(own_positions, donor_positions, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(replayed_positions, donor_positions, strict=True))


@pytest.mark.parametrize("name", ["full", "locret", "locret_random", "streaming_llm", "h2o", "snapkv"])
def test_questions_sharing_a_context_get_what_they_would_alone(pair, ids, name):
    """The runner prefills a document once for all its questions: each must generate exactly as if alone."""
    model, _ = pair
    method = get_method(name)
    context = ids[:, :133]  # not a multiple of the chunk: the last context chunk is partial
    questions = [torch.tensor([[5, 6, 7, 8, 9, 10]]), torch.tensor([[11, 12, 13, 14, 15, 16, 17, 18, 19]])]

    def config(question: torch.Tensor):
        n = question.shape[1]
        return method.locret_config(
            budget=32, chunk_size=16, n_stabilizers=8, n_local=n, prompt_length=133 + n
        )

    first = torch.cat([context, questions[0]], dim=1)
    shared = method.prefill_context(model, first, config(questions[0]))
    assert shared.get_seq_length() == 133
    for question in questions:
        prompt = torch.cat([context, question], dim=1)
        alone = method.generate(model, prompt, config(question), max_new_tokens=4)
        reused = method.generate(model, prompt, config(question), max_new_tokens=4, context_cache=shared)
        assert torch.equal(reused.sequences, alone.sequences)
        assert reused.cache_length_final == alone.cache_length_final
        assert reused.peak_cache_bytes == alone.peak_cache_bytes
    assert shared.get_seq_length() == 133  # each question continued from a copy


def test_a_prefilled_cache_longer_than_the_context_is_refused(pair, ids):
    model, _ = pair
    method = get_method("locret")
    config = method.locret_config(budget=32, chunk_size=16, n_stabilizers=8, n_local=6, prompt_length=150)
    shared = method.prefill_context(model, ids, config)
    with pytest.raises(ValueError, match="already holds 144 tokens"):
        method.generate(model, ids[:, :100], config, max_new_tokens=2, context_cache=shared)


def test_longheads_does_not_share_a_context(pair, ids):
    model, _ = pair
    method = get_method("longheads")
    config = method.locret_config(budget=64, chunk_size=16, n_stabilizers=8, n_local=6, prompt_length=150)
    assert method.prefill_context(model, ids, config) is None


def test_eviction_methods_take_the_budget_allocation(pair, ids):
    method = get_method("locret_pooled:budget_allocation=adaptive:max_head_budget=48")
    config = method.locret_config(budget=32, chunk_size=16, n_stabilizers=8, n_local=6, prompt_length=150)
    assert (config.budget_allocation, config.max_head_budget) == ("adaptive", 48)
    assert method.params()["budget_allocation"] == "adaptive" and method.params()["max_head_budget"] == 48
    assert "budget_allocation" not in get_method("locret_pooled").params()  # earlier results keep their keys
    cache = method.make_cache(pair[0], config)
    out = locret.generate(pair[0], ids, config, max_new_tokens=2, cache=cache)
    assert 32 + 6 <= out.cache_length_after_prefill <= 48 + 6  # the longest head's slots
    assert all(layer.head_pads is not None for layer in cache.layers)
    with pytest.raises(ValueError, match="budget_allocation must be one of"):
        get_method("locret:budget_allocation=global")


def test_eviction_methods_take_a_head_budget_profile_by_name(pair, ids, tmp_path, monkeypatch):
    from benchmark.methods import profiles

    model = pair[0]
    layers, heads = model.config.num_hidden_layers, model.config.num_key_value_heads
    quota = [[0.5] + [1.5] * (heads - 1) for _ in range(layers)]
    (tmp_path / "tiny.json").write_text(json.dumps({"quota": quota}), encoding="utf-8")
    monkeypatch.setattr(profiles, "PROFILE_DIR", tmp_path)
    method = get_method("locret_pooled:budget_allocation=profile:profile=tiny")
    config = method.locret_config(budget=32, chunk_size=16, n_stabilizers=8, n_local=6, prompt_length=150)
    assert config.budget_allocation == "profile" and config.head_shares == tuple(map(tuple, quota))
    assert method.params()["profile"] == "tiny"
    cache = method.make_cache(model, config)
    locret.generate(model, ids, config, max_new_tokens=2, cache=cache)
    held = cache.layers[0].held_entries()[0].sum(-1) - 6 - 1  # less the local tail and the fed-back token
    assert held.tolist() == [16] + [48] * (heads - 1)
    with pytest.raises(ValueError, match="profile=NAME"):
        get_method("locret:budget_allocation=profile")
    with pytest.raises(ValueError, match="no head budget profile"):
        get_method("locret:budget_allocation=profile:profile=absent")


def test_the_shipped_smollm2_profiles_have_its_shape():
    from benchmark.methods.profiles import PROFILE_DIR, load_shares

    names = sorted(path.stem for path in PROFILE_DIR.glob("smollm2_*.json"))
    assert names
    for name in names:
        shares = load_shares(name)
        assert len(shares) == 30 and {len(row) for row in shares} == {3}  # SmolLM2: 30 layers, 3 KV heads
        assert sum(map(sum, shares)) / 90 == pytest.approx(1.0, abs=1e-3)


def test_eviction_methods_take_the_position_mode(pair, ids):
    method = get_method("locret_pooled:position_mode=absolute")
    config = method.locret_config(budget=32, chunk_size=16, n_stabilizers=8, n_local=6, prompt_length=150)
    assert config.position_mode == "absolute" and method.params()["position_mode"] == "absolute"
    assert "position_mode" not in get_method("locret_pooled").params()  # earlier results keep their keys
    cache = method.make_cache(pair[0], config)
    locret.generate(pair[0], ids, config, max_new_tokens=2, cache=cache)
    assert cache.layers[0].positions.shape[-1] == cache.stored_length()  # absolute mode tracks positions
    with pytest.raises(ValueError, match="position_mode must be one of"):
        get_method("locret:position_mode=relative")


def test_every_scorer_is_a_method_with_settings_from_its_name(pair, ids):
    """``name:key=value`` sets a scorer's own parameters and the method's; bad keys and values are refused."""
    assert set(SCORERS) <= set(METHODS)
    method = get_method("snapkv:window=64:kernel_size=5")
    assert method.name == "snapkv:window=64:kernel_size=5" and method.heads == "none"
    assert method.params() == {"name": method.name, "heads": "none", "window": 64, "kernel_size": 5}
    config = method.locret_config(budget=32, chunk_size=16, n_stabilizers=8, n_local=6, prompt_length=150)
    scorer = method.make_cache(pair[0], config).scorer
    assert (scorer.window, scorer.kernel_size) == (64, 5)
    spelled = get_method("locret:heads=random:score_pooling=7")
    assert spelled.params() == {**get_method("locret_random_pooled").params(), "name": spelled.name}
    assert get_method("locret_pooled:score_pooling=3").score_pooling == 3  # the name's settings win
    assert get_method("longheads:window_size=64").window_size == 64
    with pytest.raises(ValueError, match="scorer 'snapkv' has no parameter windw; its parameters: window"):
        get_method("snapkv:windw=64")
    with pytest.raises(ValueError, match="SnapKV kernel_size must be an odd integer"):
        get_method("snapkv:kernel_size=4")
    with pytest.raises(ValueError, match="settings are key=value"):
        get_method("snapkv:64")
    with pytest.raises(ValueError, match="method 'full' takes no setting"):
        get_method("full:window=3")
    out = method.generate(pair[0], ids, config, max_new_tokens=2)
    assert out.cache_length_after_prefill == 32 + 6


def test_runner_accepts_method_settings_and_refuses_bad_ones(tmp_path, capsys):
    from benchmark.run import parse_args, plan_cases

    argv = ["--model", "m", "--task", "passkey", "--budget", "64", "--out", str(tmp_path), "--method"]
    settings = parse_args([*argv, "snapkv:window=64,full"])
    assert [case.method for case in plan_cases(settings)] == ["snapkv:window=64", "full"]
    with pytest.raises(SystemExit):
        parse_args([*argv, "snapkv:window=0"])
    assert "SnapKV window must be an integer >= 1" in capsys.readouterr().err
