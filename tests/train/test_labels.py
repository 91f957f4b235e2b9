"""Labels equal brute-force references: every layer's full attention logits (``logit``) or the model's own
attention weights (``attention``)."""

from __future__ import annotations

import math

import pytest
import torch
from tiny import tiny_locret, tiny_pair

from locret.train.labels import ATTENTION_LOG_FLOOR, compute_cis_labels, side_by_side_answers


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Standard RoPE written out here, independent of ``locret.rope``."""
    half = x.shape[-1] // 2
    return x * cos[:, None] + torch.cat((-x[..., half:], x[..., :half]), -1) * sin[:, None]


def brute_force_labels(model, input_ids: torch.Tensor, n_prompt: int) -> torch.Tensor:
    """Full ``[H, T, T]`` logits per layer from hidden states and the model's own rotary module."""
    with torch.no_grad():
        out = model.model(input_ids=input_ids[None], output_hidden_states=True)
        positions = torch.arange(input_ids.numel())[None]
        cos, sin = model.model.rotary_emb(out.hidden_states[0], positions)
        per_layer = []
        for layer, hidden in zip(model.model.layers, out.hidden_states, strict=False):
            q, k, _, _ = layer.self_attn.project_qkv(layer.input_layernorm(hidden))
            q, k = rotate(q, cos, sin)[0], rotate(k, cos, sin)[0]  # [H, T, D], [Hkv, T, D]
            group = q.shape[0] // k.shape[0]
            logits = q @ k.repeat_interleave(group, 0).transpose(1, 2) / math.sqrt(q.shape[-1])  # [H, T, T]
            scores = logits[:, n_prompt:, :n_prompt].amax(dim=1)  # [H, n_prompt]
            per_layer.append(scores.reshape(k.shape[0], group, n_prompt).amax(dim=1))
    return torch.stack(per_layer)


def brute_force_attention_labels(model, input_ids: torch.Tensor, n_prompt: int, **packing) -> torch.Tensor:
    """log of the largest weight each prompt token gets from any answer row and head of its KV group, read
    from the eager attention's own ``[H, T, T]`` probabilities."""
    with torch.no_grad():
        out = model.model(input_ids=input_ids[None], output_attentions=True, **packing)
    per_layer = []
    for weights in out.attentions:
        heads = weights[0, :, n_prompt:, :n_prompt].amax(dim=1)  # [H, n_prompt]
        per_layer.append(heads.reshape(2, -1, n_prompt).amax(dim=1))
    return torch.stack(per_layer).log().clamp_min(ATTENTION_LOG_FLOOR)


