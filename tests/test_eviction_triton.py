"""The Triton eviction kernels equal the torch reference exactly (same entries, same order).

On CPU the kernels run through the Triton interpreter (``TRITON_INTERPRET=1``); without Triton the tests skip.
"""

from __future__ import annotations

import pytest
import torch
from tiny import tiny_locret

import locret
from locret import LocretConfig
from locret.eviction import gather_entries, kept_indices

pytest.importorskip("triton")

# (batch, kv heads, cache length, keep, protected newest): odd sizes, keep == length, keep == 1, a block
# boundary (1024), and the shape of a SmolLM2 chunk with budget 1024, chunk 512, 256 stabilizers.
SHAPES = [
    (1, 1, 1, 1, 0),
    (1, 1, 17, 17, 0),
    (1, 2, 300, 1, 0),
    (2, 2, 100, 37, 5),
    (1, 3, 1025, 1024, 1),
    (1, 3, 1536, 1024, 256),
    (3, 1, 64, 63, 63),
]


@pytest.fixture(scope="module")
def kernels():
    """The kernel module: compiled for the GPU, or interpreted on CPU (``TRITON_INTERPRET``, see conftest)."""
    import locret.eviction_triton as module

    return module


def device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def scores_with_ties(shape: tuple[int, int, int], seed: int) -> torch.Tensor:
    """Random scores rounded to bf16 (as heads produce them), with repeated values, +-0.0 and +inf."""
    generator = torch.Generator().manual_seed(seed)
    scores = torch.randn(shape, generator=generator).to(torch.bfloat16).float()
    length = shape[-1]
    scores[..., ::5] = scores[..., :1].clone()
    scores[..., 1::11] = 0.0
    scores[..., 2::13] = -0.0
    scores[..., 3::17] = float("inf")
    if length > 4:
        scores[..., 4::19] = -float("inf")
    return scores.to(device())


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_selection_equals_torch_reference(kernels, shape, seed):
    batch, heads, length, keep, n_protect = shape
    scores = scores_with_ties((batch, heads, length), seed)
    expected = kept_indices(scores, keep, n_protect)
    got = kernels.triton_kept_indices(scores, keep, n_protect)
    assert got.dtype == torch.long
    assert torch.equal(got, expected)
    assert bool((got[..., 1:] > got[..., :-1]).all()), "indices must be strictly ascending"


@pytest.mark.parametrize("shape", SHAPES[3:], ids=lambda s: "x".join(map(str, s)))
def test_fused_gather_equals_torch_reference(kernels, shape):
    batch, heads, length, keep, n_protect = shape
    generator = torch.Generator().manual_seed(7)
    keys = torch.randn(batch, heads, length, 24, generator=generator).to(device())
    values = torch.randn(batch, heads, length, 24, generator=generator).to(device(), torch.bfloat16)
    scores = scores_with_ties((batch, heads, length), 3)
    new_keys, new_values, new_scores, indices = kernels.triton_evict(keys, values, scores, keep, n_protect)
    expected = kept_indices(scores, keep, n_protect)
    assert torch.equal(indices, expected)
    assert torch.equal(new_keys, gather_entries(keys, expected))
    assert torch.equal(new_values, gather_entries(values, expected))
    assert new_values.dtype == torch.bfloat16
    assert torch.equal(new_scores, gather_entries(scores, expected))


def test_keep_out_of_range_is_an_error(kernels):
    with pytest.raises(ValueError, match="keep must be in 1..10"):
        kernels.triton_kept_indices(torch.zeros(1, 1, 10, device=device()), 11)


def test_generation_with_triton_eviction_equals_torch_eviction(kernels):
    """The whole chunked prefill and decode, evicting with the kernels, gives the same tokens and cache."""
    model = tiny_locret("llama").to(device())
    ids = torch.randint(3, 97, (1, 300), generator=torch.Generator().manual_seed(0)).to(device())
    outputs = {}
    for kernel in ("torch", "triton"):
        config = LocretConfig(budget=48, chunk_size=32, n_stabilizers=8, n_local=8, eviction_kernel=kernel)
        cache = locret.generation.new_cache(model, config, track_positions=True)
        outputs[kernel] = (locret.generate(model, ids, cache=cache, max_new_tokens=6).sequences, cache)
    (torch_ids, torch_cache), (triton_ids, triton_cache) = outputs["torch"], outputs["triton"]
    assert torch.equal(torch_ids, triton_ids)
    for torch_layer, triton_layer in zip(torch_cache.layers, triton_cache.layers, strict=True):
        assert torch.equal(torch_layer.positions, triton_layer.positions)
        assert torch.equal(torch_layer.keys, triton_layer.keys)
