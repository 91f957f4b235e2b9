"""Generation with Locret: past the window, bounded decoding, and transformers' generate."""

import warnings

import pytest
import torch
from tiny import random_ids, tiny_locret
from transformers import Phi3ForCausalLM, StoppingCriteria, StoppingCriteriaList, TextStreamer

import locret
from locret import LocretCache, LocretConfig


def test_decode_budget_bounds_long_outputs():
    model = tiny_locret("llama")
    config = LocretConfig(budget=48, chunk_size=16, n_stabilizers=8, n_local=4, decode_budget=64)
    out = locret.generate(model, random_ids(200), config, max_new_tokens=500)
    assert out.new_tokens.shape[1] == 500
    assert out.cache_length_final <= config.decode_budget
    unbounded = locret.generate(
        model,
        random_ids(200),
        LocretConfig(budget=48, chunk_size=16, n_stabilizers=8, n_local=4),
        max_new_tokens=500,
    )
    assert unbounded.cache_length_final == 48 + 4 + 500 - 1
    # LocretOutput.past_key_values is the cache generation ended with
    assert unbounded.past_key_values.stored_length() == unbounded.cache_length_final


@pytest.mark.parametrize("arch", ["llama", "phi3"])
def test_model_generate_matches_locret_generate(arch):
    model = tiny_locret(arch)
    config = LocretConfig(budget=40, chunk_size=16, n_stabilizers=8, n_local=6)
    ids = random_ids(300, batch=2)
    ours = locret.generate(model, ids, config, max_new_tokens=12)
    theirs = model.generate(ids, locret_config=config, max_new_tokens=12, do_sample=False)
    assert torch.equal(ours.sequences, theirs)
    via_cache = model.generate(
        ids, past_key_values=LocretCache(config, 2), max_new_tokens=12, do_sample=False
    )
    assert torch.equal(via_cache, theirs)


def test_phi3_generate_keeps_the_locret_cache_without_deprecation_warnings(monkeypatch):
    """Phi-3's own input preparation may drop the cache to recompute it (its long-RoPE switch); with a
    LocretCache it is skipped, under either name transformers gives the cache, and nothing is passed by the
    name the release deprecates."""
    model = tiny_locret("phi3")

    def drops_the_cache(*args, **kwargs):
        raise AssertionError("Phi-3's cache-dropping preparation ran with a LocretCache")

    monkeypatch.setattr(Phi3ForCausalLM, "prepare_inputs_for_generation", drops_the_cache)
    config = LocretConfig(budget=16, chunk_size=8, n_stabilizers=4, n_local=6)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = model.generate(random_ids(300), locret_config=config, max_new_tokens=40, do_sample=False)
    assert out.shape == (1, 340)
    assert not [w for w in caught if "past_key_values" in str(w.message)]


