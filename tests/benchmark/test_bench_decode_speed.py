"""``benchmark.decode_speed`` sizes the plain cache by Locret's entries per layer and KV head, on average."""

from __future__ import annotations

from tiny import random_ids, tiny_locret

from benchmark.decode_speed import mean_entries
from locret import LocretConfig
from locret.generation import prefill_prompt


def test_mean_entries_counts_held_entries_not_pad_slots():
    model = tiny_locret("llama")
    settings = {"budget": 16, "chunk_size": 8, "n_stabilizers": 4, "n_local": 4}
    uniform = prefill_prompt(model, random_ids(60), LocretConfig(**settings))
    assert mean_entries(uniform) == uniform.stored_length()
    shares = tuple((0.5, 1.5) for _ in range(model.config.num_hidden_layers))
    profile = prefill_prompt(
        model, random_ids(60), LocretConfig(budget_allocation="profile", head_shares=shares, **settings)
    )
    assert profile.stored_length() == 24  # the longest head's slots
    assert mean_entries(profile) == 16  # (8 + 24) / 2 held entries per head
