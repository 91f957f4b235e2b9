"""The heads adapter's files: settings and provenance travel with the heads; bad files are clear errors."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from tiny import tiny_pair

import locret
from locret.adapter import (
    HEADS_CONFIG_NAME,
    HEADS_WEIGHTS_NAME,
    read_heads,
    read_heads_config,
)
from locret.loading import SHIPPED_HEADS_DIR
from locret.scorers import LineScorer, ScorerChoice

SETTINGS = locret.LocretConfig(budget=24, chunk_size=8, n_stabilizers=4, n_local=4, score_pooling=3)


@pytest.fixture
def adapter(tmp_path):
    model, _ = tiny_pair("llama")
    return locret.save_heads(model, tmp_path / "heads", metadata={"steps": 3}, inference=SETTINGS)


def test_the_config_carries_inference_settings_base_model_version_and_training(tmp_path):
    model, _ = tiny_pair("llama")
    model.config.name_or_path = "org/base"
    shape_before = model.head_shape.to_dict()
    # training metadata cannot overwrite the shape or the format version: it has its own key
    metadata = {"shape": "bogus", "format_version": 99, "steps": 3}
    locret.save_heads(model, tmp_path / "heads", metadata=metadata, inference=SETTINGS)
    raw = json.loads((tmp_path / "heads" / HEADS_CONFIG_NAME).read_text())
    assert raw["format_version"] == 3 and raw["locret_version"] == locret.__version__
    assert raw["base_model"] == "org/base" and raw["shape"] == shape_before
    assert raw["training"] == metadata
    assert raw["inference"]["budget"] == 24 and "eviction_kernel" not in raw["inference"]
    config = read_heads_config(tmp_path / "heads")
    assert config.inference == SETTINGS and config.training["steps"] == 3


def test_the_heads_settings_reach_the_model_and_are_saved_again(tmp_path, adapter):
    _, vanilla = tiny_pair("llama")
    model = locret.from_pretrained(vanilla, heads=adapter)
    assert model.locret_inference_config == SETTINGS
    locret.save_heads(model, tmp_path / "again")  # the attached settings are written back by default
    assert read_heads_config(tmp_path / "again").inference == SETTINGS
    other, _ = tiny_pair("llama", seed=1)
    locret.load_heads(other, adapter)
    assert other.locret_inference_config == SETTINGS


def test_version_1_files_are_still_read(tmp_path, adapter):
    v1 = {"format_version": 1, "shape": json.loads((adapter / HEADS_CONFIG_NAME).read_text())["shape"]}
    v1.update(base_model="org/base", final_val_loss=1.5)
    (adapter / HEADS_CONFIG_NAME).write_text(json.dumps(v1))
    config = read_heads_config(adapter)
    assert config.inference is None and config.base_model == "org/base"
    assert config.training["final_val_loss"] == 1.5
    model, _ = tiny_pair("llama")
    locret.load_heads(model, adapter)
    assert model.locret_inference_config is None


def test_the_shipped_smollm2_heads_carry_their_recommended_settings_and_scorer():
    config = read_heads_config(SHIPPED_HEADS_DIR / "smollm2-135m-instruct")
    assert config.inference == locret.LocretConfig(budget=1024, chunk_size=512, n_stabilizers=256, n_local=64)
    assert (
        config.scorer == ScorerChoice.of(LineScorer(max_line=32))
        and config.scorer.settings["top_tokens"] == 8
    )
    assert config.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert config.shape.hidden_size == 32 and len(config.training["ensemble_of"]) == 1


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda raw: "{not json", "not valid JSON"),
        (lambda raw: json.dumps([1, 2]), "expected a JSON object"),
        (lambda raw: json.dumps({k: v for k, v in raw.items() if k != "shape"}), "'shape' is missing"),
        (lambda raw: json.dumps({**raw, "shape": {"num_layers": 2}}), r"missing \['hidden_act'"),
        (lambda raw: json.dumps({**raw, "format_version": 99}), "unsupported format_version 99"),
        (lambda raw: json.dumps({k: v for k, v in raw.items() if k != "format_version"}), "format_version None"),
        (lambda raw: json.dumps({**raw, "inference": {"budget": 0}}), "invalid 'inference' settings: budget"),
        (lambda raw: json.dumps({**raw, "inference": {"bugdet": 8}}), r"unknown 'inference' settings \['bugdet'\]"),
        (lambda raw: json.dumps({**raw, "extra": 1}), r"unknown keys \['extra'\]"),
    ],
)  # fmt: skip
def test_a_malformed_config_is_a_value_error_naming_the_file_and_the_problem(adapter, edit, message):
    config_file = adapter / HEADS_CONFIG_NAME
    config_file.write_text(edit(json.loads(config_file.read_text())))
    model, _ = tiny_pair("llama")
    for action in (lambda: read_heads(adapter), lambda: locret.load_heads(model, adapter)):
        with pytest.raises(ValueError, match=message) as error:
            action()
        assert str(config_file) in str(error.value)


def test_a_wrong_path_is_an_error_naming_that_path(tmp_path, adapter):
    model, _ = tiny_pair("llama")
    typo = adapter / "typo"  # its parent is an adapter: it must not be loaded instead
    with pytest.raises(FileNotFoundError, match=f"no Locret heads adapter at {typo}"):
        locret.load_heads(model, typo)
    with pytest.raises(FileNotFoundError, match=f"no Locret heads adapter at {typo}"):
        locret.from_pretrained(model, heads=typo)
    stray = tmp_path / "notes.txt"
    stray.write_text("x")
    (adapter / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="is not a Locret heads adapter"):
        locret.load_heads(model, adapter / "notes.txt")
    locret.load_heads(model, adapter / HEADS_WEIGHTS_NAME)  # the weights file itself still names the adapter


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_head_weights_are_refused_naming_the_file(adapter, bad):
    weights = adapter / HEADS_WEIGHTS_NAME
    state = load_file(weights)
    state["layers.1.fc2.weight"][0, 0] = bad
    save_file(state, weights)
    model, _ = tiny_pair("llama")
    with pytest.raises(ValueError, match=f"{weights}: tensor layers.1.fc2.weight holds non-finite values"):
        locret.load_heads(model, adapter)
    assert torch.isfinite(model.retaining_heads[1].fc2.weight).all()


def test_an_ensemble_records_the_settings_it_is_given_or_its_members_shared_ones(tmp_path, adapter):
    from locret.train import convert

    model, _ = tiny_pair("llama", seed=1)
    second = locret.save_heads(model, tmp_path / "second", inference=SETTINGS)
    convert.main(["ensemble", str(adapter), str(second), "--out", str(tmp_path / "shared")])
    assert read_heads_config(tmp_path / "shared").inference == SETTINGS
    given = '{"budget": 64, "chunk_size": 32, "n_stabilizers": 8, "n_local": 4, "score_pooling": 5}'
    convert.main(
        ["ensemble", str(adapter), str(second), "--out", str(tmp_path / "given"), "--inference", given]
    )
    assert read_heads_config(tmp_path / "given").inference == locret.LocretConfig(**json.loads(given))
    other = locret.save_heads(model, tmp_path / "other")  # records no settings: the members disagree
    convert.main(["ensemble", str(adapter), str(other), "--out", str(tmp_path / "mixed")])
    assert read_heads_config(tmp_path / "mixed").inference is None
