"""``locret.hardware.reuse_freed_memory``: glibc's thresholds set in the safe order, or nothing changed."""

import platform
import subprocess
import sys
import warnings

import pytest
import torch

from locret import hardware


class FakeLibc:
    """A C library that records ``mallopt`` calls and accepts an mmap threshold up to ``mmap_limit``."""

    def __init__(self, glibc: bool = True, mmap_limit: int = 32 << 20) -> None:
        self.calls: list[tuple[int, int]] = []
        self.mmap_limit = mmap_limit
        if glibc:
            self.gnu_get_libc_version = lambda: b"2.36"

    def mallopt(self, parameter: int, value: int) -> int:
        if parameter == hardware._M_MMAP_THRESHOLD and value > self.mmap_limit:
            return 0
        self.calls.append((parameter, value))
        return 1


def use_libc(monkeypatch, libc: FakeLibc) -> FakeLibc:
    monkeypatch.setattr(hardware.ctypes, "CDLL", lambda name: libc)
    return libc


def test_sets_the_mmap_threshold_before_the_trim_threshold(monkeypatch):
    libc = use_libc(monkeypatch, FakeLibc())
    assert hardware.reuse_freed_memory(trim_threshold=1 << 20, mmap_threshold=2 << 20)
    assert libc.calls == [(hardware._M_MMAP_THRESHOLD, 2 << 20), (hardware._M_TRIM_THRESHOLD, 1 << 20)]


def test_a_refused_mmap_threshold_leaves_the_trim_threshold_alone(monkeypatch):
    libc = use_libc(monkeypatch, FakeLibc(mmap_limit=1 << 20))
    assert not hardware.reuse_freed_memory(mmap_threshold=2 << 20)
    assert libc.calls == []


def test_changes_nothing_outside_glibc(monkeypatch):
    libc = use_libc(monkeypatch, FakeLibc(glibc=False))
    assert not hardware.reuse_freed_memory()
    assert libc.calls == []


@pytest.mark.parametrize(
    "thresholds", [{"trim_threshold": -1}, {"mmap_threshold": 0}, {"mmap_threshold": 64 << 20}]
)
def test_refuses_thresholds_glibc_would_not_take(thresholds):
    with pytest.raises(ValueError, match="threshold"):
        hardware.reuse_freed_memory(**thresholds)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="needs glibc")
def test_applies_on_this_glibc():
    """In a child process: the call is process-wide, and the rest of the suite should run as users' code does."""
    code = "import sys; from locret import hardware; sys.exit(0 if hardware.reuse_freed_memory() else 1)"
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0


@pytest.mark.parametrize(
    ("dtype", "device", "native", "warned", "expected"),
    [
        ("bfloat16", "cpu", False, True, torch.bfloat16),
        ("bf16", "cpu", False, True, torch.bfloat16),
        ("bfloat16", "cpu", True, False, torch.bfloat16),
        ("float32", "cpu", False, False, torch.float32),
        ("auto", "cpu", False, False, torch.float32),
        ("bfloat16", "cuda", False, False, torch.bfloat16),
    ],
)
def test_bf16_asked_for_on_a_cpu_that_emulates_it_is_warned_about(
    dtype, device, native, warned, expected, monkeypatch
):
    """Honoured, with a warning: the dtype stays what was asked for."""
    monkeypatch.setattr(hardware, "cpu_has_native_bf16", lambda: native)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert hardware.resolve_dtype(dtype, device) == expected
    assert any("emulated" in str(w.message) for w in caught) is warned
