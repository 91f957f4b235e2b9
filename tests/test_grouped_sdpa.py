"""A CPU prefill chunk attends with each KV head shared by its query group (``locret.attention``): the same
output, bit for bit, as transformers' SDPA with repeated KV heads, on the attention call and on a whole
evicting prefill; decode steps and maskless calls keep transformers' own function."""

import pytest
import torch
from tiny import random_ids, tiny_locret
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from locret import LocretConfig, prefill_prompt
from locret import attention as grouped
from locret.compat import CACHE_KWARG
from locret.models import base


class Grouped(torch.nn.Module):
    num_key_value_groups = 3
    is_causal = True


def inputs(dtype: torch.dtype, new: int = 5, stored: int = 11):
    generator = torch.Generator().manual_seed(0)
    query = torch.randn(2, new, 6, 8, generator=generator).to(dtype).transpose(1, 2)
    key, value = (torch.randn(2, 2, stored, 8, generator=generator).to(dtype) for _ in range(2))
    visible = torch.arange(stored)[None, :] <= torch.arange(stored - new, stored)[:, None]
    return query, key, value, visible[None, None].expand(2, 1, new, stored)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("mask_kind", ["bool", "additive"])
def test_grouped_call_equals_repeated_kv_heads(dtype, mask_kind):
    query, key, value, mask = inputs(dtype)
    if mask_kind == "additive":
        mask = torch.zeros(mask.shape, dtype=dtype).masked_fill(~mask, torch.finfo(dtype).min)
    expected, _ = sdpa_attention_forward(Grouped(), query, key, value, mask, scaling=0.3)
    got, _ = grouped.grouped_sdpa_attention(Grouped(), query, key, value, mask, scaling=0.3)
    assert got.shape == expected.shape == (2, 5, 6, 8)
    assert torch.equal(got, expected)


def test_maskless_and_unusual_calls_are_transformers_own(monkeypatch):
    calls = []
    monkeypatch.setattr(grouped, "sdpa_attention_forward", lambda *args, **kwargs: calls.append(kwargs))
    query, key, value, mask = inputs(torch.float32)
    grouped.grouped_sdpa_attention(Grouped(), query, key, value, None)
    grouped.grouped_sdpa_attention(Grouped(), query, key, value, mask, softcap=30.0)
    assert len(calls) == 2 and calls[1]["softcap"] == 30.0


def test_only_cpu_sdpa_chunks_use_it():
    query = torch.zeros(1, 6, 5, 8)
    assert grouped.uses_grouped_sdpa("sdpa", query)
    assert not grouped.uses_grouped_sdpa("eager", query)
    assert not grouped.uses_grouped_sdpa("sdpa", query[:, :, :1])  # a decode step


def test_evicting_prefill_is_unchanged_bit_for_bit(monkeypatch):
    model = tiny_locret("llama")
    assert model.config.num_attention_heads > model.config.num_key_value_heads  # grouped
    ids = random_ids(70)
    config = LocretConfig(budget=16, chunk_size=8, n_stabilizers=4, n_local=4)
    used = []
    real = grouped.grouped_sdpa_attention
    monkeypatch.setattr(base, "grouped_sdpa_attention", lambda *a, **k: used.append(1) or real(*a, **k))

    def last_logits():
        with torch.no_grad():
            cache = prefill_prompt(model, ids, config)
            return model(ids[:, cache.get_seq_length() :], **{CACHE_KWARG: cache}).logits

    got = last_logits()
    assert used
    monkeypatch.setattr(base, "uses_grouped_sdpa", lambda *args: False)
    assert torch.equal(got, last_logits())
