"""Head inputs recorded during an evicting prefill: exact without eviction, different once entries are gone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tiny import tiny_locret

from locret import LocretConfig, from_pretrained
from locret.adapter import save_heads
from locret.train import data_gen
from locret.train.eviction_features import features_under_eviction
from locret.train.labels import compute_cis_labels, compute_labels_and_features
from locret.train.shards import LabelSet


@pytest.mark.parametrize("arch", ["llama", "phi3"])
def test_features_without_eviction_equal_the_full_forward(arch: str) -> None:
    model = tiny_locret(arch).eval()
    ids = torch.randint(3, 97, (50,), generator=torch.Generator().manual_seed(0))
    _, full = compute_labels_and_features(model, torch.cat([ids, ids[:4]]), 50, features_dtype=torch.float32)
    config = LocretConfig(budget=64, chunk_size=16, n_stabilizers=4)  # everything fits: nothing is evicted
    recorded = features_under_eviction(model, ids, config, torch.float32)
    assert recorded.shape == full.shape == (2, 50, model.head_shape.in_features)
    torch.testing.assert_close(recorded, full, atol=1e-5, rtol=1e-5)


def test_features_after_eviction_see_only_the_kept_entries() -> None:
    model = tiny_locret("llama").eval()
    ids = torch.randint(3, 97, (60,), generator=torch.Generator().manual_seed(1))
    _, full = compute_labels_and_features(model, torch.cat([ids, ids[:4]]), 60, features_dtype=torch.float32)
    config = LocretConfig(budget=12, chunk_size=16, n_stabilizers=4, n_local=8)  # n_local is ignored
    recorded = features_under_eviction(model, ids, config, torch.float32)
    assert recorded.shape == full.shape
    # Layer 0's inputs are the embeddings, whatever the cache holds; the first chunk ran before any eviction.
    torch.testing.assert_close(recorded[0], full[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(recorded[1, :16], full[1, :16], atol=1e-5, rtol=1e-5)
    assert (recorded[1, 16:] - full[1, 16:]).abs().amax() > 1e-3  # later chunks attended to a pruned cache
    assert all(not head._forward_pre_hooks for head in model.retaining_heads)


def test_cli_saves_eviction_features_and_records_the_policy(
    tiny_llama_dir: Path, sharegpt_file: Path, tmp_path: Path
):
    heads = save_heads(from_pretrained(tiny_llama_dir, random_heads=True), tmp_path / "heads")
    out = tmp_path / "labels"
    argv = ["--model", str(tiny_llama_dir), "--data", str(sharegpt_file), "--out", str(out), "--min-prompt-tokens",
            "30", "--max-prompt-tokens", "48", "--shard-size", "3", "--save-features", "float32"]  # fmt: skip
    with pytest.raises(SystemExit, match="--save-features"):
        data_gen.main([*argv[:-2], "--eviction-features", str(heads)])
    data_gen.main(
        [*argv, "--eviction-features", str(heads), "--eviction-budget", "16", "--eviction-chunk-size", "8"]
    )
    policy = json.loads((out / "manifest.json").read_text())["header"]["eviction_features"]
    assert policy["budget"] == 16 and policy["chunk_size"] == 8 and policy["n_stabilizers"] == 4
    model = from_pretrained(tiny_llama_dir, heads).eval()
    labels = LabelSet(out)
    input_ids, stored = labels.load(labels.examples[0])
    n_prompt = stored.shape[-1]
    torch.testing.assert_close(stored, compute_cis_labels(model, input_ids, n_prompt), atol=0, rtol=0)
    config = LocretConfig(budget=16, chunk_size=8, n_stabilizers=4)
    expected = features_under_eviction(model, input_ids[:n_prompt], config, torch.float32)
    torch.testing.assert_close(labels.load_features(labels.examples[0]), expected, atol=0, rtol=0)
