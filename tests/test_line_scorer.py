"""The lines scorer (``locret.scorers.lines``): the heads' standardized scores averaged per line, the same in every
layer and KV head, on tiny random Llamas."""

from __future__ import annotations

import pytest
import torch
from tiny import LineTokenizer, tiny_locret

import locret
from locret import LocretConfig
from locret.generation import new_cache
from locret.scorers import SCORERS, LineScorer
from locret.scorers.lines import WINDOW_LINE, line_end_tokens
from locret.scorers.segments import N_SINKS
from locret.scorers.surprisal import token_surprisal

BREAKS = set(range(0, 97, 11))  # ids that decode to a line break
STOPS = frozenset(range(5, 97, 13))  # ids that decode to a word ending a sentence
CONFIG = LocretConfig(budget=40, chunk_size=16, n_stabilizers=12, n_local=4)


def line_numbers(ids: list[int], max_line: int, ends: frozenset[int] | set[int] = BREAKS) -> list[int]:
    """Each token's line: a line ends with an id of ``ends`` or after ``max_line`` tokens."""
    numbers, line, length = [], 0, 0
    for token in ids:
        numbers.append(line)
        length += 1
        if token in ends or length >= max_line:
            line, length = line + 1, 0
    return numbers


def prefilled(
    ids: torch.Tensor,
    config: LocretConfig = CONFIG,
    max_line: int = 10,
    keep_window_line: bool = True,
    split_sentences: bool = False,
):
    model = tiny_locret("llama")
    scorer = LineScorer(
        tokenizer=LineTokenizer(BREAKS, STOPS),
        max_line=max_line,
        keep_window_line=keep_window_line,
        split_sentences=split_sentences,
    )
    cache = new_cache(model, config, scorer=scorer, track_positions=True)
    locret.prefill_prompt(model, ids, config, cache=cache)
    return cache


def test_line_end_tokens_mark_the_ids_that_decode_to_a_line_break():
    ends = line_end_tokens(LineTokenizer(BREAKS), 100)
    assert ends.shape == (100,) and set(ends.nonzero().flatten().tolist()) == BREAKS


@pytest.mark.parametrize("split_sentences", [False, True])
def test_every_layer_and_head_keeps_the_same_entries_and_a_line_shares_one_score(split_sentences: bool):
    """A segment is a line (ended by a break or ``max_line``); with ``split_sentences`` a sentence's end
    (a word ending in ``.``) ends one too."""
    ids = torch.randint(1, 97, (1, 200), generator=torch.Generator().manual_seed(3))
    cache = prefilled(ids, split_sentences=split_sentences)
    first = cache.layers[0]
    kept = first.positions[0, 0]
    assert len(kept) == CONFIG.budget
    for layer in cache.layers:
        assert all(torch.equal(layer.positions[0, h], kept) for h in range(layer.positions.shape[1]))
        torch.testing.assert_close(layer.scores, first.scores)
    ends = BREAKS | STOPS if split_sentences else BREAKS
    lines = torch.tensor(line_numbers(ids[0].tolist(), 10, ends))[kept]
    scores = first.scores[0, 0]
    assert torch.isinf(scores[:N_SINKS]).all()
    for line in lines[N_SINKS:].unique():
        same = (lines == line) & torch.isfinite(scores) & (scores != WINDOW_LINE)
        assert torch.allclose(scores[same], scores[same][0]), f"line {line.item()} holds different scores"
    if split_sentences:  # a line that a sentence's end splits holds two scores: the split is real
        whole_lines = torch.tensor(line_numbers(ids[0].tolist(), 10))[kept]
        finite = torch.isfinite(scores) & (scores != WINDOW_LINE)
        assert any(
            len(scores[(whole_lines == line) & finite].unique()) > 1
            for line in whole_lines[N_SINKS:].unique()
        )


def test_sentence_ends_are_line_ends_plus_the_ids_ending_a_sentence():
    scorer = LineScorer(tokenizer=LineTokenizer(BREAKS, STOPS), split_sentences=True)
    model = tiny_locret("llama")
    ends = scorer.segment_ends(model, torch.device("cpu"))
    assert set(ends.nonzero().flatten().tolist()) == BREAKS | STOPS
    assert scorer.ends_kind != LineScorer().ends_kind  # the per-process cache of ends tells them apart


