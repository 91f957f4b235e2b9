"""Checkpoints and adapters: what is saved comes back exactly; what does not fit is refused."""

import logging
import warnings

import pytest
import torch
from safetensors.torch import load_file, save_file
from tiny import tiny_pair
from transformers import AutoModelForCausalLM

import locret
from locret.adapter import HEADS_CONFIG_NAME, read_heads


@pytest.mark.parametrize("arch", ["llama", "phi3"])
def test_vanilla_checkpoint_gets_fresh_nonzero_heads(tmp_path, arch):
    model, vanilla = tiny_pair(arch)
    vanilla.save_pretrained(tmp_path)
    loaded = locret.from_pretrained(tmp_path, random_heads=True)
    assert isinstance(loaded, locret.models.locret_class_for(arch))
    for head in loaded.retaining_heads:
        assert head.fc1.weight.abs().sum() > 0 and head.fc2.weight.abs().sum() > 0
        assert torch.isfinite(head.fc1.weight).all()
    ids = torch.randint(3, 97, (1, 20))
    with torch.no_grad():
        assert torch.allclose(loaded(ids).logits, vanilla(ids).logits, atol=1e-6)


@pytest.mark.parametrize("arch", ["llama", "phi3"])
def test_locret_checkpoint_round_trip(tmp_path, arch):
    model, _ = tiny_pair(arch)
    model.save_pretrained(tmp_path)
    for loaded in (locret.from_pretrained(tmp_path), AutoModelForCausalLM.from_pretrained(tmp_path)):
        assert type(loaded) is type(model)
        for a, b in zip(loaded.state_dict().values(), model.state_dict().values(), strict=True):
            assert torch.equal(a, b)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_heads_stay_float32_in_a_half_precision_model_unless_asked(tmp_path, dtype):
    """Adapter or full checkpoint, a bf16/fp16 backbone scores with the heads exactly as trained."""
    model, vanilla = tiny_pair("llama")
    locret.save_heads(model, tmp_path / "heads")
    vanilla.save_pretrained(tmp_path / "base")
    model.save_pretrained(tmp_path / "full")
    for exact in (
        locret.from_pretrained(tmp_path / "base", heads=tmp_path / "heads", dtype=dtype),
        locret.from_pretrained(tmp_path / "full", dtype=dtype),
        AutoModelForCausalLM.from_pretrained(tmp_path / "full", dtype=dtype),
    ):
        assert exact.model.layers[0].self_attn.q_proj.weight.dtype == dtype
        for ours, trained in zip(exact.retaining_heads, model.retaining_heads, strict=True):
            assert torch.equal(ours.fc1.weight, trained.fc1.weight) and torch.equal(
                ours.fc2.weight, trained.fc2.weight
            )
    features = torch.randn(1, 5, model.head_shape.in_features).to(dtype)  # what a half-precision layer gives
    scores = exact.retaining_heads[0](features)
    assert scores.dtype == torch.float32 and torch.equal(scores, model.retaining_heads[0](features.float()))
    ids = torch.randint(3, 97, (1, 40))
    config = locret.LocretConfig(budget=16, chunk_size=8, n_stabilizers=4, n_local=4)
    assert locret.generate(exact, ids, config, max_new_tokens=2).new_tokens.shape == (1, 2)
    rounded = locret.from_pretrained(
        tmp_path / "base", heads=tmp_path / "heads", dtype=dtype, heads_dtype=None
    )
    assert {head.fc1.weight.dtype for head in rounded.retaining_heads} == {dtype}


def test_a_locret_checkpoint_keeps_its_own_heads_under_a_shipped_model_name(tmp_path):
    """Shipped heads are the default for a vanilla model of that name, never over a Locret model's own."""
    model, vanilla = tiny_pair("llama")
    named = tmp_path / "SmolLM2-135M-Instruct-tiny"
    model.save_pretrained(named / "locret")
    for loaded in (locret.from_pretrained(named / "locret"), locret.from_pretrained(model)):
        for ours, saved in zip(loaded.retaining_heads, model.retaining_heads, strict=True):
            assert torch.equal(ours.fc1.weight, saved.fc1.weight)
    vanilla.save_pretrained(named / "vanilla")
    with pytest.raises(ValueError, match="do not fit this model"):  # the shipped SmolLM2 heads were chosen
        locret.from_pretrained(named / "vanilla")


def test_heads_adapter_round_trip_on_an_untouched_base(tmp_path):
    model, vanilla = tiny_pair("llama")
    locret.save_heads(model, tmp_path / "heads", metadata={"note": "test"})
    vanilla.save_pretrained(tmp_path / "base")
    loaded = locret.from_pretrained(tmp_path / "base", heads=tmp_path / "heads")
    for a, b in zip(loaded.retaining_heads, model.retaining_heads, strict=True):
        assert torch.equal(a.fc1.weight, b.fc1.weight) and torch.equal(a.fc2.weight, b.fc2.weight)
    attached = locret.from_pretrained(vanilla, heads=tmp_path / "heads")
    assert attached is vanilla and torch.equal(
        attached.retaining_heads[1].fc2.weight, model.retaining_heads[1].fc2.weight
    )
    assert '"note": "test"' in (tmp_path / "heads" / HEADS_CONFIG_NAME).read_text()


