"""Static-shape decoding (locret.static_decode) equals the eager decode steps: same greedy tokens, logits
close, and the same cache afterwards (keys, values, scores, positions, lengths)."""

from __future__ import annotations

import copy

import pytest
import torch
from tiny import random_ids, tiny_locret

import locret
from locret import LocretCache, LocretConfig
from locret.compat import CACHE_KWARG
from locret.generation import decode, new_cache, prefill_prompt
from locret.scorers.h2o import H2OScorer
from locret.static_decode import CAPACITY_BUCKET, StaticDecoder, capacity_for, unsupported_reason

STEPS = 30


def small_config(**overrides) -> LocretConfig:
    settings = dict(budget=32, chunk_size=16, n_stabilizers=8, n_local=6)
    return LocretConfig(**{**settings, **overrides})


@torch.no_grad()
def prefilled(model, ids, config) -> tuple[LocretCache, torch.Tensor]:
    """A cache after the prefill and the tail forward, and the tail's last logits."""
    cache = prefill_prompt(model, ids, config)
    tail = ids[:, cache.get_seq_length() :]
    logits = model(input_ids=tail, use_cache=True, logits_to_keep=1, **{CACHE_KWARG: cache}).logits[:, -1]
    return cache, logits


def assert_same_cache(eager, static) -> None:
    """The same entries (positions exact; float32 tensors within rounding: the attention sums in another
    order, so later layers' inputs differ in the last bits)."""
    for mine, theirs in zip(eager.layers, static.layers, strict=True):
        assert mine.stored_length() == theirs.stored_length() and mine.seen == theirs.seen
        assert mine.peak_length == theirs.peak_length
        torch.testing.assert_close(theirs.keys, mine.keys, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(theirs.values, mine.values, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(theirs.scores, mine.scores, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(theirs.raw_tail, mine.raw_tail, rtol=1e-5, atol=1e-5)
        assert torch.equal(theirs.positions, mine.positions)


@pytest.mark.parametrize("arch", ["llama", "phi3", "qwen2", "qwen3"])
@pytest.mark.parametrize("position_mode", ["repacked", "absolute"])
@pytest.mark.parametrize("decode_budget", [None, 42])
@pytest.mark.parametrize("pooling", [1, 5])
def test_static_steps_equal_eager_steps(arch, position_mode, decode_budget, pooling):
    """Step by step on the same cache: logits within float32 rounding, the same greedy tokens, and the same
    cache afterwards; with decode_budget=42 (38 stored after the tail) eviction starts at the fifth step."""
    model = tiny_locret(arch)
    config = small_config(position_mode=position_mode, decode_budget=decode_budget, score_pooling=pooling)
    static_cache = assert_static_equals_eager(model, config)
    if decode_budget is not None:
        assert static_cache.stored_length() == decode_budget


@pytest.mark.parametrize("allocation", ["adaptive", "profile"])
@pytest.mark.parametrize("position_mode", ["repacked", "absolute"])
def test_static_steps_equal_eager_steps_with_per_head_budgets(allocation, position_mode):
    """Heads of different lengths (left pads) and layers of different lengths: each layer its own slot."""
    model = tiny_locret("llama")
    shares = None
    if allocation == "profile":  # layer 0 shorter than the others
        shares = ((0.25, 0.5),) + tuple((0.5, 1.5) for _ in range(model.config.num_hidden_layers - 1))
    config = small_config(position_mode=position_mode, budget_allocation=allocation, head_shares=shares)
    cache = assert_static_equals_eager(model, config)
    assert any(int(layer.head_pads.max()) > 0 for layer in cache.layers)
    if allocation == "profile":
        assert len({layer.stored_length() for layer in cache.layers}) > 1


def assert_static_equals_eager(model, config: LocretConfig) -> LocretCache:
    """Step by step on copies of one prefilled cache: logits within float32 rounding, the same greedy tokens,
    the same cache afterwards (returned: the static one)."""
    ids = random_ids(100)
    eager_cache, first_logits = prefilled(model, ids, config)
    static_cache = copy.deepcopy(eager_cache)
    decoder = StaticDecoder(model, static_cache, STEPS)
    eager_logits: list[torch.Tensor] = []
    static_logits: list[torch.Tensor] = []

    def eager_step(tokens):
        out = model(input_ids=tokens[:, None], use_cache=True, **{CACHE_KWARG: eager_cache}).logits[:, -1]
        eager_logits.append(out)
        return out

    def static_step(tokens):
        static_logits.append(decoder.step(tokens))
        return static_logits[-1]

    eager_tokens, _ = decode(eager_step, first_logits, ids, STEPS + 1, eos_token_id=[])
    static_tokens, _ = decode(static_step, first_logits, ids, STEPS + 1, eos_token_id=[])
    decoder.write_back()
    assert torch.equal(static_tokens, eager_tokens)
    for mine, theirs in zip(eager_logits, static_logits, strict=True):
        torch.testing.assert_close(theirs, mine, rtol=1e-5, atol=1e-5)
    assert_same_cache(eager_cache, static_cache)
    return static_cache


@pytest.mark.parametrize("position_mode", ["repacked", "absolute"])
@pytest.mark.parametrize("decode_budget", [None, 42])
def test_generate_runs_static_by_default_with_the_same_result(position_mode, decode_budget):
    """``generate`` takes the static path unless told not to; tokens and a given cache end up the same."""
    model = tiny_locret("llama")
    config = small_config(position_mode=position_mode, decode_budget=decode_budget, score_pooling=3)
    ids = random_ids(120, seed=1)
    caches = [new_cache(model, config) for _ in range(2)]
    eager = locret.generate(model, ids, config, 25, eos_token_id=[], cache=caches[0], static_decode=False)
    static = locret.generate(model, ids, config, 25, eos_token_id=[], cache=caches[1])
    assert static.static_decode and not eager.static_decode
    assert torch.equal(static.sequences, eager.sequences)
    assert_same_cache(caches[0], caches[1])
    assert static.cache_length_final == eager.cache_length_final
    assert static.peak_cache_bytes == eager.peak_cache_bytes


def test_unscored_entries_of_a_discarded_cache_give_the_same_tokens():
    """Without a given cache and without decode_budget the new entries are not scored (nothing reads their
    scores); the tokens are those of the eager steps, and the lengths reported are the same."""
    model = tiny_locret("phi3")
    config = small_config(score_pooling=5)
    ids = random_ids(90, seed=2)
    eager = locret.generate(model, ids, config, 20, eos_token_id=[], static_decode=False)
    static = locret.generate(model, ids, config, 20, eos_token_id=[], static_decode=True)
    assert static.static_decode and torch.equal(static.sequences, eager.sequences)
    assert static.cache_length_final == eager.cache_length_final
    assert static.peak_cache_bytes == eager.peak_cache_bytes


def test_session_answers_are_unchanged_by_static_decoding():
    model = tiny_locret("llama")
    session = locret.Session(model, small_config(decode_budget=45))
    session.feed(random_ids(150, seed=3))
    question = random_ids(8, seed=4)
    static = session.ask(question, max_new_tokens=20, eos_token_id=[])
    eager = session.ask(question, max_new_tokens=20, eos_token_id=[], static_decode=False)
    assert torch.equal(static.token_ids, eager.token_ids)


def test_unsupported_settings_fall_back_or_refuse():
    """None falls back to the eager steps with the reason ``unsupported_reason`` gives; True refuses."""
    ids = random_ids(80)
    config = small_config()
    gemma = tiny_locret("gemma3_text")
    cache, _ = prefilled(gemma, ids, config)
    assert "gemma3_text" in unsupported_reason(gemma, cache, 10)
    assert not locret.generate(gemma, ids, config, 5, eos_token_id=[]).static_decode
    with pytest.raises(ValueError, match="gemma3_text"):
        locret.generate(gemma, ids, config, 5, eos_token_id=[], static_decode=True)

    model = tiny_locret("llama")
    h2o = prefill_prompt(model, ids, config, cache=new_cache(model, config, scorer=H2OScorer()))
    assert "H2OScorer" in unsupported_reason(model, h2o, 10)
    adaptive = small_config(budget_allocation="adaptive", decode_budget=40)
    assert "decode_budget" in unsupported_reason(model, prefill_prompt(model, ids, adaptive), 10)
    padded = torch.cat([torch.zeros(1, 10, dtype=torch.long), random_ids(70, seed=5)], dim=1)
    batch = torch.cat([ids, padded])
    mask = torch.cat([torch.ones_like(ids), (padded != 0).long()])
    out = locret.generate(model, batch, config, 5, attention_mask=mask, eos_token_id=[])
    assert not out.static_decode
    with pytest.raises(ValueError, match="batch"):
        locret.generate(model, batch, config, 5, attention_mask=mask, eos_token_id=[], static_decode=True)
    with pytest.raises(ValueError, match="static_decode"):
        locret.generate(model, ids, config, 5, static_decode="fast")


def test_a_sliding_window_shorter_than_the_capacity_is_refused():
    model = tiny_locret("mistral")  # every layer slides over 24 entries
    cache, _ = prefilled(model, random_ids(80), small_config())
    assert "sliding window" in unsupported_reason(model, cache, 10)


def test_capacities_are_bucketed():
    """Prompts of different lengths get one capacity (one compiled step); decode_budget bounds it."""
    model = tiny_locret("llama")
    config = small_config()
    lengths = {capacity_for(prefilled(model, random_ids(n), config)[0], 50) for n in (60, 90, 130)}
    assert lengths == {CAPACITY_BUCKET}
    bounded = prefilled(model, random_ids(60), small_config(decode_budget=300))[0]
    assert capacity_for(bounded, 10_000) == 2 * CAPACITY_BUCKET


def test_compiled_steps_equal_eager_steps_without_recompiling():
    """``static_decode="compile"``: the same tokens as the eager steps, and a second prompt of another
    length in the same capacity bucket reuses the compiled step."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    model = tiny_locret("llama")
    config = small_config(decode_budget=40, score_pooling=3)
    for length in (100, 110):
        ids = random_ids(length, seed=length)
        eager = locret.generate(model, ids, config, 12, eos_token_id=[], static_decode=False)
        compiled = locret.generate(model, ids, config, 12, eos_token_id=[], static_decode="compile")
        assert compiled.static_decode and torch.equal(compiled.sequences, eager.sequences)
    assert counters["stats"]["unique_graphs"] == 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_cuda_graph_steps_equal_eager_steps():
    model = tiny_locret("llama").cuda()
    config = small_config(decode_budget=40)
    ids = random_ids(100).cuda()
    eager = locret.generate(model, ids, config, 12, eos_token_id=[], static_decode=False)
    compiled = locret.generate(model, ids, config, 12, eos_token_id=[], static_decode="compile")
    assert torch.equal(compiled.sequences, eager.sequences)


def test_prepacked_bf16_weights_give_the_same_logits():
    """On a CPU with oneDNN the uncompiled steps read prepacked bf16 weights: logits bit-identical to the
    plain ``F.linear`` steps, and the model's own forwards are back after every step."""
    from locret.packed_linear import can_pack

    model = tiny_locret("llama").to(torch.bfloat16)
    if not can_pack(model):
        pytest.skip("no oneDNN bf16 linear on this build")
    config = small_config(decode_budget=42, score_pooling=3)
    cache, logits = prefilled(model, random_ids(100), config)
    packed = StaticDecoder(model, copy.deepcopy(cache), 10)
    plain = StaticDecoder(model, cache, 10)
    plain.packed = []
    assert packed.packed
    tokens = logits.argmax(-1)
    for _ in range(10):
        mine, theirs = packed.step(tokens), plain.step(tokens)
        assert torch.equal(mine, theirs)
        assert all("forward" not in linear.__dict__ for linear, _ in packed.packed)
        tokens = mine.argmax(-1)


def test_no_prepacking_where_onednn_has_no_bf16_path(monkeypatch):
    """An AVX2-only CPU has no oneDNN bf16 linear (packing raises there): bf16 decoding reads the plain weights
    and still runs."""
    from locret import packed_linear

    monkeypatch.setattr(packed_linear, "onednn_bf16", lambda: False)
    model = tiny_locret("llama").to(torch.bfloat16)
    assert not packed_linear.can_pack(model)
    config = small_config(decode_budget=42, score_pooling=3)
    cache, logits = prefilled(model, random_ids(100), config)
    decoder = StaticDecoder(model, cache, 4)
    assert decoder.packed == []
    assert decoder.step(logits.argmax(-1)).shape == logits.shape


def test_early_stop_and_sampling_match_the_eager_steps():
    """An EOS stop leaves the cache as the eager steps leave it; sampling draws the same tokens (same seed)."""
    model = tiny_locret("llama")
    config = small_config(decode_budget=42, score_pooling=3)
    ids = random_ids(100, seed=6)
    greedy = locret.generate(model, ids, config, 12, eos_token_id=[], static_decode=False).new_tokens[0]
    stop = int(greedy[5])  # stops at the first occurrence of this token
    caches = [new_cache(model, config) for _ in range(2)]
    runs = [
        locret.generate(model, ids, config, 12, eos_token_id=stop, cache=cache, static_decode=static)
        for cache, static in zip(caches, (False, True), strict=True)
    ]
    assert torch.equal(runs[0].sequences, runs[1].sequences) and runs[1].sequences.shape[1] < 112
    assert_same_cache(*caches)
    sampled = []
    for static in (False, True):
        torch.manual_seed(7)
        out = locret.generate(
            model, ids, config, 15, eos_token_id=[], do_sample=True, top_k=20, static_decode=static
        )
        sampled.append(out.sequences)
    assert torch.equal(*sampled)


@pytest.mark.parametrize("decode_budget", [None, 42])
def test_model_generate_runs_static_steps_with_the_same_result(monkeypatch, decode_budget):
    """transformers' ``generate`` on a Locret model: its one-token steps run on the static buffers, with the
    tokens and the returned cache of its eager steps; beams (batch > 1) keep the eager steps."""
    model = tiny_locret("llama")
    config = small_config(decode_budget=decode_budget, score_pooling=3)
    ids = random_ids(100, seed=8)
    steps = []
    original = StaticDecoder.step
    monkeypatch.setattr(StaticDecoder, "step", lambda self, tokens: steps.append(1) or original(self, tokens))
    settings = dict(locret_config=config, max_new_tokens=15, do_sample=False, return_dict_in_generate=True)
    static = model.generate(ids, **settings)
    assert len(steps) == 14
    eager = model.generate(ids, static_decode=False, **settings)
    assert len(steps) == 14
    assert torch.equal(static.sequences, eager.sequences)
    assert_same_cache(eager.past_key_values, static.past_key_values)
    reference = locret.generate(model, ids, config, 15, eos_token_id=[], static_decode=False)
    assert torch.equal(static.sequences, reference.sequences)
    model.generate(ids, locret_config=config, max_new_tokens=5, num_beams=2, do_sample=False)
    assert len(steps) == 14


def test_model_generate_hands_over_to_the_eager_steps_coherently():
    """More steps than sized for (``max_length`` instead of ``max_new_tokens``, with too few steps guessed):
    the buffers are written back and the model's own forward goes on from the same cache."""
    from locret.static_decode import GenerateSteps

    model = tiny_locret("llama")
    config = small_config(decode_budget=42)
    ids = random_ids(100, seed=9)
    cache = prefill_prompt(model, ids, config)
    tail = ids[:, cache.get_seq_length() :]
    with torch.no_grad():
        logits = model(input_ids=tail, use_cache=True, **{CACHE_KWARG: cache}).logits[:, -1]
        eager_cache = copy.deepcopy(cache)
        cache.static_steps = GenerateSteps(model, cache, 4, None)
        tokens, eager_tokens = logits.argmax(-1), logits.argmax(-1)
        for _ in range(10):
            tokens = model(input_ids=tokens[:, None], **{CACHE_KWARG: cache}).logits[:, -1].argmax(-1)
            eager_tokens = model(input_ids=eager_tokens[:, None], **{CACHE_KWARG: eager_cache}).logits[:, -1]
            eager_tokens = eager_tokens.argmax(-1)
            assert torch.equal(tokens, eager_tokens)
        assert cache.static_steps.done and cache.static_steps.decoder.steps == 4
    assert_same_cache(eager_cache, cache)


@pytest.mark.parametrize("count", [9, 10, 11])  # under, at and one over keep = 10
@pytest.mark.parametrize("n_protect", [0, 3])
def test_evicting_one_entry_equals_the_general_eviction(count, n_protect):
    """The one-entry eviction of every decode step with decode_budget keeps what the sorting one keeps,
    ties (the older entry stays) and NaN (lowest) included."""
    from locret.static_decode import LayerBuffers, StepPlan, _evict, _evict_one

    generator = torch.Generator().manual_seed(count + n_protect)
    scores = torch.randint(0, 4, (1, 2, 16), generator=generator).float()  # many ties
    scores[0, 1, 2] = float("nan")

    def buffers() -> LayerBuffers:
        keys = torch.arange(2 * 16 * 3, dtype=torch.float32).view(1, 2, 16, 3)
        positions = torch.arange(16).expand(1, 2, 16).clone()
        return LayerBuffers(keys.clone(), None, -keys, scores.clone(), torch.empty(1, 2, 0), positions)

    plan = StepPlan(16, 0, True, 10, True, n_protect, (0,))
    general, single = buffers(), buffers()
    _evict(plan, general, torch.tensor([count]))
    _evict_one(plan, single, torch.tensor([count]))
    kept = min(count, 10)
    for name in ("keys", "values", "scores", "positions"):
        torch.testing.assert_close(
            getattr(single, name)[:, :, :kept], getattr(general, name)[:, :, :kept], equal_nan=True
        )
