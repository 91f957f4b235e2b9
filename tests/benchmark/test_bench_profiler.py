"""Profiler smoke tests on the tiny random preset at two short lengths."""

from __future__ import annotations

import json

import pytest
import torch

import locret
from benchmark import profile_memory_speed as prof


@pytest.fixture(autouse=True)
def _restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _argv(out, *extra):
    return [
        "--preset", "tiny", "--lengths", "64,160", "--methods", "full,locret,streaming_llm",
        "--budget", "32", "--chunk-size", "16", "--n-local", "8", "--decode-tokens", "3",
        "--dtype", "float32", "--threads", "1", "--out", str(out), *extra,
    ]  # fmt: skip


def test_profiler_in_process_reports_memory_speed_and_ratios(tmp_path):
    out = tmp_path / "profile"
    results = prof.main(_argv(out, "--in-process", "--full-max-length", "100"))
    assert len(results) == 6
    by = {(r["method"], r["length"]): r for r in results}
    assert by[("full", 160)]["status"].startswith("skipped")  # beyond --full-max-length
    for key, r in by.items():
        if key == ("full", 160):
            continue
        assert (
            r["status"] == "ok" and r["prefill_tokens_per_second"] > 0 and r["decode_tokens_per_second"] > 0
        )
        assert r["peak_rss_bytes"] > 0 and r["generated_tokens"] == 3
    # Full cache: keys + values of every token; evicting methods: bounded by budget + chunk (+ scores).
    layers, heads, dim = 2, 2, 16
    assert by[("full", 64)]["peak_kv_cache_bytes"] == layers * 2 * heads * dim * 4 * (64 + 3)
    for method in ("locret", "streaming_llm"):
        assert by[(method, 160)]["peak_kv_cache_bytes"] == by[(method, 64)]["peak_kv_cache_bytes"]
        assert by[(method, 64)]["peak_kv_cache_bytes_vs_full"] is not None
        assert by[(method, 160)]["peak_kv_cache_bytes_vs_full"] is None  # no full cache at that length
    data = json.loads((out / "profile.json").read_text())
    assert data["settings"]["model"].startswith("preset tiny") and len(data["results"]) == 6
    table = (out / "profile.md").read_text()
    assert "| locret | 160 |" in table and "NOT isolated" in table
    # The skipped full cache is projected (exactly linear), and labelled so in the table.
    prof.add_full_projection(results)
    assert by[("full", 160)]["projected_kv_cache_bytes"] == layers * 2 * heads * dim * 4 * (160 + 3)
    locret_160 = by[("locret", 160)]
    expected = locret_160["peak_kv_cache_bytes"] / by[("full", 160)]["projected_kv_cache_bytes"]
    assert locret_160["peak_kv_cache_bytes_vs_projected_full"] == pytest.approx(expected)
    assert "projected)" in table
    for name in ("kv_cache", "rss", "prefill", "decode"):
        assert (out / f"profile_{name}.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow  # ~10 s: the worker interpreter has to import torch and transformers
def test_profiler_runs_each_case_in_a_fresh_process(tmp_path):
    out = tmp_path / "profile"
    argv = _argv(out)
    argv[argv.index("--lengths") + 1] = "64"
    argv[argv.index("--methods") + 1] = "locret"
    (result,) = prof.main(argv)
    assert result["status"] == "ok", result
    assert result["peak_rss_bytes"] >= result["rss_after_model_bytes"] > 0
    assert "one process per case" in (out / "profile.md").read_text()


def test_presets_have_the_published_shapes():
    model = prof.build_preset("smollm2-135m", torch.bfloat16, "cpu", num_layers=1)
    assert model.config.num_key_value_heads == 3 and model.config.max_position_embeddings == 8192
    # docs/design.md, section 8: 23,040 bytes per token in bf16
    assert prof.full_kv_bytes(model, 1) * 30 == 23040
    assert model.lm_head.weight is model.model.embed_tokens.weight
    assert torch.isfinite(model.model.rotary_emb.inv_freq).all()
    assert {"llama-3.1-8b", "phi-3-mini-128k"} <= set(prof.PRESETS)


def test_every_preset_is_a_registered_family_with_its_published_shape():
    from locret.models import LOCRET_CLASSES

    shapes = {}
    for name, spec in prof.PRESETS.items():
        spec = dict(spec)
        cls = LOCRET_CLASSES[spec.pop("family")]
        shapes[name] = cls.config_class(**spec)
    assert {"qwen2.5-7b", "qwen3-8b", "mistral-7b", "gemma-3-4b", "llama-3.2-3b"} <= set(shapes)
    assert shapes["qwen3-8b"].head_dim == 128 and shapes["qwen2.5-7b"].num_key_value_heads == 4
    gemma = shapes["gemma-3-4b"]
    assert gemma.layer_types.count("full_attention") == 5 and gemma.sliding_window == 1024


def test_a_gemma3_preset_builds_with_its_buffers_initialised():
    """``to_empty`` leaves buffers (RoPE frequencies, Gemma's embedding scale) unset: the build sets them."""
    prof.PRESETS["gemma-tiny"] = {
        **prof.PRESETS["gemma-3-4b"], "vocab_size": 97, "hidden_size": 64, "intermediate_size": 96,
        "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "retaining_head_size": 16,
    }  # fmt: skip
    try:
        model = prof.build_preset("gemma-tiny", torch.float32, "cpu", num_layers=6)
    finally:
        del prof.PRESETS["gemma-tiny"]
    assert model.model.embed_tokens.embed_scale.item() == pytest.approx(8.0)
    fresh = type(model.model.rotary_emb)(model.config)
    for kind in ("sliding_attention", "full_attention"):
        assert torch.equal(
            getattr(model.model.rotary_emb, f"{kind}_inv_freq"), getattr(fresh, f"{kind}_inv_freq")
        )
    out = locret.generate(model, torch.randint(0, 97, (1, 300)), locret.LocretConfig(256, 64, 16, 8), 2)
    assert out.new_tokens.shape == (1, 2)