def test_model_generate_sampling_streamer_and_stopping(capsys):
    model = tiny_locret("llama")
    config = LocretConfig(budget=40, chunk_size=16, n_stabilizers=8, n_local=6)

    class StopAfter(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            return torch.full((input_ids.shape[0],), input_ids.shape[1] >= 300 + 3, dtype=torch.bool)

    class DigitTokenizer:
        def decode(self, ids, **kwargs):
            return " ".join(str(int(i)) for i in ids)

    torch.manual_seed(0)
    out = model.generate(
        random_ids(300),
        locret_config=config,
        max_new_tokens=20,
        do_sample=True,
        top_p=0.9,
        stopping_criteria=StoppingCriteriaList([StopAfter()]),
        streamer=TextStreamer(DigitTokenizer(), skip_prompt=True),
    )
    assert out.shape[1] == 303
    printed = capsys.readouterr().out.split()
    assert [int(t) for t in printed] == out[0, 300:].tolist()


def test_eos_stops_generation():
    model = tiny_locret("llama")
    config = LocretConfig(budget=40, chunk_size=16, n_stabilizers=8, n_local=6)
    first = locret.generate(model, random_ids(100), config, max_new_tokens=5)
    eos = int(first.new_tokens[0, 2])
    stopped = locret.generate(model, random_ids(100), config, max_new_tokens=5, eos_token_id=eos)
    assert stopped.new_tokens[0, -1] == eos and stopped.new_tokens.shape[1] <= 3


def test_peak_cache_memory_does_not_grow_with_input():
    model = tiny_locret("llama")
    config = LocretConfig(budget=256, chunk_size=1024, n_stabilizers=32, n_local=16)
    peaks = {}
    for length in (8 * 1024, 64 * 1024):
        out = locret.generate(model, random_ids(length), config, max_new_tokens=1)
        peaks[length] = out.peak_cache_bytes
    assert peaks[8 * 1024] == peaks[64 * 1024] > 0
    per_layer_entry = 2 * 2 * 16 * 4 + 2 * 4  # keys+values fp32 (2 kv heads x 16 dims) + fp32 score per head
    assert peaks[8 * 1024] == 2 * (256 + 1024) * per_layer_entry


def test_the_heads_recommended_settings_run_when_no_config_is_given():
    model = tiny_locret("llama")
    recommended = LocretConfig(budget=24, chunk_size=8, n_stabilizers=4, n_local=4, score_pooling=3)
    ids = random_ids(120)
    assert locret.generate(model, ids, max_new_tokens=2).config == LocretConfig()  # nothing recommended
    model.locret_inference_config = recommended
    out = locret.generate(model, ids, max_new_tokens=3)
    assert out.config == recommended and out.cache_length_after_prefill == 24 + 4
    explicit = LocretConfig(budget=40, chunk_size=16, n_stabilizers=8, n_local=6)
    assert locret.generate(model, ids, explicit, max_new_tokens=3).config == explicit  # explicit wins
    theirs = model.generate(ids, max_new_tokens=3, do_sample=False)  # transformers' generate, same settings
    assert torch.equal(theirs, out.sequences)
    assert torch.equal(
        model.generate(ids, locret_config=explicit, max_new_tokens=3, do_sample=False),
        locret.generate(model, ids, explicit, max_new_tokens=3).sequences,
    )


def test_a_cache_built_with_another_config_is_refused():
    model = tiny_locret("llama")
    config = LocretConfig(budget=40, chunk_size=16, n_stabilizers=8, n_local=6)
    other = LocretConfig(budget=24, chunk_size=8, n_stabilizers=4, n_local=4)
    with pytest.raises(ValueError, match="built with other settings"):
        locret.generate(model, random_ids(100), other, cache=locret.generation.new_cache(model, config))
    with pytest.raises(ValueError, match="built with other settings"):
        model.generate(random_ids(100), locret_config=other, past_key_values=LocretCache(config, 2))
    same = LocretConfig(budget=40, chunk_size=16, n_stabilizers=8, n_local=6)  # equal settings are fine
    out = locret.generate(model, random_ids(100), same, cache=locret.generation.new_cache(model, config))
    assert out.config == config
    assert locret.generate(model, random_ids(100), cache=LocretCache(other, 2)).config == other


def test_generation_stops_at_the_models_eos_by_default():
    model = tiny_locret("llama")
    config = LocretConfig(budget=40, chunk_size=16, n_stabilizers=8, n_local=6)
    free = locret.generate(model, random_ids(100), config, max_new_tokens=5, eos_token_id=[])
    assert free.new_tokens.shape[1] == 5
    model.generation_config.eos_token_id = int(free.new_tokens[0, 1])
    stopped = locret.generate(model, random_ids(100), config, max_new_tokens=5)
    assert stopped.new_tokens.tolist() == free.new_tokens[:, :2].tolist()
    theirs = model.generate(random_ids(100), locret_config=config, max_new_tokens=5, do_sample=False)
    assert torch.equal(theirs, stopped.sequences)  # as transformers' generate stops
    assert (
        locret.generate(model, random_ids(100), config, max_new_tokens=5, eos_token_id=[]).new_tokens.shape[1]
        == 5
    )


@pytest.mark.parametrize("arch", ["llama", "phi3"])
def test_expanded_batches_work_with_the_prefilled_cache(arch):
    model = tiny_locret(arch)
    config = LocretConfig(budget=40, chunk_size=16, n_stabilizers=8, n_local=6)
    ids = random_ids(200)
    torch.manual_seed(0)
    sampled = model.generate(
        ids, locret_config=config, do_sample=True, num_return_sequences=2, max_new_tokens=4
    )
    assert sampled.shape == (2, 204) and torch.equal(sampled[:, :200], ids.expand(2, -1))
    greedy = locret.generate(model, ids, config, max_new_tokens=4, eos_token_id=[]).sequences
    beams = model.generate(ids, locret_config=config, num_beams=3, max_new_tokens=4, do_sample=False)
    assert beams.shape[0] == 1 and torch.equal(beams[:, :200], ids)
    several = model.generate(
        ids, locret_config=config, num_beams=3, num_return_sequences=3, max_new_tokens=4, do_sample=False
    )
    assert several.shape[0] == 3 and torch.equal(several[:1], beams)
    # one beam is greedy decoding: the same tokens as the lean loop
    one = model.generate(ids, locret_config=config, num_beams=1, max_new_tokens=4, do_sample=False)
    assert torch.equal(one, greedy)


@pytest.mark.parametrize("decode_budget", [None, 60])
def test_positions_are_bounded_as_the_readme_says(rope_lengths, decode_budget):
    """The largest position is the cache length: budget + chunk_size while prefilling, budget + n_local for
    the local tail, then one more per generated token, or at most decode_budget + 1 with a decode budget."""
    model = tiny_locret("llama")
    config = LocretConfig(budget=32, chunk_size=16, n_stabilizers=8, n_local=40, decode_budget=decode_budget)
    locret.generate(model, random_ids(300), config, max_new_tokens=10, eos_token_id=[], static_decode=False)
    per_forward = rope_lengths[:: model.config.num_hidden_layers]
    prefill, tail, decode = per_forward[:-10], per_forward[-10], per_forward[-9:]
    assert max(prefill) == 32 + 16 and tail == 32 + 40
    if decode_budget is None:
        assert decode == list(range(32 + 40 + 1, 32 + 40 + 10))
    else:
        assert max(decode) == decode_budget + 1
