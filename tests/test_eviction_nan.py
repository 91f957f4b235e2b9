"""A broken (NaN) score never outranks anything, least of all a protected entry; Triton says what it needs."""

import pytest
import torch

import locret
from locret.eviction import kept_indices


def test_nan_scores_rank_lowest_and_never_displace_protected_entries():
    nan = float("nan")
    assert kept_indices(torch.full((1, 1, 8), nan), 4, 2).tolist() == [[[0, 1, 6, 7]]]
    scores = torch.tensor([[[nan, 0.5, nan, -1.0, 2.0, nan]]])
    assert kept_indices(scores, 3, 1).tolist() == [[[1, 4, 5]]]  # protected newest NaN, then 2.0 and 0.5
    assert kept_indices(scores, 5, 0).tolist() == [[[0, 1, 2, 3, 4]]]  # NaN after -1.0, older NaN first


def test_the_triton_kernel_ranks_nan_as_the_torch_reference_does():
    pytest.importorskip("triton")
    import locret.eviction_triton as kernels

    device = "cuda" if torch.cuda.is_available() else "cpu"
    scores = torch.randn(2, 3, 40, generator=torch.Generator().manual_seed(0))
    scores[scores > 0.8] = float("nan")
    scores[0, 0] = float("nan")
    for keep, protect in ((4, 2), (20, 5), (40, 0)):
        expected = kept_indices(scores, keep, protect)
        assert torch.equal(kernels.triton_kept_indices(scores.to(device), keep, protect).cpu(), expected)


def test_triton_on_a_cpu_tensor_says_cuda_is_needed(monkeypatch):
    pytest.importorskip("triton")
    import locret.eviction_triton as kernels

    monkeypatch.setattr(kernels, "INTERPRETED", False)  # as outside the tests: no interpreter
    with pytest.raises(ValueError, match='eviction_kernel="triton" needs the cache on a CUDA device.*cpu'):
        kernels.triton_kept_indices(torch.zeros(1, 1, 10), 4, 1)
    from tiny import tiny_locret

    config = locret.LocretConfig(budget=8, chunk_size=8, n_stabilizers=2, n_local=2, eviction_kernel="triton")
    with pytest.raises(ValueError, match="needs the cache on a CUDA device"):
        locret.generate(tiny_locret("llama"), torch.randint(3, 97, (1, 40)), config, max_new_tokens=1)