def window_line_kept_whole(seed: int, keep_window_line: bool) -> bool:
    """Whether the last eviction kept all of the line the protected window (the newest 12 prefilled tokens)
    starts in."""
    ids = torch.randint(1, 97, (1, 200), generator=torch.Generator().manual_seed(seed))
    kept = set(prefilled(ids, keep_window_line=keep_window_line).layers[0].positions[0, 0].tolist())
    numbers = line_numbers(ids[0].tolist(), 10)
    window_start = ids.shape[1] - CONFIG.n_local - CONFIG.n_stabilizers
    line = [position for position, number in enumerate(numbers) if number == numbers[window_start]]
    return all(position in kept for position in line)


def test_the_line_the_protected_window_starts_in_is_kept_whole():
    assert all(window_line_kept_whole(seed, keep_window_line=True) for seed in range(8))
    assert not all(window_line_kept_whole(seed, keep_window_line=False) for seed in range(8)), (
        "without keep_window_line some window lines should be cut, or this test shows nothing"
    )


def test_token_values_standardize_each_head_by_the_input_so_far_and_average_them():
    """Two chunks of fake head scores: the second's values use the moments of both chunks (sinks left out)."""
    scorer = LineScorer(tokenizer=LineTokenizer(BREAKS), surprisal_weight=0)

    class Cache:
        layers = [None, None]
        scorer_state: dict = {}

    generator = torch.Generator().manual_seed(0)
    chunks = [torch.randn(1, 2, 3, 8, generator=generator) * 3 + 1 for _ in range(2)]  # [B, layers, Hkv, T]
    values = []
    for index, chunk in enumerate(chunks):
        scorer._chunk = {layer: chunk[:, layer] for layer in range(2)}
        values.append(scorer.token_values(None, Cache, torch.zeros(1, 17), index * 8, index * 8 + 8, None))
    seen = torch.cat([chunks[0][..., N_SINKS:], chunks[1]], dim=-1)
    mean, std = seen.mean(-1, keepdim=True), seen.std(-1, unbiased=False, keepdim=True)
    torch.testing.assert_close(values[1], ((chunks[1] - mean) / std).mean(dim=(1, 2)))
    assert scorer._chunk == {}


def test_surprisal_weight_adds_the_standardized_surprisal_to_the_standardized_head_average():
    """Two chunks: the value is z(head average) + weight * z(surprisal), each z by the moments of the input so
    far, the surprisal that of ``token_surprisal`` over the whole input (the chunk boundary changes nothing)."""
    model = tiny_locret("llama")
    weight = 0.5
    scorer = LineScorer(tokenizer=LineTokenizer(BREAKS), surprisal_weight=weight)
    plain = LineScorer(tokenizer=LineTokenizer(BREAKS), surprisal_weight=0)

    class Cache:
        layers = [None, None]
        scorer_state: dict = {}

    class PlainCache(Cache):
        scorer_state: dict = {}

    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(1, 97, (1, 17), generator=generator)
    hidden = torch.randn(1, 16, model.config.hidden_size, generator=generator)
    chunks = [torch.randn(1, 2, 3, 8, generator=generator) for _ in range(2)]
    values, heads = [], []
    for index, chunk in enumerate(chunks):
        start, end = index * 8, index * 8 + 8
        for each, cache, out in ((scorer, Cache, values), (plain, PlainCache, heads)):
            each._chunk = {layer: chunk[:, layer] for layer in range(2)}
            out.append(each.token_values(model, cache, ids, start, end, hidden[:, start:end]))
    surprisal = torch.cat([torch.zeros(1, 1), token_surprisal(model, hidden[:, :15], ids[:, 1:16], 8192)], 1)

    def z_last(values: torch.Tensor) -> torch.Tensor:
        seen = values[:, N_SINKS:]
        return (values[:, 8:] - seen.mean()) / seen.std(unbiased=False)

    expected = z_last(torch.cat(heads, 1)) + weight * z_last(surprisal)
    torch.testing.assert_close(values[1], expected, atol=1e-4, rtol=1e-3)  # moments from sums of squares
    assert not torch.allclose(values[1], heads[1]), "the weight should change the values"
    with pytest.raises(ValueError, match="surprisal_weight must be >= 0"):
        LineScorer(surprisal_weight=-1)


