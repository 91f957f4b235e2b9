"""The sentence-surprisal scorer on tiny random models: with no eviction its scores are the sentence means of
one full forward's surprisal whatever the chunking (sentences crossing chunks rescored), the same in every
layer and head, bounded by the budget with eviction, and clear refusals."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from tiny import SentenceEndTokenizer, random_ids, tiny_locret

import locret
from locret.compat import CACHE_KWARG
from locret.config import LocretConfig
from locret.prefill import new_cache, prefill_prompt
from locret.scorers import SCORERS, SurprisalScorer
from locret.scorers.segments import N_SINKS
from locret.scorers.surprisal import sentence_end_tokens, token_surprisal

VOCAB = 97
ENDS = {11, 23, 40, 41, 77}  # the tiny vocabulary's "sentence-ending" ids (41: a blank line)


def tokenizer() -> SentenceEndTokenizer:
    return SentenceEndTokenizer(ENDS, paragraph=41)


def scorer(
    max_sentence: int = 6,
    surprising_share: float | None = None,
    softmax_tokens: int | None = None,
    prior_tokens: float = 0.0,
) -> SurprisalScorer:
    return SurprisalScorer(
        tokenizer=tokenizer(),
        max_sentence=max_sentence,
        prior_tokens=prior_tokens,
        surprising_share=surprising_share,
        softmax_tokens=softmax_tokens,
    )


def partial_log_softmax(
    logits: torch.Tensor, targets: torch.Tensor, softmax_tokens: int | None
) -> torch.Tensor:
    """log p of ``targets`` ``[n]`` under a softmax over the first ``softmax_tokens`` ids and the target."""
    counted = torch.ones_like(logits, dtype=torch.bool)
    if softmax_tokens is not None:
        counted[:, softmax_tokens:] = False
        counted.scatter_(-1, targets[:, None], True)
    normalizer = logits.masked_fill(~counted, -math.inf).logsumexp(-1)
    return logits.gather(-1, targets[:, None])[:, 0] - normalizer


def expected_scores(
    model,
    ids: torch.Tensor,
    max_sentence: int,
    softmax_tokens: int | None = None,
    prior_tokens: float = 0.0,
) -> torch.Tensor:
    """Sentence-mean surprisal ``[n]`` of ``ids`` ``[1, n]`` from one full forward, written out token by token,
    each mean with ``prior_tokens`` pseudo-tokens at the mean surprisal of the input up to the sentence's end."""
    with torch.no_grad():
        logits = model(ids).logits[0].float()
    surprisal = [0.0] + (-partial_log_softmax(logits[:-1], ids[0, 1:], softmax_tokens)).tolist()
    scores, sentence = [], []
    for index, value in enumerate(surprisal):
        sentence.append(value)
        if ids[0, index].item() in ENDS or len(sentence) == max_sentence or index == len(surprisal) - 1:
            prior = sum(surprisal[: index + 1]) / (index + 1)
            mean = (sum(sentence) + prior_tokens * prior) / (len(sentence) + prior_tokens)
            scores += [mean] * len(sentence)
            sentence = []
    scores[:N_SINKS] = [math.inf] * N_SINKS
    return torch.tensor(scores)


def test_sentence_end_tokens_follow_punctuation_and_blank_lines():
    ends = sentence_end_tokens(tokenizer(), VOCAB)
    assert set(torch.nonzero(ends)[:, 0].tolist()) == ENDS  # " w5\n" (a single line break) ends nothing


