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
from typing import Any

import torch

from .base import ChunkRescorer

N_SINKS = 4  # the input's first tokens, always kept (attention sinks)
LOGIT_ROWS = 128  # hidden states turned into logits at once (memory: LOGIT_ROWS x vocabulary floats)
SENTENCE_END = ".!?"  # a token whose text ends with one of these (closing quotes aside) ends a sentence
CLOSING = "\"')]}”’» \t\n"
# With a surprising budget the other entries score position - RECENCY_BASE: below every surprisal (>= 0),
# ordered by position, exact in float32 for inputs under 2**24 tokens.
RECENCY_BASE = 2.0**24


def sentence_end_tokens(tokenizer, vocab_size: int) -> torch.Tensor:
    """``[vocab_size]`` bool: True for the ids whose text ends a sentence: it ends with ``.``, ``!`` or ``?``
    (closing quotes, brackets and whitespace aside) or holds a blank line (a paragraph's end; a single line
    break is not one, as hard-wrapped text breaks lines inside sentences)."""
    texts = tokenizer.batch_decode([[index] for index in range(len(tokenizer))])
    ends = torch.zeros(max(vocab_size, len(texts)), dtype=torch.bool)
    for index, text in enumerate(texts):
        stripped = text.rstrip(CLOSING)
        ends[index] = "\n\n" in text or (bool(stripped) and stripped[-1] in SENTENCE_END)
    return ends


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


