"""The eviction step as two Triton kernels: a per-KV-head top-k selection and one gather for K, V and scores.

The torch version (:mod:`locret.eviction`) needs a clone (stabilizer protection), ``topk``, ``sort`` and one
``gather`` per tensor; here one program per (batch, KV head) row selects the kept indices in place, and one
kernel moves keys, values and scores together. Results equal the torch reference exactly: same entries,
same (original) order, ties broken towards the older entry, NaN scores ranked lowest.

Selection is a radix select on the scores' bits: float32 scores map to integers with the same order, the
``keep``-th largest is found bit by bit (32 counting passes over the row), then everything above it and the
oldest of the entries equal to it are kept. Import this module only where Triton is installed; set
``TRITON_INTERPRET=1`` before importing it to run the kernels on CPU (what the tests do).
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

# Triton reads TRITON_INTERPRET once, when it is imported: then the kernels run on CPU tensors.
INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"


def check_device(tensor: torch.Tensor) -> None:
    """Triton kernels need CUDA tensors (or the interpreter); say so before Triton fails with its own error."""
    if not tensor.is_cuda and not INTERPRETED:
        raise ValueError(
            f'eviction_kernel="triton" needs the cache on a CUDA device, but it is on {tensor.device}: use '
            'eviction_kernel="torch" there (it keeps exactly the same entries)'
        )


@triton.jit
def _select_kernel(
    scores_ptr, out_ptr, n, keep, protect_from, row_stride, out_row_stride, BLOCK: tl.constexpr
):
    row = tl.program_id(0)
    offs = tl.arange(0, BLOCK)
    valid = offs < n
    x = tl.load(scores_ptr + row * row_stride + offs, mask=valid, other=0.0)
    x = tl.where(x != x, float("-inf"), x)  # NaN ranks lowest, as in the torch reference
    x = tl.where(offs >= protect_from, float("inf"), x)
    x = tl.where(x == 0.0, 0.0, x)  # -0.0 and +0.0 are equal scores: give them one key
    bits = x.to(tl.int32, bitcast=True)
    signed_key = tl.where(bits < 0, bits ^ 0x7FFFFFFF, bits)  # same order as the floats
    key = signed_key.to(tl.int64) + 2147483648  # in [0, 2**32)

    threshold = tl.zeros([], dtype=tl.int64)
    for bit in tl.static_range(31, -1, -1):
        candidate = threshold | (1 << bit)
        count = tl.sum(((key >= candidate) & valid).to(tl.int32), axis=0)
        threshold = tl.where(count >= keep, candidate, threshold)

    above = (key > threshold) & valid
    ties_needed = keep - tl.sum(above.to(tl.int32), axis=0)
    tie = (key == threshold) & valid
    tie_rank = tl.cumsum(tie.to(tl.int32), axis=0)
    kept = above | (tie & (tie_rank <= ties_needed))
    slot = tl.cumsum(kept.to(tl.int32), axis=0) - 1
    tl.store(out_ptr + row * out_row_stride + slot, offs.to(tl.int64), mask=kept)


@triton.jit
def _gather_kernel(
    indices_ptr, keys_ptr, values_ptr, scores_ptr, new_keys_ptr, new_values_ptr, new_scores_ptr,
    length, keep, dim, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr,
):  # fmt: skip
    row = tl.program_id(0).to(tl.int64)  # offsets of large caches overflow int32
    block = tl.program_id(1)
    k = block * BLOCK_K + tl.arange(0, BLOCK_K)
    d = tl.arange(0, BLOCK_D)
    k_ok = k < keep
    source = tl.load(indices_ptr + row * keep + k, mask=k_ok, other=0)
    tile_ok = k_ok[:, None] & (d[None, :] < dim)
    src = row * length * dim + source[:, None] * dim + d[None, :]
    dst = row * keep * dim + k[:, None] * dim + d[None, :]
    tl.store(new_keys_ptr + dst, tl.load(keys_ptr + src, mask=tile_ok), mask=tile_ok)
    tl.store(new_values_ptr + dst, tl.load(values_ptr + src, mask=tile_ok), mask=tile_ok)
    score = tl.load(scores_ptr + row * length + source, mask=k_ok)
    tl.store(new_scores_ptr + row * keep + k, score, mask=k_ok)


def triton_kept_indices(scores: torch.Tensor, keep: int, n_protect: int = 0) -> torch.Tensor:
    """Same contract as :func:`locret.eviction.kept_indices`: indices ``[B, H, keep]``, ascending."""
    check_device(scores)
    batch, heads, length = scores.shape
    if not 0 < keep <= length:
        raise ValueError(f"keep must be in 1..{length} (the cache length), got {keep}")
    rows = scores.reshape(batch * heads, length).to(torch.float32).contiguous()
    out = torch.empty(batch * heads, keep, dtype=torch.long, device=scores.device)
    block = max(16, triton.next_power_of_2(length))
    _select_kernel[(batch * heads,)](
        rows,
        out,
        length,
        keep,
        length - n_protect,
        length,
        keep,
        BLOCK=block,
        num_warps=8 if block >= 4096 else 4,
    )
    return out.reshape(batch, heads, keep)


def triton_evict(
    keys: torch.Tensor, values: torch.Tensor, scores: torch.Tensor, keep: int, n_protect: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Keep ``keep`` entries per KV head of ``keys``/``values`` ``[B, H, S, D]`` and ``scores`` ``[B, H, S]``.

    Returns the new keys, values, scores and the kept indices (for callers that track positions).
    """
    batch, heads, length, dim = keys.shape
    indices = triton_kept_indices(scores, keep, n_protect)
    keys, values, scores = keys.contiguous(), values.contiguous(), scores.contiguous()
    new_keys = keys.new_empty(batch, heads, keep, dim)
    new_values = values.new_empty(batch, heads, keep, dim)
    new_scores = scores.new_empty(batch, heads, keep)
    block_k = 64
    grid = (batch * heads, triton.cdiv(keep, block_k))
    _gather_kernel[grid](
        indices, keys, values, scores, new_keys, new_values, new_scores,
        length, keep, dim, BLOCK_K=block_k, BLOCK_D=triton.next_power_of_2(dim),
    )  # fmt: skip
    return new_keys, new_values, new_scores, indices
