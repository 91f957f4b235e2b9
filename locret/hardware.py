"""Device and dtype defaults that are fast where they run."""

from __future__ import annotations

import ctypes
import ctypes.util
import warnings
from pathlib import Path

import torch


def cpu_has_native_bf16() -> bool:
    """True where the CPU computes bf16 matmuls natively (AVX512-BF16 or AMX).

    Measured here: on an AVX2-only CPU a bf16 matmul is about 17x slower than float32, while on an
    AVX-512-BF16 CPU bf16 is 1.3-1.9x faster. So bf16 is only a default where the hardware has it.
    """
    cpuinfo = Path("/proc/cpuinfo")
    flags = cpuinfo.read_text() if cpuinfo.exists() else ""
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str | torch.dtype = "auto", device: torch.device | str = "cpu") -> torch.dtype:
    """``"auto"``: bf16 on CUDA and on CPUs with native bf16, float32 elsewhere. A bf16 name asked for on a CPU
    without native bf16 is honoured with a warning."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        native = torch.device(device).type == "cuda" or cpu_has_native_bf16()
        return torch.bfloat16 if native else torch.float32
    names = {
        "bfloat16": torch.bfloat16,
        "bf16": torch.bfloat16,
        "float16": torch.float16,
        "fp16": torch.float16,
        "float32": torch.float32,
        "fp32": torch.float32,
    }
    if dtype not in names:
        raise ValueError(f"unknown dtype {dtype!r}: use auto, {', '.join(sorted(names))}")
    if names[dtype] == torch.bfloat16 and torch.device(device).type == "cpu" and not cpu_has_native_bf16():
        # the results folders' commands ask for bf16 by name; on such a CPU a run of minutes takes hours
        warnings.warn(
            "bfloat16 on this CPU (no AVX512-BF16 or AMX) is emulated and runs many times slower than float32: "
            "use dtype auto or float32 unless you need bf16's exact results",
            stacklevel=2,
        )
    return names[dtype]


def resolve_dtype_name(dtype: str, device: torch.device | str = "cpu") -> str:
    """``resolve_dtype`` as the name results files record (``"float32"``, ``"bfloat16"``...)."""
    return str(resolve_dtype(dtype, device)).removeprefix("torch.")


# glibc's ``mallopt`` parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def reuse_freed_memory(trim_threshold: int = 256 << 20, mmap_threshold: int = 32 << 20) -> bool:
    """Make glibc keep freed memory for reuse instead of returning it to the OS; True if applied.

    Why: by default glibc serves blocks above a moving threshold with fresh ``mmap``s and trims the heap's
    freed top, so a loop that allocates and frees the same few-MB blocks can fault the same pages in again
    and again. Locret's chunked prefill does (SmolLM2, bf16, budget 1024, chunk 512, 4K tokens, after a
    warm-up: 7.6K minor page faults per chunk, against none for plain chunk forwards in the same run; with
    this call 0.9K and none; ``benchmark.overhead --allocator``). Here
    blocks under ``mmap_threshold`` come from the heap and up to ``trim_threshold`` bytes of freed heap stay
    with the process: the resident size may stay that much above what is in use.

    Process-wide and not undone; call it once at the start of a CPU job. False (nothing changed) where the C
    library is not glibc (macOS, musl). The same effect without code: ``MALLOC_MMAP_THRESHOLD_`` and
    ``MALLOC_TRIM_THRESHOLD_`` in the environment, or jemalloc / tcmalloc through ``LD_PRELOAD``.
    """
    if trim_threshold < 0 or not 0 < mmap_threshold <= 32 << 20:
        raise ValueError("trim_threshold must be >= 0 bytes and mmap_threshold within (0, 32 MiB]")
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    if not hasattr(libc, "gnu_get_libc_version"):
        return False
    # The mmap threshold first (glibc refuses one above 32 MiB on 64-bit): alone, the trim threshold would pin
    # the mmap threshold at its start value and make things worse.
    return bool(mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and bool(
        mallopt(_M_TRIM_THRESHOLD, trim_threshold)
    )
