"""``benchmark.head_budget_profile`` on a tiny model: quotas of KVzip's global ranking per window, and windows
drawn from the TRAIN books only."""

from __future__ import annotations

import pytest
import torch
from tiny import random_ids, tiny_locret

from benchmark import head_budget_profile
from benchmark.methods.kvzip import KVzip
from benchmark.natural.splits import TRAIN_BOOKS


class PromptTokenizer:
    """The reconstruction prompts as a few fixed ids; books as one id per word (``windows``)."""

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        if text.startswith("\n\nRepeat the previous"):
            return [5, 6, 7]
        if text.startswith("\n\nRepeat the part"):
            return [8, 9]
        return [10 + len(word) % 50 for word in text.split()]


def test_quotas_share_the_budget_and_agree_on_one_model():
    model = tiny_locret("llama").eval()
    contexts = [random_ids(48, seed=seed)[0].tolist() for seed in range(3)]
    with torch.no_grad():
        quotas = head_budget_profile.window_quotas(
            model, KVzip(tokenizer=PromptTokenizer(), chunk=16), contexts, 8, 16
        )
    layers, heads = model.config.num_hidden_layers, model.config.num_key_value_heads
    assert quotas.shape == (3, layers, heads)
    assert torch.allclose(quotas.mean(dim=(1, 2)), torch.ones(3))  # the same total as a uniform budget
    assert (quotas != 1).any()  # random heads do not share it evenly
    agree = head_budget_profile.agreement(quotas)
    assert len(agree) == 3 and all(-1 <= r <= 1 for r in agree)
    same = head_budget_profile.agreement(torch.stack([quotas[0], quotas[0] * 1.0, quotas[0] + 0.0]))
    assert same == pytest.approx([1.0, 1.0, 1.0])


def test_windows_come_from_long_enough_train_books(tmp_path):
    folder = tmp_path / "gutenberg"
    folder.mkdir()
    for index, name in enumerate(TRAIN_BOOKS):
        words = " ".join(["word"] * (50 if index == 0 else 500))  # the first book is too short
        body = f"*** START OF THE BOOK ***\n{words}\n*** END OF THE BOOK ***" if index % 2 else words
        (folder / f"{name}.txt").write_text(body, encoding="utf-8")
    chosen = head_budget_profile.windows(PromptTokenizer(), str(tmp_path), 100, 2)
    assert [name for name, _, _ in chosen] == [name for name in TRAIN_BOOKS[1:] for _ in range(2)]
    assert all(len(ids) == 100 and 0 <= start <= 400 for _, start, ids in chosen)
