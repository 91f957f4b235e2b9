"""Every registered family on its tiny random configuration(s): registration and loading, reading far past
the window with bounded positions and memory, CIS labels against brute force, heads adapter round trip.

(Exact equivalence with vanilla transformers, sdpa/eager x both position modes, is ``test_equivalence``.)
"""

from __future__ import annotations

import math

import pytest
import torch
from tiny import ARCHS, TINY, random_ids, tiny_kwargs, tiny_locret, tiny_pair, vanilla_class
from transformers import AutoConfig, AutoModelForCausalLM

import locret
from locret import LocretCache, LocretConfig
from locret.models import LOCRET_CLASSES, locret_class_for
from locret.train.labels import compute_cis_labels


def test_every_registered_family_has_a_tiny_config():
    assert {family for family, _ in TINY.values()} == set(LOCRET_CLASSES)


@pytest.mark.parametrize("family", sorted(LOCRET_CLASSES))
def test_family_is_registered_with_the_auto_classes(family):
    cls = LOCRET_CLASSES[family]
    config = AutoConfig.for_model(f"locret_{family}")
    assert type(config) is cls.config_class
    assert locret_class_for(family) is locret_class_for(f"locret_{family}") is cls
    arch = next(name for name, (fam, _) in TINY.items() if fam == family)
    model = AutoModelForCausalLM.from_config(cls.config_class(retaining_head_size=8, **tiny_kwargs(arch)))
    assert type(model) is cls and len(model.retaining_heads) == 2


def test_unsupported_model_message_lists_the_registry():
    _, vanilla = tiny_pair("llama")
    with pytest.raises(ValueError, match="has no retaining heads") as error:
        locret.generate(vanilla, random_ids(5), LocretConfig(budget=8, chunk_size=4, n_stabilizers=2))
    assert all(family in str(error.value) for family in LOCRET_CLASSES)


@pytest.mark.parametrize("arch", ARCHS)
def test_from_pretrained_loads_a_vanilla_checkpoint(arch, tmp_path):
    """A saved transformers checkpoint of the family loads with heads attached, and without a LocretCache it
    is the vanilla model."""
    _, vanilla = tiny_pair(arch)
    vanilla.save_pretrained(tmp_path / "model")
    model = locret.from_pretrained(tmp_path / "model", dtype=torch.float32).eval()
    assert isinstance(model, LOCRET_CLASSES[TINY[arch][0]])
    ids = random_ids(40)
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, vanilla(ids).logits, atol=1e-5, rtol=0)


@pytest.mark.parametrize("arch", ARCHS)
def test_reads_16x_its_window_with_bounded_positions_and_memory(rope_lengths, arch):
    model = tiny_locret(arch)
    window = model.config.max_position_embeddings
    config = LocretConfig(budget=96, chunk_size=64, n_stabilizers=16, n_local=8)
    peaks = []
    for length in (4 * window, 16 * window):
        out = locret.generate(model, random_ids(length), config, max_new_tokens=3)
        assert out.new_tokens.shape == (1, 3) and out.cache_length_after_prefill <= config.budget + 8
        peaks.append(out.peak_cache_bytes)
    assert max(rope_lengths) <= config.budget + config.chunk_size
    assert peaks[0] == peaks[1] > 0  # memory does not grow with the input


def brute_force_labels(model, input_ids: torch.Tensor, n_prompt: int) -> torch.Tensor:
    """Full ``[H, T, T]`` logits per layer, from each layer's own projections, norms and rotary frequencies."""
    with torch.no_grad():
        out = model.model(input_ids=input_ids[None], output_hidden_states=True)
        positions = torch.arange(input_ids.numel())[None]
        rotary = model.model.rotary_emb
        per_layer = []
        for index, (layer, hidden) in enumerate(zip(model.model.layers, out.hidden_states, strict=False)):
            attention, x = layer.self_attn, layer.input_layernorm(hidden)
            kinds = getattr(model.config, "layer_types", None)
            cos, sin = (
                rotary(hidden, positions, kinds[index])
                if hasattr(rotary, "layer_types")
                else rotary(hidden, positions)
            )
            if hasattr(attention, "qkv_proj"):
                q, k, _ = attention.qkv_proj(x).split([64, 32, 32], dim=-1)
            else:
                q, k = attention.q_proj(x), attention.k_proj(x)
            d = attention.head_dim
            q, k = q.view(1, -1, 4, d), k.view(1, -1, 2, d)
            if hasattr(attention, "q_norm"):
                q, k = attention.q_norm(q), attention.k_norm(k)
            q, k = (t[0].transpose(0, 1) for t in (q, k))  # [H, T, D], [Hkv, T, D]
            half = d // 2
            q, k = (t * cos[0] + torch.cat((-t[..., half:], t[..., :half]), -1) * sin[0] for t in (q, k))
            logits = q @ k.repeat_interleave(2, 0).transpose(1, 2) / math.sqrt(d)  # [H, T, T]
            scores = logits[:, n_prompt:, :n_prompt].amax(dim=1)  # [H, n_prompt]
            per_layer.append(scores.reshape(2, 2, n_prompt).amax(dim=1))
    return torch.stack(per_layer)


