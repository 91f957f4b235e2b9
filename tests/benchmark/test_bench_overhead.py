"""``benchmark.overhead``'s whole-prefill comparison on a tiny model: every side runs the same chunks."""

from __future__ import annotations

import os

import pytest
import torch
from tiny import LineTokenizer, tiny_locret

import locret
from benchmark import overhead
from benchmark.methods.profiles import allocation_settings
from locret.scorers import LineScorer, RetainingHeadScorer


def test_whole_prefill_times_the_same_chunks_on_both_sides():
    model = tiny_locret("llama", vocab_size=512).eval()  # overhead draws ids from 100 to vocab - 100
    config = locret.LocretConfig(budget=32, chunk_size=16, n_stabilizers=4, n_local=8)
    with torch.no_grad():
        times, tokens, faults = overhead.whole_prefill(model, config, "locret", 120, 2, torch.device("cpu"))
    assert tokens == 120 - 8  # the local tail is left out of both prefills
    chunks = -(-tokens // config.chunk_size)
    for side in ("ceiling", "grouped ceiling", "locret"):
        assert len(times[side]) == 2 and all(len(run) == chunks for run in times[side])
        assert all(seconds > 0 for run in times[side] for seconds in run)
        assert faults[side] >= 0
    assert overhead.best_of_each_chunk(times["locret"]) <= min(sum(run) for run in times["locret"])


def test_grouped_ceiling_forces_grouped_sdpa_only_while_it_runs(monkeypatch):
    monkeypatch.delenv("TRANSFORMERS_SDPA_FORCE_GQA", raising=False)
    inside = []
    overhead.with_grouped_sdpa(lambda: inside.append(os.environ.get("TRANSFORMERS_SDPA_FORCE_GQA")))
    assert inside == ["1"] and "TRANSFORMERS_SDPA_FORCE_GQA" not in os.environ
    monkeypatch.setenv("TRANSFORMERS_SDPA_FORCE_GQA", "0")
    with pytest.raises(RuntimeError):
        overhead.with_grouped_sdpa(lambda: (_ for _ in ()).throw(RuntimeError("chunk failed")))
    assert os.environ["TRANSFORMERS_SDPA_FORCE_GQA"] == "0"


def test_allocation_settings_name_the_config():
    assert allocation_settings("uniform") == {"budget_allocation": "uniform"}
    assert allocation_settings("adaptive") == {"budget_allocation": "adaptive"}
    profile = allocation_settings("profile:smollm2_4k")
    assert profile["budget_allocation"] == "profile" and len(profile["head_shares"]) == 30
    for bad in ("profile", "uniform:x", "global"):
        with pytest.raises(ValueError, match="--allocation"):
            allocation_settings(bad)


def test_a_scorer_that_rescores_chunks_is_timed_over_a_whole_prefill_only(monkeypatch):
    """``lines`` (the shipped heads' recommended scorer) scores each chunk after its forward: its side of a
    whole prefill runs ``prefill_chunk``, as ``prefill_prompt`` does; a steady chunk (one bare forward)
    cannot time it, so that is a usage error."""
    monkeypatch.setattr("sys.argv", ["overhead", "--scorer", "lines"])
    with pytest.raises(SystemExit):
        overhead.main()
    model = tiny_locret("llama", vocab_size=512).eval()
    config = locret.LocretConfig(budget=32, chunk_size=16, n_stabilizers=8, n_local=8)
    made = []

    def scorer():
        made.append(LineScorer(tokenizer=LineTokenizer({11, 22}), max_line=8))
        return made[-1]

    monkeypatch.setattr(overhead, "build_scorer", lambda spec: scorer() if spec == "lines" else None)
    with torch.no_grad():
        times, tokens, _ = overhead.whole_prefill(model, config, "lines", 120, 1, torch.device("cpu"))
    assert len(times["locret"][0]) == -(-tokens // config.chunk_size)
    assert len(made) == 1 and made[0]._ends is not None  # its rescore_chunk ran (it builds the line ends)


def test_scorer_specs_carry_settings_and_bad_ones_are_usage_errors(monkeypatch):
    """``--scorer lines:max_line=32`` times the shipped heads' recommended settings, not the class defaults."""
    assert overhead.build_scorer("lines:max_line=32") == LineScorer(max_line=32)
    assert overhead.build_scorer("locret") == RetainingHeadScorer()
    for bad, message in (("nope", "unknown scorer 'nope'"), ("lines:width=3", r"no settings \['width'\]")):
        with pytest.raises(ValueError, match=message):
            overhead.build_scorer(bad)
        monkeypatch.setattr("sys.argv", ["overhead", "--scorer", bad, "--tokens", "2048"])
        with pytest.raises(SystemExit):
            overhead.main()