def test_a_line_open_at_a_chunks_end_is_rescored_when_it_closes():
    """No break for 30 tokens across two chunks: its stored entries all end with the line's final mean."""
    ids = torch.full((1, 60), 5)
    ids[0, :4] = torch.tensor([11, 22, 33, 44])  # sinks, each its own line
    ids[0, 4:34] = torch.arange(50, 80) % 97  # one line of 30 tokens (none of them a break: 55 and 66 are)
    ids[0, 4:34][torch.isin(ids[0, 4:34], torch.tensor(sorted(BREAKS)))] = 1
    ids[0, 34] = 0  # the break that closes it
    config = LocretConfig(budget=200, chunk_size=16, n_stabilizers=40, n_local=4)
    cache = prefilled(ids, config, max_line=40)
    scores = cache.layers[0].scores[0, 0]
    line = scores[4:35]
    assert torch.allclose(line, line[0]), "the line kept provisional means from earlier chunks"


def test_settings_are_checked_and_it_needs_the_heads():
    assert SCORERS["lines"] is LineScorer and LineScorer.uses_retaining_heads and LineScorer.rescores_chunks
    with pytest.raises(ValueError, match="max_line must be >= 1"):
        LineScorer(max_line=0)
    for top_tokens in (0, 2.5):
        with pytest.raises(ValueError, match="top_tokens must be None or an integer >= 1"):
            LineScorer(top_tokens=top_tokens)
    model = tiny_locret("llama")
    ids = torch.randint(1, 97, (1, 40), generator=torch.Generator().manual_seed(1))
    for config, message in [
        (
            LocretConfig(budget=24, chunk_size=8, n_stabilizers=4, n_local=4),
            "n_stabilizers .4. must be >= max_line",
        ),
        (
            LocretConfig(budget=24, chunk_size=8, n_stabilizers=12, n_local=4, score_pooling=3),
            "pools by line",
        ),
    ]:
        cache = new_cache(model, config, scorer=LineScorer(tokenizer=LineTokenizer(BREAKS), max_line=10))
        with pytest.raises(ValueError, match=message):
            locret.prefill_prompt(model, ids, config, cache=cache)


class IdValueLineScorer(LineScorer):
    """Each token's value is its id / 100, so a line's expected score can be computed from the ids alone."""

    def token_values(self, model, cache, input_ids, start, end, hidden_states):
        self._chunk.clear()
        return input_ids[:, start:end].float() / 100


@pytest.mark.parametrize("top_tokens", [None, 1, 3])
def test_top_tokens_scores_a_line_by_the_mean_of_its_highest_values_across_chunk_boundaries(top_tokens):
    ids = torch.randint(1, 97, (1, 120), generator=torch.Generator().manual_seed(5))
    config = LocretConfig(budget=200, chunk_size=16, n_stabilizers=40, n_local=4)  # nothing is evicted
    model = tiny_locret("llama")
    scorer = IdValueLineScorer(tokenizer=LineTokenizer(BREAKS), max_line=10, top_tokens=top_tokens)
    cache = new_cache(model, config, scorer=scorer, track_positions=True)
    locret.prefill_prompt(model, ids, config, cache=cache)
    scores = cache.layers[0].scores[0, 0][: ids.shape[1] - config.n_local]
    numbers = torch.tensor(line_numbers(ids[0].tolist(), 10))[: len(scores)]
    crossing = 0
    for line in numbers[N_SINKS:].unique():
        members = (numbers == line).nonzero().flatten()  # the sinks' values count in their line too
        values = ids[0, members].float() / 100
        k = len(values) if top_tokens is None else min(top_tokens, len(values))
        expected = values.topk(k).values.mean()
        members = members[members >= N_SINKS]  # the sinks themselves score +inf
        torch.testing.assert_close(scores[members], expected.expand(len(members)))
        crossing += (members.min() // 16 != members.max() // 16).item()
    assert crossing, "some line should cross a chunk boundary, or this test shows less than it says"