@pytest.mark.parametrize("softmax_tokens,prior_tokens", [(None, 0.0), (30, 0.0), (None, 5.0)])
@pytest.mark.parametrize("chunk_size", [40, 7, 3])
def test_scores_are_sentence_means_of_a_full_forward_whatever_the_chunking(
    chunk_size, softmax_tokens, prior_tokens
):
    """Budget above the prompt: nothing is evicted, so every stored score is final and must equal the
    sentence means of one forward, also for sentences that a chunk boundary cut (rescored when they close),
    with the whole vocabulary's softmax or one over its first ids and the target, and with the means shrunk
    toward the input's mean so far by ``prior_tokens``."""
    model = tiny_locret("llama")
    ids = random_ids(41, seed=5)
    ids[0, [8, 15, 16, 30]] = torch.tensor([11, 23, 41, 77])  # sentences of 9, 7, 1 and 14 tokens
    config = LocretConfig(budget=64, chunk_size=chunk_size, n_stabilizers=6, n_local=1)
    made = scorer(6, softmax_tokens=softmax_tokens, prior_tokens=prior_tokens)
    cache = prefill_prompt(model, ids, config, cache=new_cache(model, config, scorer=made))
    expected = expected_scores(model, ids[:, :40], 6, softmax_tokens, prior_tokens)
    for layer in cache.layers:
        assert layer.stored_length() == 40
        for head in layer.scores[0]:  # the same in every layer and KV head
            torch.testing.assert_close(head, expected, rtol=1e-4, atol=1e-4)


def test_evicts_to_the_budget_keeping_whole_sentences_alike_everywhere_and_generates():
    model = tiny_locret("llama")
    ids = random_ids(120, seed=6)
    ids[0, 10:110:9] = 23  # a sentence end every nine tokens
    config = LocretConfig(budget=24, chunk_size=16, n_stabilizers=8, n_local=2)
    cache = new_cache(model, config, scorer=scorer(8), track_positions=True)
    out = locret.generate(model, ids, config, cache=cache, max_new_tokens=3)
    assert out.cache_length_after_prefill == config.budget + config.n_local
    first = cache.layers[0].positions[0, 0]
    assert first[:N_SINKS].tolist() == list(range(N_SINKS))
    for layer in cache.layers:
        assert torch.equal(layer.positions[0], first.expand_as(layer.positions[0]))


@pytest.mark.parametrize("chunk_size", [16, 5])
@pytest.mark.parametrize("top_sentences", [1, 2, 3])
def test_a_surprising_share_keeps_the_top_sentences_of_the_input_and_otherwise_the_newest(
    chunk_size, top_sentences
):
    """With ``surprising_share`` set to keep the tokens of the input's top sentences (by a full forward's
    sentence means), the cache holds the sinks, exactly those sentences, and the newest of the other tokens;
    also when chunks are shorter than sentences, whose provisional means must not compete. The attention
    outputs are zeroed so that each token's surprisal does not depend on what was evicted before it."""
    model = tiny_locret("llama")
    for layer in model.model.layers:
        torch.nn.init.zeros_(layer.self_attn.o_proj.weight)
    ids = random_ids(121, seed=12)
    ids[torch.isin(ids, torch.tensor(sorted(ENDS)))] = 5
    ids[0, 10:120:9] = 23  # sentences of 9 tokens (top three: those from 65, 101 and 56)
    means = expected_scores(model, ids[:, :120], max_sentence=10)[N_SINKS:]
    threshold = means.unique().sort(descending=True).values[top_sentences - 1]
    surprising = {N_SINKS + index for index in torch.nonzero(means >= threshold)[:, 0].tolist()}
    config = LocretConfig(budget=44, chunk_size=chunk_size, n_stabilizers=10, n_local=1)
    share = (len(surprising) + 0.5) / config.budget  # int(share * budget) == len(surprising)
    cache = new_cache(
        model, config, scorer=scorer(10, share)
    )  # tracks positions by itself: the scorer needs them
    prefill_prompt(model, ids, config, cache=cache)
    others = [position for position in range(N_SINKS, 120) if position not in surprising]
    newest = others[len(others) - (config.budget - N_SINKS - len(surprising)) :]
    expected = set(range(N_SINKS)) | surprising | set(newest)
    assert 0 < len(surprising) <= config.budget - N_SINKS - config.n_stabilizers
    assert min(surprising) < newest[0]  # not all recent
    for layer in cache.layers:
        assert set(layer.positions[0, 0].tolist()) == expected


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"score_pooling": 3}, "score_pooling=1"),
        ({"decode_budget": 40}, "decode_budget=None"),
        ({"budget_allocation": "adaptive"}, "budget_allocation='uniform'"),
        ({"n_stabilizers": 4}, "n_stabilizers"),
        ({"budget": 12}, "surprising_share"),
    ],
)
def test_refuses_settings_it_cannot_serve(settings, message):
    model = tiny_locret("llama")
    config = LocretConfig(**{"budget": 24, "chunk_size": 8, "n_stabilizers": 8, "n_local": 2, **settings})
    cache = new_cache(model, config, scorer=scorer(6, surprising_share=0.4))
    with pytest.raises(ValueError, match=message):
        prefill_prompt(model, random_ids(40), config, cache=cache)