@dataclass
class SurprisalScorer(ChunkRescorer):
    """Sentence surprisal: mean -log p of an entry's sentence under the model itself, in every layer and head.

    After every prefill chunk, ``rescore_chunk`` turns the chunk's final hidden states into each token's
    surprisal (the next chunk's first token is scored from this chunk's last state, so a chunk boundary by
    itself changes no score), splits the text into sentences at tokens that end one (``sentence_end_tokens``; at most
    ``max_sentence`` tokens each) and gives every token of a sentence the sentence's mean. A sentence still
    open at a chunk's end is scored by its tokens so far and rescored when it closes; its stored tokens are
    the newest ones, which eviction keeps (``n_stabilizers >= max_sentence``). The input's first ``N_SINKS``
    tokens score +inf.

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
    softmax_tokens: int | None = 8192

    @property
    def needs_positions(self) -> bool:
        return self.surprising_share is not None

    def __post_init__(self) -> None:
        if self.max_sentence < 1:
            raise ValueError(f"max_sentence must be >= 1, got {self.max_sentence}")
        if self.prior_tokens < 0:
            raise ValueError(f"prior_tokens must be >= 0, got {self.prior_tokens}")
        if self.surprising_share is not None and not 0 < self.surprising_share < 1:
            raise ValueError(f"surprising_share must be None or in (0, 1), got {self.surprising_share}")
        if self.softmax_tokens is not None and self.softmax_tokens < 1:
            raise ValueError(f"softmax_tokens must be None or >= 1, got {self.softmax_tokens}")
        self._ends: torch.Tensor | None = None  # sentence_end_tokens, computed once per scorer

    def check_config(self, config) -> None:
        """Refuse the settings this scorer cannot serve (see the class docstring)."""
        if config.decode_budget is not None:
            raise ValueError("the surprisal scorer cannot evict while decoding: use decode_budget=None")
        if config.score_pooling != 1:
            raise ValueError("the surprisal scorer pools by sentence: use score_pooling=1")
        if config.budget_allocation != "uniform":
            raise ValueError(
                "the surprisal scorer scores every KV head alike: use budget_allocation='uniform'"
            )
        if config.n_stabilizers < self.max_sentence:
            raise ValueError(
                f"n_stabilizers ({config.n_stabilizers}) must be >= max_sentence ({self.max_sentence}), so that "
                "a sentence still open at a chunk's end is stored until it is rescored"
            )
        room = config.budget - N_SINKS - config.n_stabilizers  # the stabilizers take the newest slots anyway
        surprising = self.surprising_budget(config.budget)
        if surprising is not None and not 1 <= surprising <= room:
            raise ValueError(
                f"surprising_share ({self.surprising_share}) keeps {surprising} of the budget's {config.budget} "
                f"entries; it must keep 1 to {room}, what the {N_SINKS} sinks and the {config.n_stabilizers} "
                "stabilizers leave"
            )

    def surprising_budget(self, budget: int) -> int | None:
        """Entries kept for their surprisal at ``budget``: ``int(surprising_share * budget)``; None: all."""
        return None if self.surprising_share is None else int(self.surprising_share * budget)

    def sentence_ends(self, model, device: torch.device) -> torch.Tensor:
        """``sentence_end_tokens`` of the model's tokenizer on ``device``, built once (not per chunk)."""
        if self._ends is None:
            self._ends = sentence_end_tokens(self.text_tokenizer(model), model.config.vocab_size)
        if self._ends.device != device:
            self._ends = self._ends.to(device)
        return self._ends

    @torch.no_grad()
    def rescore_chunk(
        self, model, cache, input_ids: torch.Tensor, start: int, end: int, hidden_states: torch.Tensor
    ) -> None:
        """Score the chunk ``input_ids[:, start:end]`` just appended to ``cache`` from its final
        ``hidden_states`` ``[B, end - start, hidden]`` and rescore the sentence it continues."""
        state = cache.scorer_state
        following = input_ids[:, start + 1 : end + 1]  # the token each hidden state predicts
        predicted = token_surprisal(
            model, hidden_states[:, : following.shape[1]], following, self.softmax_tokens
        )
        carried = state.get("next_surprisal")
        if carried is None:  # the input's first token: nothing predicts it (a sink)
            carried = predicted.new_zeros(input_ids.shape[0], 1)
        surprisal = torch.cat([carried, predicted], dim=1)[:, : end - start]
        state["next_surprisal"] = (
            predicted[:, end - start - 1 :] if following.shape[1] == end - start else None
        )
        ends = self.sentence_ends(model, input_ids.device)[input_ids[:, start:end]]
        rows = [self._score_row(state, row, surprisal[row], ends[row]) for row in range(input_ids.shape[0])]
        scores, continued = torch.stack([scores for scores, _ in rows]), [tail for _, tail in rows]
        if start < N_SINKS:
            scores[:, : N_SINKS - start] = math.inf
        stored = cache.layers[0].scores[:, 0].clone()  # [B, S]: the same in every layer and KV head
        for row, (count, mean) in enumerate(continued):
            if count:  # the newest stored entries: tokens start - count .. start - 1 (sinks stay +inf)
                tail = stored[row, stored.shape[-1] - count :]
                tail.masked_fill_(tail.isfinite(), mean)
        if self.surprising_share is not None:
            still_open = [state["open"][row][1] for row in range(input_ids.shape[0])]
            capped = self._cap_surprising(
                torch.cat([stored, scores], -1),
                cache.layers[0].positions[:, 0],
                still_open,
                self.surprising_budget(cache.config.budget),
            )
            stored, scores = capped.split([stored.shape[-1], scores.shape[-1]], dim=-1)
        for layer in cache.layers:
            layer.scores.copy_(stored[:, None].expand_as(layer.scores))
            layer.supply_pending_scores(scores[:, None].expand(-1, layer.keys.shape[1], -1))

    def _cap_surprising(
        self, scores: torch.Tensor, positions: torch.Tensor, still_open: list[int], surprising: int
    ) -> torch.Tensor:
        """``scores`` ``[B, S]`` of every stored entry (the chunk's last; sentence means, sinks +inf) with only
        the ``surprising`` most surprising entries so far keeping their surprisal; the others score
        ``position - RECENCY_BASE`` (``positions`` ``[B, S]``), so eviction keeps the newest of them.

        A sentence competes once it is closed (an open one, each row's last ``still_open`` entries, has a
        provisional mean; the stabilizers keep it until it closes) and then with its final mean, so an entry
        loses its place only to a more surprising one and never regains it: the entries still scored by
        surprisal (finite, >= 0) and the chunk's closed sentences are all the candidates there are. The
        result: the input's top ``surprising`` closed sentences' entries, ties aside."""
        if positions.shape != scores.shape:
            raise RuntimeError("surprising_share needs the cache to track positions (new_cache does)")
        if positions[:, -1].max() >= RECENCY_BASE:
            raise ValueError(f"surprising_share supports inputs under {int(RECENCY_BASE)} tokens")
        candidate = scores.isfinite() & (scores >= 0)
        for row, count in enumerate(still_open):
            if count:
                candidate[row, scores.shape[-1] - count :] = False
        ranked = scores.masked_fill(~candidate, -math.inf)
        top = ranked.topk(min(surprising, ranked.shape[-1]), dim=-1).indices
        winners = torch.zeros_like(candidate).scatter_(-1, top, True) & candidate
        keep = winners | (scores == math.inf)
        return torch.where(keep, scores, positions.to(scores.dtype) - RECENCY_BASE)

    def _score_row(
        self, state: dict, row: int, surprisal: torch.Tensor, ends: torch.Tensor
    ) -> tuple[torch.Tensor, tuple[int, float]]:
        """One row's sentence means ``[T]`` and, for the sentence left open by the previous chunk, how many
        of its tokens are stored and their final (or provisional) mean. Per row: sentence ends differ."""
        open_sum, open_count = state.get("open", {}).get(row, (0.0, 0))
        input_sum, input_count = state.get("input", {}).get(row, (0.0, 0))
        stored_open = open_count
        scores = torch.empty_like(surprisal)
        values, closes = surprisal.tolist(), ends.tolist()
        first, total = 0, open_sum
        continued = (0, 0.0)
        prior = self.prior_tokens
        for index, (value, closing) in enumerate(zip(values, closes, strict=True)):
            total += value
            open_count += 1
            input_sum += value
            input_count += 1
            if closing or open_count >= self.max_sentence or index == len(values) - 1:
                mean = (total + prior * input_sum / input_count) / (open_count + prior)
                scores[first : index + 1] = mean
                if stored_open:
                    continued, stored_open = (stored_open, mean), 0
                if closing or open_count >= self.max_sentence:
                    first, total, open_count = index + 1, 0.0, 0
        state.setdefault("open", {})[row] = (total, open_count)
        state.setdefault("input", {})[row] = (input_sum, input_count)
        return scores, continued
