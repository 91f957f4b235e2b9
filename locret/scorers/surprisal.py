"""Sentence surprisal: each entry scores the mean surprisal of its sentence under the model itself, the same in
every layer and KV head, so whole sentences are kept or dropped together everywhere.

Why: on prose, a fact a later question asks about is information the text around it did not predict.
Selective Context (Li et al., 2023) and LLMLingua (Jiang et al., 2023) prune prompts by this self-information;
here it is computed online, chunk by chunk, from the logits of the prefill's own forward (one ``lm_head``
pass per chunk, no second forward and no question), and averaged per sentence, because a single surprising
token (the first digit of a number) is kept in vain when the rest of its sentence is not: a token's surprisal
alone kept no needle in prose (issue 25), the sentence mean ranks the needle's sentence near the top
(``benchmark/results/natural_val_smollm2/surprisal/``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from .segments import SegmentMeanScorer, token_text_flags

LOGIT_ROWS = 128  # hidden states turned into logits at once (memory: LOGIT_ROWS x vocabulary floats)
SENTENCE_END = ".!?"  # a token whose text ends with one of these (closing quotes aside) ends a sentence
CLOSING = "\"')]}”’» \t\n"
SOFTMAX_TOKENS = 8192  # the default ``softmax_tokens``: the vocabulary's first ids the softmax runs over


def sentence_end_tokens(tokenizer, vocab_size: int) -> torch.Tensor:
    """``[vocab_size]`` bool: True for the ids whose text ends a sentence: it ends with ``.``, ``!`` or ``?``
    (closing quotes, brackets and whitespace aside) or holds a blank line (a paragraph's end; a single line
    break is not one, as hard-wrapped text breaks lines inside sentences)."""

    def ends_sentence(text: str) -> bool:
        stripped = text.rstrip(CLOSING)
        return "\n\n" in text or (bool(stripped) and stripped[-1] in SENTENCE_END)

    return token_text_flags(tokenizer, vocab_size, ends_sentence)


def token_surprisal(
    model, hidden_states: torch.Tensor, targets: torch.Tensor, softmax_tokens: int | None = None
) -> torch.Tensor:
    """``-log p(targets[:, t] | hidden_states[:, t])`` ``[B, T]`` in float32 from the model's output
    embeddings (and its final logit soft-capping, where it has one), ``LOGIT_ROWS`` rows at a time.

    ``softmax_tokens`` sums the softmax's normalizer over the vocabulary's first ``softmax_tokens`` ids and
    the target only (None, or at least the vocabulary's size: the whole vocabulary): BPE tokenizers number
    their tokens in merge order, so the first ids are the frequent ones and hold most of the probability mass.
    The surprisal comes out lower by the mass left out, about alike for every token, at a fraction of the
    ``lm_head``'s cost."""
    head = model.get_output_embeddings()
    weight, bias = head.weight, head.bias
    if softmax_tokens is not None and softmax_tokens < 1:
        raise ValueError(f"softmax_tokens must be None or >= 1, got {softmax_tokens}")
    rows = weight.shape[0] if softmax_tokens is None else min(softmax_tokens, weight.shape[0])
    partial = rows < weight.shape[0]
    cap = getattr(model.config, "final_logit_softcapping", None)
    parts = []
    for start in range(0, hidden_states.shape[1], LOGIT_ROWS):
        states, wanted = hidden_states[:, start : start + LOGIT_ROWS], targets[:, start : start + LOGIT_ROWS]
        logits = torch.nn.functional.linear(states, weight[:rows], None if bias is None else bias[:rows])
        if partial:  # one more column: the target's logit where its row is left out
            own = (states * weight[wanted]).sum(-1, keepdim=True)
            logits = torch.cat([logits, own if bias is None else own + bias[wanted, None]], dim=-1)
        logits = logits.float()
        if cap:
            logits = torch.tanh(logits / cap) * cap
        if partial:
            outside = wanted >= rows
            logits[..., -1].masked_fill_(~outside, -math.inf)  # a target inside the rows counts once
            wanted = torch.where(outside, rows, wanted)
        picked = logits.gather(-1, wanted[..., None])[..., 0]
        parts.append(torch.logsumexp(logits, dim=-1) - picked)
    return torch.cat(parts, dim=1)


def chunk_surprisal(
    model,
    state: dict,
    input_ids: torch.Tensor,
    start: int,
    end: int,
    hidden_states: torch.Tensor,
    softmax_tokens: int | None,
) -> torch.Tensor:
    """The surprisal ``[B, end - start]`` of the prefill chunk ``input_ids[:, start:end]`` from its final
    ``hidden_states``: each state scores the token after it, so the chunk's last state scores the next chunk's
    first token (kept in ``state["next_surprisal"]``) and a chunk boundary by itself changes no score; the
    input's first token scores 0."""
    following = input_ids[:, start + 1 : end + 1]  # the token each hidden state predicts
    predicted = token_surprisal(model, hidden_states[:, : following.shape[1]], following, softmax_tokens)
    carried = state.get("next_surprisal")
    if carried is None:  # the input's first token: nothing predicts it (a sink)
        carried = predicted.new_zeros(input_ids.shape[0], 1)
    surprisal = torch.cat([carried, predicted], dim=1)[:, : end - start]
    state["next_surprisal"] = predicted[:, end - start - 1 :] if following.shape[1] == end - start else None
    return surprisal


@dataclass
class SurprisalScorer(SegmentMeanScorer):
    """Sentence surprisal: mean -log p of an entry's sentence under the model itself, in every layer and head.

    After every prefill chunk, ``rescore_chunk`` turns the chunk's final hidden states into each token's
    surprisal (the next chunk's first token is scored from this chunk's last state, so a chunk boundary by
    itself changes no score), splits the text into sentences at tokens that end one (``sentence_end_tokens``; at most
    ``max_sentence`` tokens each) and gives every token of a sentence the sentence's mean (``SegmentMeanScorer``:
    a sentence still open at a chunk's end is rescored when it closes, ``n_stabilizers >= max_sentence``). The
    input's first ``N_SINKS`` tokens score +inf.

    ``prior_tokens`` shrinks each sentence's mean toward the input's mean surprisal so far (up to the
    sentence's end) by that many pseudo-tokens: ``(sum + prior_tokens * input_mean) / (length +
    prior_tokens)``. Why: the mean of a short sentence is a noisy estimate, and short quoted exclamations and
    names top an unshrunk ranking, fill the cache with fragments and are what the model then answers with
    (``benchmark/results/natural_val_smollm2/surprisal/``); shrunk, a fragment must be far more surprising
    than a full sentence to win. Off by default (0): on two validation draws 24 found as many needles as the
    plain mean (44 of 110), more on one draw and fewer on the other
    (``benchmark/results/natural_val_smollm2/surprisal_prior/``).

    ``surprising_share`` (None: every entry competes by surprisal) keeps that share of the budget
    (``int(surprising_share * budget)`` entries) for the most surprising entries of the input so far and gives
    the rest to the newest entries. Why: with every entry ranked by surprisal the cache becomes a patchwork of
    surprising sentences that distracts the model from the one a question needs (kept in 7 of 10 validation
    prompts, answered in 1 of those 7, ``benchmark/results/natural_val_smollm2/surprisal/``), where the needle
    oracle keeps the fact and otherwise coherent recent text. Off by default: 1/8 led on validation at 8K-16K
    and on ``multidoc_qa`` (17 answers in 140 against 13), but on the test split it found 26 of 100 prose
    needles at 4K-32K against 50 and gained 5 ``multidoc_qa`` answers, and at 32K on validation it found 2 of 15 needles
    against 3 (``benchmark/results/natural_test_smollm2_surprisal_v2/``,
    ``benchmark/results/natural_val_smollm2/surprisal_defaults/``).

    ``softmax_tokens`` (None: the whole vocabulary) normalizes each token's probability over the vocabulary's
    first ids and the token itself only (``token_surprisal``): on SmolLM2 the whole vocabulary's ``lm_head``
    took prefill to 0.72x the heads' speed, 8192 ids to 0.96x with the same answer in every validation case
    (``benchmark/results/natural_val_smollm2/surprisal_defaults/``).

    Needs ``score_pooling=1`` (the sentence is the pooling), ``budget_allocation="uniform"`` and no eviction
    while decoding (tokens the prefill did not read have no surprisal). ``tokenizer`` finds the sentence
    ends; None: the model's own (``model.config.name_or_path``).
    """

    tokenizer: Any = field(default=None, repr=False, compare=False)
    max_sentence: int = 64
    prior_tokens: float = 0.0
    surprising_share: float | None = None
    softmax_tokens: int | None = SOFTMAX_TOKENS

    what: ClassVar[str] = "surprisal"
    segment: ClassVar[str] = "sentence"
    limit_field: ClassVar[str] = "max_sentence"

    def __post_init__(self) -> None:
        self.check_segment_settings()
        if self.softmax_tokens is not None and self.softmax_tokens < 1:
            raise ValueError(f"softmax_tokens must be None or >= 1, got {self.softmax_tokens}")

    @property
    def segment_limit(self) -> int:
        return self.max_sentence

    def segment_end_tokens(self, tokenizer, vocab_size: int) -> torch.Tensor:
        return sentence_end_tokens(tokenizer, vocab_size)

    def token_values(
        self, model, cache, input_ids: torch.Tensor, start: int, end: int, hidden_states: torch.Tensor
    ) -> torch.Tensor:
        """Each token's surprisal (``chunk_surprisal``)."""
        return chunk_surprisal(
            model, cache.scorer_state, input_ids, start, end, hidden_states, self.softmax_tokens
        )