class OutputHead(torch.nn.Module):
    """A bare output layer with a config, what ``token_surprisal`` reads of a model."""

    def __init__(self, bias: bool, softcapping: float | None):
        super().__init__()
        self.head = torch.nn.Linear(16, 50, bias=bias)
        self.config = SimpleNamespace(final_logit_softcapping=softcapping)

    def get_output_embeddings(self) -> torch.nn.Linear:
        return self.head


@pytest.mark.parametrize("softcapping", [None, 5.0])
@pytest.mark.parametrize("bias", [False, True])
def test_a_partial_softmax_normalises_over_the_first_ids_and_the_target(bias, softcapping):
    """Targets inside and outside the first ids, over more rows than one ``LOGIT_ROWS`` block."""
    torch.manual_seed(0)
    model = OutputHead(bias, softcapping)
    states, targets = torch.randn(2, 300, 16), torch.randint(0, 50, (2, 300))
    logits = model.head(states).detach()
    if softcapping:
        logits = torch.tanh(logits / softcapping) * softcapping
    for softmax_tokens in (None, 1, 20, 50):
        expected = -torch.stack(
            [
                partial_log_softmax(row, goal, softmax_tokens)
                for row, goal in zip(logits, targets, strict=True)
            ]
        )
        torch.testing.assert_close(token_surprisal(model, states, targets, softmax_tokens), expected)
    whole = token_surprisal(model, states, targets)
    torch.testing.assert_close(token_surprisal(model, states, targets, 51), whole, rtol=0, atol=0)
    with pytest.raises(ValueError, match="softmax_tokens must be None or >= 1"):
        token_surprisal(model, states, targets, 0)


def test_is_registered_and_checks_max_sentence():
    assert SCORERS["surprisal"] is SurprisalScorer and SurprisalScorer.rescores_chunks
    with pytest.raises(ValueError, match="max_sentence"):
        SurprisalScorer(max_sentence=0)
    for share in (0, 1):
        with pytest.raises(ValueError, match="surprising_share"):
            SurprisalScorer(surprising_share=share)
    with pytest.raises(ValueError, match="softmax_tokens"):
        SurprisalScorer(softmax_tokens=0)
    with pytest.raises(ValueError, match="prior_tokens"):
        SurprisalScorer(prior_tokens=-1)


def test_a_chunk_evicted_before_it_is_scored_is_an_error():
    """No silent placeholder: a chunk's forward whose eviction comes before ``rescore_chunk`` raises."""
    model = tiny_locret("llama")
    config = LocretConfig(budget=8, chunk_size=16, n_stabilizers=6, n_local=1)
    cache = new_cache(model, config, scorer=scorer(6))
    cache.prefilling = True
    with cache.scorer.chunk_pass(), pytest.raises(RuntimeError, match="SurprisalScorer's chunk was evicted"):
        model.model(input_ids=random_ids(16, seed=6), use_cache=True, **{CACHE_KWARG: cache})