@pytest.mark.parametrize("arch", ARCHS)
def test_cis_labels_match_brute_force(arch):
    model = tiny_locret(arch)
    input_ids = torch.randint(3, 97, (45 + 13,), generator=torch.Generator().manual_seed(1))
    expected = brute_force_labels(model, input_ids, 45)
    for block in (4, 128):
        labels = compute_cis_labels(model, input_ids, 45, answer_block=block)
        torch.testing.assert_close(labels, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("arch", ARCHS)
def test_heads_adapter_round_trip(arch, tmp_path):
    """Heads saved from one model load into a fresh one (adapter) and with ``from_pretrained(..., heads=)``."""
    trained, vanilla = tiny_pair(arch, seed=0)
    locret.save_heads(trained, tmp_path / "heads")
    other = tiny_locret(arch, seed=1)
    locret.load_heads(other, tmp_path / "heads")
    vanilla.save_pretrained(tmp_path / "model")
    loaded = locret.from_pretrained(tmp_path / "model", heads=tmp_path / "heads", dtype=torch.float32)
    for model in (other, loaded):
        for mine, theirs in zip(model.retaining_heads, trained.retaining_heads, strict=True):
            assert torch.equal(mine.fc1.weight, theirs.fc1.weight)
            assert torch.equal(mine.fc2.weight, theirs.fc2.weight)
    config = LocretConfig(budget=24, chunk_size=16, n_stabilizers=4, n_local=4)
    ids = random_ids(120)
    assert torch.equal(
        locret.generate(loaded.eval(), ids, config, max_new_tokens=4).sequences,
        locret.generate(trained, ids, config, max_new_tokens=4).sequences,
    )


def test_gemma3_sliding_and_global_layers_rotate_with_their_own_frequencies():
    model = tiny_locret("gemma3_text")
    sliding, full = (layer.self_attn.locret_rope for layer in model.model.layers)
    assert (sliding.layer_type, full.layer_type) == ("sliding_attention", "full_attention")
    cos_s, _ = sliding.table(32, torch.float32, torch.device("cpu"))
    cos_f, _ = full.table(32, torch.float32, torch.device("cpu"))
    expected, _ = model.model.rotary_emb(torch.zeros(1), torch.arange(32)[None], "full_attention")
    torch.testing.assert_close(cos_f, expected[0])
    assert not torch.allclose(cos_s, cos_f)


def test_vanilla_class_is_the_transformers_model():
    assert vanilla_class(LOCRET_CLASSES["qwen3"]).__name__ == "Qwen3ForCausalLM"


def test_the_cache_owns_its_settings():
    """Layers read the cache's own config; it cannot be reassigned; a different config is refused."""
    model = tiny_locret("qwen3")
    config = LocretConfig(budget=24, chunk_size=16, n_stabilizers=4, n_local=4, score_pooling=3)
    cache = LocretCache(config, 2)
    assert all(layer.config is config and layer.pool_kernel == 3 for layer in cache.layers)
    with pytest.raises(AttributeError):
        cache.config = LocretConfig()
    bigger = LocretConfig(budget=32, chunk_size=16, n_stabilizers=4, n_local=4, score_pooling=3)
    with pytest.raises(ValueError, match="budget: cache 24, given 32"):
        locret.prefill_prompt(model, random_ids(100), bigger, cache=cache)
    other_tail = LocretConfig(budget=24, chunk_size=16, n_stabilizers=4, n_local=9, score_pooling=3)
    locret.prefill_prompt(model, random_ids(100), other_tail, cache=cache)  # n_local is the prompt's own
    assert cache.get_seq_length() == 91
