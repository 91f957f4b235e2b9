"""With a budget that evicts nothing, Locret must reproduce vanilla transformers exactly (float32)."""

import pytest
import torch
from tiny import ARCHS, tiny_pair
from transformers import DynamicCache

from locret import LocretConfig, prefill_prompt

ATOL = 1e-4


def vanilla_logits(vanilla, ids: torch.Tensor, steps: int) -> list[torch.Tensor]:
    """Next-token logits after the prompt and after each greedy step, with a plain DynamicCache."""
    cache = DynamicCache(config=vanilla.config)
    logits = vanilla(ids, past_key_values=cache, use_cache=True).logits[:, -1]
    out = [logits]
    for _ in range(steps):
        logits = vanilla(logits.argmax(-1, keepdim=True), past_key_values=cache, use_cache=True).logits[:, -1]
        out.append(logits)
    return out


def locret_logits(model, ids: torch.Tensor, config: LocretConfig, steps: int) -> list[torch.Tensor]:
    cache = prefill_prompt(model, ids, config)
    logits = model(ids[:, cache.get_seq_length() :], past_key_values=cache, use_cache=True).logits[:, -1]
    out = [logits]
    for _ in range(steps):
        logits = model(logits.argmax(-1, keepdim=True), past_key_values=cache, use_cache=True).logits[:, -1]
        out.append(logits)
    return out


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("position_mode", ["repacked", "absolute"])
def test_no_eviction_matches_vanilla(arch, attn, position_mode):
    model, vanilla = tiny_pair(arch, attn=attn)
    ids = torch.randint(3, 97, (2, 75), generator=torch.Generator().manual_seed(1))
    config = LocretConfig(budget=200, chunk_size=16, n_stabilizers=4, n_local=7, position_mode=position_mode)
    with torch.no_grad():
        expected = vanilla_logits(vanilla, ids, steps=6)
        got = locret_logits(model, ids, config, steps=6)
    for step, (e, g) in enumerate(zip(expected, got, strict=True)):
        assert torch.allclose(e, g, atol=ATOL), f"step {step}: max diff {(e - g).abs().max():.2e}"
        assert torch.equal(e.argmax(-1), g.argmax(-1)), f"step {step}: another greedy token"


@pytest.mark.parametrize("arch", ARCHS)
def test_plain_forward_is_vanilla(arch):
    """Without a LocretCache the patched model is the transformers model (training, evaluation, HF generate)."""
    model, vanilla = tiny_pair(arch)
    ids = torch.randint(3, 97, (1, 50), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.equal(model(ids).logits, vanilla(ids).logits)
        assert torch.equal(
            model.generate(ids, max_new_tokens=5, do_sample=False),
            vanilla.generate(ids, max_new_tokens=5, do_sample=False),
        )