@pytest.mark.parametrize("arch", ["llama", "phi3"])
@pytest.mark.parametrize(("n_prompt", "n_answer"), [(20, 5), (45, 13)])  # phi3: 25 tokens short RoPE, 58 long
def test_labels_match_brute_force(arch: str, n_prompt: int, n_answer: int) -> None:
    model = tiny_locret(arch)
    torch.manual_seed(1)
    input_ids = torch.randint(3, 97, (n_prompt + n_answer,))
    expected = brute_force_labels(model, input_ids, n_prompt)
    for block in (1, 4, 128):
        labels = compute_cis_labels(model, input_ids, n_prompt, answer_block=block, label_kind="logit")
        assert labels.shape == (2, 2, n_prompt) and labels.dtype == torch.float32
        torch.testing.assert_close(labels, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("arch", ["llama", "phi3"])
@pytest.mark.parametrize(("n_prompt", "n_answer"), [(20, 5), (45, 13)])
def test_attention_labels_match_the_models_attention_weights(arch: str, n_prompt: int, n_answer: int) -> None:
    model = tiny_pair(arch, attn="eager")[0]
    torch.manual_seed(1)
    input_ids = torch.randint(3, 97, (n_prompt + n_answer,))
    expected = brute_force_attention_labels(model, input_ids, n_prompt)
    for block in (1, 4, 128):
        labels = compute_cis_labels(model, input_ids, n_prompt, answer_block=block, label_kind="attention")
        assert labels.shape == (2, 2, n_prompt) and labels.dtype == torch.float32
        torch.testing.assert_close(labels, expected, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(labels, compute_cis_labels(model, input_ids, n_prompt), atol=1e-2)


@pytest.mark.parametrize("arch", ["llama", "phi3"])
def test_attention_labels_of_side_by_side_answers_see_only_their_own_answer(arch: str) -> None:
    model = tiny_pair(arch, attn="eager")[0]
    torch.manual_seed(4)
    prompt = torch.randint(3, 97, (16,))
    answers = [torch.randint(3, 97, (n,)) for n in (5, 3, 6)]
    ids = torch.cat([prompt, *answers])
    packing = side_by_side_answers(16, [5, 3, 6], torch.float32, "cpu")
    expected = brute_force_attention_labels(model, ids, 16, **packing)
    packed = compute_cis_labels(
        model, ids, 16, answer_block=4, answer_lengths=[5, 3, 6], label_kind="attention"
    )
    torch.testing.assert_close(packed, expected, atol=1e-5, rtol=1e-5)
    separate = [
        compute_cis_labels(model, torch.cat([prompt, a]), 16, label_kind="attention") for a in answers
    ]
    torch.testing.assert_close(packed, torch.stack(separate).amax(dim=0), atol=1e-5, rtol=1e-5)


def test_attention_labels_are_floored_log_probabilities() -> None:
    """A key that no row reads (a huge negative logit) sits at the floor, not at -inf."""
    from locret.train.labels import attention_from_rotated

    query = torch.zeros(1, 4, 6, 8)
    query[..., 0] = 1.0
    key = torch.zeros(1, 2, 6, 8)
    key[0, :, 1, 0] = -1e4
    labels = attention_from_rotated(query, key, 3)
    assert labels[:, 1].eq(ATTENTION_LOG_FLOOR).all() and labels.le(0).all()
    torch.testing.assert_close(labels[:, 0], torch.full((2,), math.log(1 / 3)))  # row 3: keys 0, 2, 3
    with pytest.raises(ValueError, match="unknown label kind"):
        compute_cis_labels(tiny_locret("llama"), torch.arange(3, 13), 6, label_kind="softmax")


@pytest.mark.parametrize("arch", ["llama", "phi3"])
def test_several_answers_label_as_the_max_over_separate_forwards(arch: str) -> None:
    """Answers side by side after one prompt: each labels as if it followed the prompt alone."""
    model = tiny_locret(arch)
    torch.manual_seed(3)
    prompt = torch.randint(3, 97, (18,))
    answers = [torch.randint(3, 97, (n,)) for n in (4, 7, 2)]  # phi3: at most 25 tokens, short RoPE
    separate = [brute_force_labels(model, torch.cat([prompt, a]), 18) for a in answers]
    packed = compute_cis_labels(model, torch.cat([prompt, *answers]), 18, answer_lengths=[4, 7, 2])
    torch.testing.assert_close(packed, torch.stack(separate).amax(dim=0), atol=1e-5, rtol=0)
    single = compute_cis_labels(model, torch.cat([prompt, answers[1]]), 18, answer_lengths=[7])
    torch.testing.assert_close(single, separate[1], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="do not add up"):
        compute_cis_labels(model, torch.cat([prompt, *answers]), 18, answer_lengths=[4, 7])


def test_phi3_long_prompt_uses_long_rope_factors() -> None:
    """Crossing the original window (32) changes the labels of the early prompt tokens: RoPE switched."""
    model = tiny_locret("phi3")
    torch.manual_seed(2)
    ids = torch.randint(3, 97, (40,))
    short = compute_cis_labels(model, ids[:30], 20)  # 30 tokens: short factors
    long = compute_cis_labels(model, torch.cat([ids[:30], ids[:10]]), 20)  # 40 tokens: long factors
    assert not torch.allclose(short, long, atol=1e-4)
    torch.testing.assert_close(
        long, brute_force_labels(model, torch.cat([ids[:30], ids[:10]]), 20), atol=1e-5, rtol=0
    )


def test_model_left_untouched() -> None:
    model = tiny_locret("llama")
    ids = torch.randint(3, 97, (30,))
    before = model.model(input_ids=ids[None]).last_hidden_state
    compute_cis_labels(model, ids, 20)
    assert all(not layer.self_attn._forward_pre_hooks for layer in model.model.layers)
    torch.testing.assert_close(model.model(input_ids=ids[None]).last_hidden_state, before, atol=0, rtol=0)
