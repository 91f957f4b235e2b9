"""Fixtures for the training-pipeline tests: tiny models saved as checkpoint directories with a tokenizer."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from train_helpers import save_tiny, write_tiny_labels


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models on a shared 2-core machine: one thread avoids OpenMP contention (40x slower here)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny("llama", tmp_path_factory.mktemp("tiny_llama"))


@pytest.fixture(scope="session")
def sharegpt_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Eight usable conversations plus one row of each unusable kind."""
    rows = [
        {
            "conversations": [
                {"from": "human", "value": f"Story {i}: " + "abcdefgh " * (4 + i)},
                {"from": "gpt", "value": f"Answer {i} about h."},
            ]
        }
        for i in range(8)
    ]
    rows.insert(3, {"conversations": [{"from": "human", "value": "a long enough prompt here"}]})  # no answer
    rows.insert(5, {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}]})
    rows.insert(6, {"something": "else"})
    path = tmp_path_factory.mktemp("data") / "chat.jsonl"
    lines = [json.dumps(row) for row in rows]
    lines.insert(2, "{not json")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="session")
def tiny_labels(tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """CIS labels of 16 synthetic examples on the tiny Llama, in 4 shards."""
    return write_tiny_labels(tiny_llama_dir, tmp_path_factory.mktemp("labels"), 16)
