"""Conversions round-trip exactly; heads of the wrong shape are rejected with both shapes named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tiny import tiny_locret

from locret import from_pretrained
from locret.adapter import heads_state_dict, load_heads, read_heads, read_heads_config, save_heads
from locret.train import convert


def test_bin_safetensors_round_trip(tmp_path: Path) -> None:
    state = {
        "a.weight": torch.randn(3, 5),
        "b": torch.arange(7, dtype=torch.int64),
        "c": torch.randn(2).bfloat16(),
    }
    convert.save_state_dict(state, tmp_path / "x.safetensors")
    convert.main(["to-bin", str(tmp_path / "x.safetensors"), str(tmp_path / "x.bin")])
    convert.main(["to-safetensors", str(tmp_path / "x.bin"), str(tmp_path / "y.safetensors")])
    back = load_file(tmp_path / "y.safetensors")
    assert back.keys() == state.keys()
    assert all(back[k].dtype == state[k].dtype and torch.equal(back[k], state[k]) for k in state)
    assert (tmp_path / "x.safetensors").read_bytes() == (tmp_path / "y.safetensors").read_bytes()


def test_bin_is_loaded_without_unpickling_code(tmp_path: Path) -> None:
    torch.save({"w": torch.ones(1), "evil": print}, tmp_path / "bad.bin")
    with pytest.raises(Exception, match="[Ww]eights only load failed"):
        convert.load_state_dict(tmp_path / "bad.bin")


def test_extract_heads_from_full_checkpoint(tiny_llama_dir: Path, tmp_path: Path) -> None:
    convert.main(["extract-heads", str(tiny_llama_dir), str(tmp_path / "adapter")])
    model = from_pretrained(tiny_llama_dir)
    shape, state = read_heads(tmp_path / "adapter")
    assert shape == model.head_shape
    expected = heads_state_dict(model)
    assert state.keys() == expected.keys() and all(torch.equal(state[k], expected[k]) for k in state)


@pytest.mark.parametrize("suffix", [".bin", ".safetensors"])
def test_official_round_trip(tiny_llama_dir: Path, tmp_path: Path, suffix: str) -> None:
    convert.main(["extract-heads", str(tiny_llama_dir), str(tmp_path / "ours")])
    official = tmp_path / f"official{suffix}"
    convert.main(["to-official", str(tmp_path / "ours"), str(official)])
    keys = convert.load_state_dict(official).keys()
    assert "model.layers.1.self_attn.fc2.weight" in keys and len(keys) == 4
    convert.main(
        ["from-official", str(official), "--base-model", str(tiny_llama_dir), str(tmp_path / "back")]
    )
    _, ours = read_heads(tmp_path / "ours")
    _, back = read_heads(tmp_path / "back")
    assert ours.keys() == back.keys() and all(torch.equal(ours[k], back[k]) for k in ours)
    assert json.loads((tmp_path / "back" / "locret_heads_config.json").read_text())["training"][
        "converted_from"
    ] == str(official)


def test_wrong_shape_rejected_naming_both(tiny_llama_dir: Path, tmp_path: Path) -> None:
    other = tiny_locret("llama", num_key_value_heads=1)  # in_features (4 + 2) * 16 = 96, not 128
    official = {
        f"model.layers.{i}.self_attn.{name}": tensor.clone()
        for i, head in enumerate(other.retaining_heads)
        for name, tensor in head.state_dict().items()
    }
    convert.save_state_dict(official, tmp_path / "wrong.bin")
    with pytest.raises(ValueError) as err:
        convert.from_official(tmp_path / "wrong.bin", tiny_llama_dir, tmp_path / "out")
    message = str(err.value)
    assert "in_features=128" in message and "in_features=96" in message and "num_kv_heads=1" in message
    assert not (tmp_path / "out").exists()


def test_missing_layer_rejected(tiny_llama_dir: Path, tmp_path: Path) -> None:
    state = {
        f"model.layers.{i}.self_attn.{name}": tensor.clone()
        for i, head in enumerate(tiny_locret("llama", num_hidden_layers=3).retaining_heads)
        for name, tensor in head.state_dict().items()
    }
    convert.save_state_dict(state, tmp_path / "three_layers.safetensors")
    with pytest.raises(ValueError, match="num_layers=2.*num_layers=3"):
        convert.from_official(tmp_path / "three_layers.safetensors", tiny_llama_dir, tmp_path / "out")


def test_ensemble_scores_the_mean_of_its_members(tmp_path: Path) -> None:
    members = []
    for seed, width in ((0, 8), (1, 8), (2, 4)):
        model = tiny_locret("llama", seed=seed, retaining_head_size=width)
        for head in model.retaining_heads:
            head.reset_parameters(0.5)
        members.append(
            (model, save_heads(model, tmp_path / f"member{seed}", metadata={"trained_by": "test"}))
        )
    convert.main(["ensemble", *(str(path) for _, path in members), "--out", str(tmp_path / "mean")])
    shape, _ = read_heads(tmp_path / "mean")
    assert shape.hidden_size == 20
    provenance = read_heads_config(tmp_path / "mean").training["ensemble_of"]
    assert [member["path"] for member in provenance] == [str(path) for _, path in members]
    assert all(member["trained_by"] == "test" for member in provenance)
    merged = tiny_locret("llama", retaining_head_size=20)
    load_heads(merged, tmp_path / "mean")
    features = torch.randn(1, 7, shape.in_features)
    for layer, head in enumerate(merged.retaining_heads):
        mean = sum(model.retaining_heads[layer](features) for model, _ in members) / 3
        torch.testing.assert_close(head(features), mean, atol=1e-6, rtol=1e-5)
    for dtype in (torch.bfloat16, torch.float16):
        name = str(dtype).removeprefix("torch.")
        convert.main(["ensemble", str(members[0][1]), str(members[1][1]), "--out", str(tmp_path / name),
                      "--dtype", name])  # fmt: skip
        _, stored = read_heads(tmp_path / name)
        assert all(tensor.dtype == dtype for tensor in stored.values())
        fc2 = torch.cat([members[k][0].retaining_heads[1].fc2.weight.to(dtype) for k in (0, 1)], dim=1) / 2
        assert torch.equal(stored["layers.1.fc2.weight"], fc2)  # halving is exact in 16-bit floats
    other = tiny_locret("phi3", retaining_head_size=8)
    with pytest.raises(ValueError, match="do not fit"):
        convert.ensemble([members[0][1], save_heads(other, tmp_path / "phi3")], tmp_path / "bad")
    with pytest.raises(ValueError, match="at least one"):
        convert.ensemble([], tmp_path / "bad")
    settings = '{"budget": 64, "n_stabilizers": 16, "score_pooling": 3}'
    convert.main(["ensemble", str(members[0][1]), "--out", str(tmp_path / "one"), "--inference", settings])
    (_, original), (_, copied) = read_heads(members[0][1]), read_heads(tmp_path / "one")
    assert original.keys() == copied.keys()
    assert all(torch.equal(original[key], copied[key]) for key in original)  # one member: an exact copy
    inference = read_heads_config(tmp_path / "one").inference
    assert (inference.budget, inference.score_pooling) == (64, 3)
