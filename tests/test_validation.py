"""Every invalid setting is a ValueError that says what is wrong and what is allowed."""

import pytest
import torch
from tiny import tiny_pair

import locret
from locret import LocretConfig


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"budget": 0}, "budget must be an integer >= 1"),
        ({"chunk_size": 0}, "chunk_size must be an integer >= 1"),
        ({"budget": 8, "n_stabilizers": 8}, "n_stabilizers must satisfy 0 <= n_stabilizers < budget"),
        ({"n_local": -1}, "n_local must be an integer >= 0"),
        ({"position_mode": "rotated"}, "position_mode must be one of"),
        (
            {"budget": 8, "n_stabilizers": 2, "n_local": 4, "decode_budget": 6},
            "decode_budget must be None or",
        ),
        ({"score_pooling": 4}, "score_pooling must be an odd integer >= 1"),
        ({"score_pooling": 0}, "score_pooling must be an odd integer >= 1"),
        ({"score_pooling": 7, "n_stabilizers": 2}, "score_pooling 7 needs n_stabilizers >= 3"),
    ],
)
def test_invalid_config(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LocretConfig(**kwargs)


def test_invalid_inputs():
    model, vanilla = tiny_pair("llama")
    config = LocretConfig(budget=8, chunk_size=4, n_stabilizers=2, n_local=2)
    with pytest.raises(ValueError, match="input_ids is empty"):
        locret.generate(model, torch.zeros(1, 0, dtype=torch.long), config)
    with pytest.raises(ValueError, match="2-D LongTensor"):
        locret.generate(model, torch.zeros(5, dtype=torch.long), config)
    with pytest.raises(ValueError, match="only left-padded batches are supported"):
        model.generate(
            torch.ones(2, 5, dtype=torch.long),
            attention_mask=torch.tensor([[1, 1, 1, 1, 0]] * 2),
            locret_config=config,
        )
    with pytest.raises(ValueError, match="has no retaining heads"):
        locret.generate(vanilla, torch.ones(1, 5, dtype=torch.long), config)
    with pytest.raises(ValueError, match="max_new_tokens must be >= 1"):
        locret.generate(model, torch.ones(1, 5, dtype=torch.long), config, max_new_tokens=0)


def test_unsupported_architecture():
    from transformers import GPT2Config, GPT2LMHeadModel

    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=50))
    with pytest.raises(ValueError, match="unsupported architecture 'gpt2': Locret supports"):
        locret.from_pretrained(gpt2)