def test_wrong_shape_heads_are_refused_naming_both_shapes(tmp_path):
    llama, _ = tiny_pair("llama")
    locret.save_heads(llama, tmp_path / "llama_heads")
    wider, _ = tiny_pair("llama", num_key_value_heads=4)
    with pytest.raises(
        ValueError, match=r"needs heads of shape HeadShape\(.*num_kv_heads=4.*got HeadShape\(.*num_kv_heads=2"
    ):
        locret.load_heads(wider, tmp_path / "llama_heads")
    phi3, _ = tiny_pair("phi3")
    with pytest.raises(ValueError, match="model_type='phi3'.*model_type='llama'"):
        locret.load_heads(phi3, tmp_path / "llama_heads")
    shape, state = read_heads(tmp_path / "llama_heads")
    state["layers.0.fc1.weight"] = state["layers.0.fc1.weight"][:, :-1]
    with pytest.raises(
        ValueError, match=r"layers.0.fc1.weight has shape \(16, 127\), the model needs \(16, 128\)"
    ):
        locret.adapter.load_heads_into(llama, shape, state)


def test_random_heads_flag_replaces_trained_heads(tmp_path):
    model, _ = tiny_pair("llama")
    model.save_pretrained(tmp_path)
    fresh = locret.from_pretrained(tmp_path, random_heads=True)
    assert not torch.equal(fresh.retaining_heads[0].fc1.weight, model.retaining_heads[0].fc1.weight)


def test_a_model_without_trained_heads_warns_unless_random_heads_is_asked_for(tmp_path):
    model, vanilla = tiny_pair("llama")
    vanilla.save_pretrained(tmp_path / "vanilla")
    with pytest.warns(UserWarning, match="has no trained retaining heads.*random_heads=True"):
        locret.from_pretrained(tmp_path / "vanilla")
    with pytest.warns(UserWarning, match="has no trained retaining heads"):
        locret.from_pretrained(tiny_pair("llama")[1])  # a loaded vanilla model nobody trained heads for
    model.save_pretrained(tmp_path / "locret")
    state = load_file(tmp_path / "locret" / "model.safetensors")
    del state["model.layers.1.self_attn.retaining_head.fc2.weight"]
    save_file(state, tmp_path / "locret" / "model.safetensors", metadata={"format": "pt"})
    with pytest.warns(UserWarning, match=r"\(1 missing, e.g. model.layers.1.self_attn.retaining_head.fc2"):
        locret.from_pretrained(tmp_path / "locret")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        locret.from_pretrained(tmp_path / "vanilla", random_heads=True)
        locret.from_pretrained(tmp_path / "locret", random_heads=True)
        model.save_pretrained(tmp_path / "complete")
        locret.from_pretrained(tmp_path / "complete")


def test_loading_a_vanilla_checkpoint_hides_only_the_expected_model_type_warning(tmp_path, caplog):
    _, vanilla = tiny_pair("llama")
    vanilla.save_pretrained(tmp_path)
    config_logger = logging.getLogger("transformers.configuration_utils")
    with caplog.at_level(logging.WARNING, logger="transformers.configuration_utils"):
        config_logger.propagate, propagate = True, config_logger.propagate
        try:
            locret.from_pretrained(tmp_path, random_heads=True)
            assert "to instantiate a model of type" not in caplog.text
            locret.LocretLlamaConfig.from_pretrained(tmp_path)  # outside our load it still warns
            assert "to instantiate a model of type `locret_llama`" in caplog.text
        finally:
            config_logger.propagate = propagate


def test_arguments_for_an_already_loaded_model_are_applied_or_refused(tmp_path):
    _, vanilla = tiny_pair("llama")
    vanilla.save_pretrained(tmp_path)
    with pytest.raises(TypeError, match="foo"):  # from a path, transformers' loader refuses it
        locret.from_pretrained(tmp_path, random_heads=True, foo=1)
    with pytest.raises(TypeError, match=r"\['foo'\] cannot apply"):
        locret.from_pretrained(vanilla, random_heads=True, dtype=torch.bfloat16, foo=1)
    with pytest.raises(TypeError, match="dtype must be a torch.dtype"):
        locret.from_pretrained(vanilla, random_heads=True, dtype="bf16")
    model = locret.from_pretrained(vanilla, random_heads=True, dtype=torch.bfloat16, device_map="cpu")
    assert model.model.layers[0].self_attn.q_proj.weight.dtype == torch.bfloat16
    assert {head.fc1.weight.dtype for head in model.retaining_heads} == {torch.float32}
