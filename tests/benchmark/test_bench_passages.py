"""Whole-passage selection (``benchmark.passages``): passages split at line breaks, whole ones kept by their
mean score within the budget, and the KVzip method's ``allocation=passage`` on a tiny random Llama."""

from __future__ import annotations

import pytest
import torch
from tiny import LineTokenizer, random_ids, tiny_pair

from benchmark.methods import get_method
from benchmark.passages import N_SINKS, passage_index, passage_keep
from locret.config import LocretConfig
from locret.scorers.lines import line_end_tokens

BREAK = 1  # the line-break token of these tests


def test_line_end_tokens_mark_the_ids_holding_a_line_break():
    ends = line_end_tokens(LineTokenizer({BREAK}), 97)
    assert ends.shape == (97,) and ends[BREAK] and ends.sum() == 1


def test_passages_end_at_line_breaks_and_at_the_longest_passage():
    ids = torch.tensor([5, 6, BREAK, 7, 8, 9, 10, 11, BREAK, 12])
    ends = line_end_tokens(LineTokenizer({BREAK}), 97)
    assert passage_index(ids, ends, max_passage=10).tolist() == [0, 0, 0, 1, 1, 1, 1, 1, 1, 2]
    assert passage_index(ids, ends, max_passage=3).tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3]
    with pytest.raises(ValueError, match="max_passage"):
        passage_index(ids, ends, max_passage=0)


def test_whole_passages_are_kept_by_mean_score_within_the_budget():
    # passages: 0 = sinks and 2 more (6 tokens), 1 (4 tokens, best mean), 2 (5 tokens, second), 3 (3, third),
    # 4 (2 tokens, newest: the recent window)
    passages = torch.tensor([0] * 6 + [1] * 4 + [2] * 5 + [3] * 3 + [4] * 2)
    score = torch.tensor([0.0] * 6 + [9.0] * 4 + [5.0, 5, 5, 5, 5] + [4.0] * 3 + [0.0] * 2)
    keep = passage_keep(score, passages, budget=13, recent=2)
    # sinks (4) + recent (2) = 6; passage 1 costs 4 (room 3 left); passage 2 (5) does not fit, passage 3 (3) does
    assert keep.sum() == 13
    assert keep[:N_SINKS].all() and keep[-2:].all()
    assert keep[passages == 1].all() and keep[passages == 3].all()
    assert not keep[passages == 2].any() and not keep[N_SINKS:6].any()


def test_a_passage_partly_in_the_recent_window_costs_only_its_older_part():
    passages = torch.tensor([0] * 4 + [1] * 4 + [2] * 6)
    score = torch.tensor([0.0] * 4 + [1.0] * 4 + [5.0] * 6)
    keep = passage_keep(score, passages, budget=11, recent=3)  # passage 2: 3 recent, 3 older tokens cost
    assert keep[passages == 2].all() and keep.sum() == 4 + 6 and not keep[passages == 1].any()


def test_room_for_everything_keeps_everything_and_bad_recent_is_rejected():
    passages, score = torch.zeros(8, dtype=torch.long), torch.zeros(8)
    assert passage_keep(score, passages, budget=8, recent=0).all()
    with pytest.raises(ValueError, match="recent"):
        passage_keep(score, passages, budget=4, recent=4)


def test_kvzip_passage_allocation_keeps_whole_lines_the_same_in_every_layer_and_head():
    model, _ = tiny_pair("llama")
    method = get_method("kvzip:scores=recency:allocation=passage:max_passage=8")
    method.tokenizer = LineTokenizer({BREAK})
    context = random_ids(60, seed=4)
    context[0, 9::10] = BREAK  # lines of 10 tokens
    config = LocretConfig(budget=24, chunk_size=16, n_stabilizers=4, n_local=1)
    compressed = method.compress(model, context, config)
    keep = compressed.keep
    assert (keep == keep[0, 0]).all()  # the same tokens in every layer and KV head
    kept = keep[0, 0]
    passages = passage_index(context[0], line_end_tokens(LineTokenizer({BREAK}), 97), 8)
    partial = [p for p in passages.unique().tolist() if 0 < kept[passages == p].sum() < (passages == p).sum()]
    assert set(partial) <= {passages[0].item(), passages[-1].item()}  # only the sinks' and the newest passage
    assert kept.sum() <= 24 and kept[-4:].all()
    assert kept[passages == passages[-5]].all()  # recency: the newest whole passages win
    assert method.params()["allocation"] == "passage" and method.params()["max_passage"] == 8
    with pytest.raises(ValueError, match="evict=locret takes allocation"):
        get_method("kvzip:evict=locret:allocation=passage")
