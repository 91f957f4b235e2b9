"""Fixtures for the training-pipeline tests: tiny models saved as checkpoint directories with a tokenizer."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from tiny import tiny_locret
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

CHATML = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models on a shared 2-core machine: one thread avoids OpenMP contention (40x slower here)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def char_tokenizer() -> PreTrainedTokenizerFast:
    """A character-level tokenizer with 97 ids (the tiny models' vocabulary) and a chat template."""
    chars = [chr(c) for c in range(32, 127)]
    vocab = {"<unk>": 0, "<|end|>": 1, **{c: i + 2 for i, c in enumerate(chars)}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    backend.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", eos_token="<|end|>")
    tokenizer.chat_template = CHATML
    return tokenizer


def save_tiny(arch: str, directory: Path) -> Path:
    model = tiny_locret(arch)
    model.save_pretrained(directory)
    char_tokenizer().save_pretrained(directory)
    return directory


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


def synthetic_examples(count: int, seed: int = 0) -> list:
    """Random-token examples of varied lengths (prompt 24-56 tokens, answer 4-11)."""
    from locret.train.data import Example

    generator = torch.Generator().manual_seed(seed)
    out = []
    for i in range(count):
        n_prompt, n_answer = 24 + (i * 7) % 33, 4 + i % 8
        ids = torch.randint(3, 97, (n_prompt + n_answer,), generator=generator).tolist()
        out.append(Example(f"ex{i:03d}", ids[:n_prompt], ids[n_prompt:]))
    return out


def write_tiny_labels(model_dir: Path, out: Path, count: int, features_dtype: str | None = None) -> Path:
    """CIS labels of ``count`` synthetic examples on the tiny Llama in ``out``, in shards of 4; with
    ``features_dtype``, the heads' inputs too."""
    from locret import from_pretrained
    from locret.train.data_gen import GenerationSettings, generate_labels

    model = from_pretrained(model_dir, random_heads=True).eval()
    header = {"model": str(model_dir), "num_layers": 2, "num_kv_heads": 2}
    settings = GenerationSettings(shard_size=4, features_dtype=features_dtype)
    generate_labels(model, synthetic_examples(count), out, header, settings)
    return out


@pytest.fixture(scope="session")
def tiny_labels(tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """CIS labels of 16 synthetic examples on the tiny Llama, in 4 shards."""
    return write_tiny_labels(tiny_llama_dir, tmp_path_factory.mktemp("labels"), 16)
