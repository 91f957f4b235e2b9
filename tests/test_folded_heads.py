"""The folded retaining head (``fc1`` folded into the q/k/v projections, CPU chunks) scores as the plain head
on ``[Q|K|V]`` does, in every family, and follows changes to either weight; its scores, computed after the
last layer while prefilling, equal scores computed in each layer."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from locret import LocretConfig, prefill_prompt
from locret.cache import LocretLayer
from locret.generation import new_cache
from locret.heads import _FAST_BF16, CPU_FOLD_MIN_ROWS, FoldedHeadScores, HeadInput, folds_on_cpu
from locret.scorers import RetainingHeadScorer
from tests.tiny import ARCHS, random_ids, tiny_locret


def head_inputs(model, tokens: int) -> list[tuple[torch.nn.Module, HeadInput]]:
    """Every layer's attention with a head input built from random hidden states of ``tokens`` tokens."""
    generator = torch.Generator().manual_seed(1)
    pairs = []
    for layer in model.model.layers:
        hidden = torch.randn(2, tokens, model.config.hidden_size, generator=generator)
        pairs.append((layer.self_attn, HeadInput(hidden, layer.self_attn.projections(hidden))))
    return pairs


@pytest.mark.parametrize("arch", ARCHS)
@torch.no_grad()
def test_folded_scores_equal_the_plain_head(arch: str) -> None:
    model = tiny_locret(arch)
    for attention in (layer.self_attn for layer in model.model.layers):
        for linear in attention.qkv_linears():
            if linear.bias is not None:  # Qwen2: make the folded bias matter
                linear.bias.normal_()
    for attention, head_input in head_inputs(model, 24):
        assert folds_on_cpu(attention.retaining_head, head_input)
        folded = attention.retaining_scores(head_input)
        plain = attention.retaining_head(head_input.features())
        assert folded.shape == plain.shape == (2, 24, model.config.num_key_value_heads)
        torch.testing.assert_close(folded, plain, rtol=1e-5, atol=1e-6)


@torch.no_grad()
def test_folded_head_follows_weight_changes() -> None:
    model = tiny_locret("llama")
    attention, head_input = head_inputs(model, 16)[0]
    before = attention.retaining_scores(head_input)
    attention.retaining_head.fc1.weight.mul_(-2.0)
    attention.k_proj.weight.add_(0.5)
    head_input = HeadInput(head_input.hidden_states, attention.projections(head_input.hidden_states))
    after = attention.retaining_scores(head_input)
    assert not torch.allclose(after, before)
    torch.testing.assert_close(after, attention.retaining_head(head_input.features()), rtol=1e-5, atol=1e-6)


def test_only_cpu_chunks_outside_autograd_fold() -> None:
    model = tiny_locret("llama")
    head = model.model.layers[0].self_attn.retaining_head
    with torch.no_grad():
        attention, chunk = head_inputs(model, CPU_FOLD_MIN_ROWS)[0]
        _, one_token = head_inputs(model, CPU_FOLD_MIN_ROWS - 1)[0]
        assert folds_on_cpu(head, chunk)
        assert not folds_on_cpu(head, one_token)  # decode steps keep the plain head
    assert head.fc1.weight.requires_grad
    assert not folds_on_cpu(head, chunk)  # training: gradients flow through fc1 as it is
    head.double()
    with torch.no_grad():
        assert not folds_on_cpu(head, chunk)  # only float32 heads fold


class HeadsScoredInEachLayer(RetainingHeadScorer):
    """The retaining heads' scores, computed inside each layer: only the plain scorer's are deferred."""


@pytest.mark.parametrize("arch", ["llama", "phi3"])
@pytest.mark.parametrize("pooling", [1, 5])
def test_scores_deferred_to_the_last_layer_equal_scores_computed_in_each_layer(arch, pooling, monkeypatch):
    model = tiny_locret(arch)
    ids = random_ids(90)
    config = LocretConfig(budget=24, chunk_size=16, n_stabilizers=4, n_local=5, score_pooling=pooling)
    deferred_updates = []
    update = LocretLayer.update

    def recording_update(self, *args, scores=None, **kwargs):
        deferred_updates.append(callable(scores))
        return update(self, *args, scores=scores, **kwargs)

    monkeypatch.setattr(LocretLayer, "update", recording_update)
    deferred = prefill_prompt(model, ids, config)
    assert all(deferred_updates) and len(deferred_updates) == 2 * len(range(0, 90 - 5, 16))
    deferred_updates.clear()
    in_layer = prefill_prompt(model, ids, config, cache=new_cache(model, config, HeadsScoredInEachLayer()))
    assert not any(deferred_updates)
    for mine, theirs in zip(deferred.layers, in_layer.layers, strict=True):
        assert mine.pending_scores is None
        for name in ("keys", "values", "scores", "raw_tail"):
            assert torch.equal(getattr(mine, name), getattr(theirs, name)), name


@pytest.mark.skipif(not _FAST_BF16, reason="no bfloat16 GEMMs on this CPU: bf16 chunks fold in float32")
@torch.no_grad()
def test_bf16_fold_is_as_close_to_float32_features_as_the_plain_head():
    """A bf16 model's chunk folds in bf16: its scores differ from the head on float32 features by no more
    than the plain head's on the bf16 model's (rounded) projections does."""
    model = tiny_locret("llama")
    pairs = head_inputs(model, 64)
    model.to(torch.bfloat16)
    for layer in model.model.layers:
        layer.self_attn.retaining_head.float()
    for attention, head_input in pairs:
        hidden = head_input.hidden_states.to(torch.bfloat16)
        bf16_input = HeadInput(hidden, attention.projections(hidden))
        assert folds_on_cpu(attention.retaining_head, bf16_input)
        folded = attention.retaining_scores(bf16_input)
        plain = attention.retaining_head(bf16_input.features())
        features = torch.cat(
            [F.linear(hidden.float(), lin.weight.float()) for lin in attention.qkv_linears()], -1
        )
        exact = attention.retaining_head(features)
        scale = exact.abs().max()
        assert (folded - exact).abs().max() <= 2 * (plain - exact).abs().max() + 1e-3 * scale
        assert (folded - exact).abs().max() <= 2e-2 * scale


@pytest.mark.parametrize("tokens", [CPU_FOLD_MIN_ROWS, 37])
@torch.no_grad()
def test_stacked_tails_equal_each_layers_own(tokens: int) -> None:
    """The prefill's one batched tail for all layers equals each layer's tail alone to float32 rounding (a few
    ulp of the largest score: a CPU's batched GEMM may sum in another order), short chunks included."""
    model = tiny_locret("llama")
    pending = [
        FoldedHeadScores(
            attention.retaining_head,
            attention.retaining_head.folded_fc1(inputs.hidden_states, attention.qkv_linears()),
        )
        for attention, inputs in head_inputs(model, tokens)
    ]
    stacked = FoldedHeadScores.stacked(pending)
    assert stacked.shape == (len(pending), 2, model.config.num_key_value_heads, tokens)
    alone = torch.stack([item() for item in pending])
    assert (stacked - alone).abs().max() <= 4 * torch.finfo(torch.float32).eps * alone.abs().max()
    for (attention, inputs), scores in zip(head_inputs(model, tokens), stacked, strict=True):
        torch.testing.assert_close(
            scores, attention.retaining_head(inputs.features()).transpose(1, 2), rtol=1e-5, atol=1e-6
        )
