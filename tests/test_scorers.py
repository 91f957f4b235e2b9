"""The baseline scorers run through the same loop and keep what their definitions say."""

import pytest
import torch
from tiny import LineTokenizer, SentenceEndTokenizer, tiny_locret

import locret
from locret import LocretConfig
from locret.cache import LocretLayer, append_pooled_scores
from locret.generation import new_cache
from locret.models.base import collecting_scores
from locret.scorers import SCORERS, LineScorer, RetainingHeadScorer, StreamingLLMScorer, SurprisalScorer
from locret.scorers.base import attention_received

CONFIG = LocretConfig(budget=24, chunk_size=8, n_stabilizers=4, n_local=4)


class PromptTokenizer:
    """The reconstruction scorer's prompts as fixed tiny-vocabulary ids (a tiny model has no tokenizer)."""

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return [5, 6, 7] if "previous context exactly.\n" in text else [8, 9]


def make_scorer(name: str):
    if name == "reconstruct":
        return SCORERS[name](tokenizer=PromptTokenizer())
    if name == "surprisal":
        return SurprisalScorer(tokenizer=SentenceEndTokenizer(set(range(0, 97, 7))), max_sentence=4)
    if name == "lines":
        return LineScorer(tokenizer=LineTokenizer(set(range(0, 97, 7))), max_line=4)
    return SCORERS[name]()


@pytest.mark.parametrize("name", sorted(SCORERS))
def test_every_scorer_respects_the_budget(name):
    model = tiny_locret("llama")
    cache = new_cache(model, CONFIG, scorer=make_scorer(name), track_positions=True)
    ids = torch.randint(3, 97, (1, 150), generator=torch.Generator().manual_seed(0))
    out = locret.generate(model, ids, cache=cache, max_new_tokens=3)
    assert out.cache_length_after_prefill == CONFIG.budget + CONFIG.n_local
    for layer in cache.layers:
        positions = layer.positions[0]
        assert bool((positions[:, 1:] > positions[:, :-1]).all())


def test_streaming_llm_keeps_sinks_and_recent():
    model = tiny_locret("llama")
    cache = new_cache(model, CONFIG, scorer=StreamingLLMScorer(n_sink=4), track_positions=True)
    ids = torch.randint(3, 97, (1, 100), generator=torch.Generator().manual_seed(0))
    locret.generate(model, ids, cache=cache, max_new_tokens=1)
    prefix = 100 - CONFIG.n_local
    expected = list(range(4)) + list(range(prefix - (CONFIG.budget - 4), prefix)) + list(range(prefix, 100))
    for layer in cache.layers:
        for head in layer.positions[0]:
            assert head.tolist() == expected


def test_attention_received_sums_each_heads_causal_softmax():
    torch.manual_seed(0)
    query, key = torch.randn(1, 4, 3, 8), torch.randn(1, 2, 5, 8)  # 3 new tokens, the last 3 of 5 keys
    received = attention_received(query, key, scaling=8**-0.5)
    expected = torch.zeros(1, 2, 5)
    for head in range(4):  # written out: each query head, each query row, its own causal softmax
        for row in range(3):
            visible = 5 - 3 + row + 1
            logits = query[0, head, row] @ key[0, head // 2, :visible].T * 8**-0.5
            expected[0, head // 2, :visible] += torch.softmax(logits, dim=-1)
    torch.testing.assert_close(received, expected, atol=1e-6, rtol=1e-6)
    assert torch.allclose(received.sum(-1), torch.full((1, 2), 6.0))  # 2 heads x 3 rows per KV head
    huge = attention_received(query * 1e4, key, scaling=1.0)  # logits ~1e4: no overflow, still sums to 6
    assert torch.isfinite(huge).all() and torch.allclose(huge.sum(-1), torch.full((1, 2), 6.0))


def test_score_pooling_takes_the_neighbourhood_maximum_across_appends():
    """Pooled in two appends (a chunk boundary between the 5.0 and its neighbours) as if in one."""
    raw = torch.tensor([[[0.0, 5.0, 0.0, 0.0, 1.0, 0.0], [2.0, 0.0, 0.0, 0.0, 0.0, 3.0]]])
    layer = LocretLayer(LocretConfig(score_pooling=3))
    keys = torch.zeros(1, 2, 6, 4)
    layer.update(keys[:, :, :2], keys[:, :, :2], scores=raw[..., :2])
    assert layer.scores.tolist() == [[[5.0, 5.0], [2.0, 2.0]]]  # the right neighbours have not arrived yet
    layer.update(keys[:, :, 2:], keys[:, :, 2:], scores=raw[..., 2:])
    expected = [[[5.0, 5.0, 5.0, 1.0, 1.0, 1.0], [2.0, 2.0, 0.0, 0.0, 3.0, 3.0]]]
    assert layer.scores.tolist() == expected
    empty = raw[..., :0]
    assert torch.equal(
        append_pooled_scores(empty, empty, raw, kernel=1)[0], raw
    )  # the paper's unpooled scores


@pytest.mark.parametrize("chunk_size", [32, 8, 5])
def test_pooled_cache_scores_do_not_depend_on_chunk_boundaries(chunk_size):
    """No eviction (budget above the prompt): the stored scores are the whole prompt's raw head scores
    max-pooled at once, whatever the chunking, the question's first tokens completing the context's last."""
    model = tiny_locret("llama")
    ids = torch.randint(3, 97, (1, 20), generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), collecting_scores(model) as sinks:
        model(ids)
    config = LocretConfig(budget=24, chunk_size=chunk_size, n_stabilizers=2, n_local=3, score_pooling=5)
    cache = new_cache(model, config)
    locret.generate(model, ids, cache=cache, max_new_tokens=1)
    for layer, sink in zip(cache.layers, sinks, strict=True):
        raw = sink[0].transpose(1, 2)  # [B, Hkv, T]
        expected = torch.nn.functional.max_pool1d(raw, 5, stride=1, padding=2)
        assert torch.allclose(layer.scores[..., :17], expected[..., :17], atol=1e-5)
        assert torch.isinf(layer.scores[..., 17:20]).all()  # the protected local tail
        assert not torch.allclose(layer.scores[..., :17], raw[..., :17])


def test_pooling_with_eviction_keeps_every_stored_score_exact():
    """With eviction each chunk's raw scores differ from a full forward's, so record them as produced: every
    stored entry's score must be the maximum raw score within two tokens of it."""

    class Recording(RetainingHeadScorer):
        def __init__(self):
            self.raw: dict[int, list[torch.Tensor]] = {}

        def score_new(self, attention, head_input, query, key, positions):
            scores = super().score_new(attention, head_input, query, key, positions)
            self.raw.setdefault(attention.layer_idx, []).append(scores)
            return scores

    model = tiny_locret("llama")
    ids = torch.randint(3, 97, (1, 90), generator=torch.Generator().manual_seed(1))
    config = LocretConfig(budget=16, chunk_size=7, n_stabilizers=2, n_local=1, score_pooling=5)
    scorer = Recording()
    cache = new_cache(model, config, scorer=scorer, track_positions=True)
    locret.generate(model, ids, cache=cache, max_new_tokens=1)
    for index, layer in enumerate(cache.layers):
        raw = torch.cat(scorer.raw[index], dim=-1)
        pooled = torch.nn.functional.max_pool1d(raw, 5, stride=1, padding=2)
        context = layer.positions < 89  # the last token is the protected local tail
        assert context.sum() == 2 * 16  # KV heads x budget
        expected = pooled.gather(-1, layer.positions)
        assert torch.allclose(layer.scores[context], expected[context], atol=1e-6)
