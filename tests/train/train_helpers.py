"""Plain helpers of the training-pipeline tests (kept out of conftest so tests import them by a unique name)."""

from __future__ import annotations

from pathlib import Path

import torch
from tiny import tiny_locret
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

CHATML = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


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


def write_tiny_labels(
    model_dir: Path, out: Path, count: int, features_dtype: str | None = None, label_kind: str = "logit"
) -> Path:
    """Labels (CIS unless ``label_kind``) of ``count`` synthetic examples on the tiny Llama in ``out``, in
    shards of 4; with ``features_dtype``, the heads' inputs too."""
    from locret import from_pretrained
    from locret.train.data_gen import GenerationSettings, generate_labels

    model = from_pretrained(model_dir, random_heads=True).eval()
    header = {"model": str(model_dir), "num_layers": 2, "num_kv_heads": 2}
    settings = GenerationSettings(shard_size=4, features_dtype=features_dtype, label_kind=label_kind)
    generate_labels(model, synthetic_examples(count), out, header, settings)
    return out
