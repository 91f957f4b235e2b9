"""KVzip (Kim et al., 2025, arXiv 2505.23416): keep the KV entries the model reads while it repeats the context.

Within the model window only, and with the whole context in memory first (no bound on memory, unlike
Locret): the context is prefilled with a plain cache, then the model is teacher-forced to reconstruct it,
chunk by chunk (KVzip's own protocol, as in its repository and in kvpress): chunk ``i`` is the input
``"\\n\\nRepeat the previous context exactly."`` (later chunks: ``"...the part of the previous context
exactly, starting with"`` and the previous chunk's last 8 tokens) followed by the chunk's tokens, attending to
the context's cache and to itself; the repeated tokens are dropped from the cache after each chunk. Every
context entry's score is, per layer and KV head, the maximum attention probability it receives from a query
of the reconstruction, over those queries and over the query heads of its GQA group. ``normalise`` says
over what each row's softmax runs: ``chunk`` (KVzip's: the 4 sinks, the context span that chunk repeats,
and the chunk's own tokens) or ``all`` (every cached entry the row sees, as ``locret.train.labels``'
``attention`` kind). The first 4 tokens are always kept (KVzip's sinks).

Then the cache is compressed, before the question is seen: ``allocation=uniform`` keeps the top ``budget``
entries of every layer and KV head (a Locret cache's shape); ``allocation=global`` ranks every entry of
every layer and head together and keeps the same total, ``budget x layers x KV heads`` (KVzip's default
non-uniform budgets); ``allocation=layer`` gives each layer its share of that global ranking, the same for
each of its KV heads (what a cache with one length per layer could hold); ``allocation=head`` keeps every
layer's total, ``budget x KV heads``, ranked over its KV heads together (what a cache with one length per KV
head, and the same total per layer, could hold); ``allocation=profile`` gives each layer and KV head the fixed
share ``profile=NAME`` names (``benchmark.head_budget_profile``; DuoAttention's premise that a head's need
for distant context is a property of the head); ``allocation=token`` keeps the same ``budget`` tokens in every
layer and head, those whose rank averaged over all layers and heads is highest (what the needle oracle keeps,
chosen by the scores); ``allocation=passage`` keeps the sinks, the newest ``n_stabilizers`` tokens and then
whole lines (at most ``max_passage`` tokens each) by their tokens' mean rank over layers and heads, the same in
every layer and head (``benchmark.passages``: whether whole passages read better than scattered picks).
``scores=heads`` ranks by the retaining heads' scores
instead, ``scores=recency`` by position (StreamingLLM's choice). Evicted entries are masked in
attention (per layer and query head), not freed: what is kept matters here, not memory. The question and
the answer then run at their true positions.

``evict=locret`` instead hands the same scores (computed over the whole context, as above) to Locret's own
chunked prefill and eviction (``allocation`` uniform or token, or head as ``budget_allocation="adaptive"``, with
``positions`` as its ``position_mode``): what Locret's cache keeps, and how its positions read, when its
scores are KVzip's; the reference the retaining heads and ``locret.scorers.ReconstructionScorer`` aim at.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from transformers import DynamicCache

import locret
from locret.compat import CACHE_KWARG
from locret.config import POSITION_MODES, LocretConfig
from locret.eviction import top_mask
from locret.generation import LocretOutput, decode
from locret.hooks import forward_hooks
from locret.models.base import collecting_scores
from locret.prefill import new_cache
from locret.rope import apply_rope
from locret.scorers import EntryScorer
from locret.scorers.lines import line_end_tokens
from locret.scorers.reconstruction import (
    FIRST_PROMPT,
    N_SINKS,
    NEXT_PROMPT,
    PREVIOUS_TOKENS,
    max_received_attention,
)

from ..passages import passage_index, passage_keep
from .base import TRAINED, Method, model_window
from .profiles import load_shares

ALLOCATIONS = ("uniform", "head", "layer", "global", "profile", "token")
# The method's allocations: those of ``keep_mask``, and whole lines (``benchmark.passages``).
METHOD_ALLOCATIONS = (*ALLOCATIONS, "passage")
# What a Locret cache holds: budget_allocation "uniform" (uniform, token) or "adaptive" (head).
LOCRET_ALLOCATIONS = ("uniform", "head", "token")
EVICTIONS = ("mask", "locret")
SCORE_SOURCES = ("reconstruction", "heads", "recency")
NORMALISATIONS = ("chunk", "all")


@dataclass(frozen=True)
class RepeatChunk:
    """One reconstruction input: ``ids`` repeats the context tokens ``[start, end)`` after its prompt."""

    start: int
    end: int
    ids: tuple[int, ...]


def repeat_chunks(
    context_ids: Sequence[int], first_prompt: Sequence[int], next_prompt: Sequence[int], chunk_size: int
) -> list[RepeatChunk]:
    """KVzip's reconstruction inputs for ``context_ids``, ``chunk_size`` context tokens each."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    context = list(context_ids)
    chunks = []
    for start in range(0, len(context), chunk_size):
        end = min(start + chunk_size, len(context))
        prompt = (
            list(first_prompt)
            if start == 0
            else [*next_prompt, *context[max(start - PREVIOUS_TOKENS, 0) : start]]
        )
        chunks.append(RepeatChunk(start, end, tuple(prompt + context[start:end])))
    return chunks


def _scored_columns(chunk: RepeatChunk, n_context: int, n_new: int, normalise: str, device) -> torch.Tensor:
    """The cached entries each reconstruction row's softmax runs over (their indices; the chunk's own last)."""
    own = torch.arange(n_context, n_context + n_new, device=device)
    if normalise == "all":
        return torch.cat([torch.arange(n_context, device=device), own])
    sinks = torch.arange(min(N_SINKS, chunk.start), device=device)
    return torch.cat([sinks, torch.arange(chunk.start, chunk.end, device=device), own])


class _ScoreRecorder:
    """Forward hook on one attention module: scores the context entries from that layer's reconstruction
    queries and the keys the layer just cached (context + this chunk)."""

    def __init__(self, scores: torch.Tensor, layer: int, n_context: int, normalise: str) -> None:
        self.scores, self.layer, self.n_context, self.normalise = scores, layer, n_context, normalise
        self.chunk: RepeatChunk | None = None

    def __call__(self, module, args, kwargs, output) -> None:
        hidden_states = args[0] if args else kwargs["hidden_states"]
        cos, sin = kwargs["position_embeddings"]
        query, _, _, _ = module.project_qkv(hidden_states)
        query = apply_rope(query, cos[:, None], sin[:, None])[0]
        keys = kwargs[CACHE_KWARG].layers[module.layer_idx].keys[0]
        columns = _scored_columns(self.chunk, self.n_context, query.shape[1], self.normalise, keys.device)
        context_columns = columns[columns < self.n_context]  # the first ones
        scored = slice(0, len(context_columns))
        received = max_received_attention(query[None], keys[None], columns, scored, module.scaling)[0]
        target = self.scores[self.layer]
        target[:, context_columns] = torch.maximum(target[:, context_columns], received)


@torch.no_grad()
def prefill_plain(model, context_ids: torch.Tensor, chunk_size: int) -> DynamicCache:
    """A plain (unevicted) cache of ``context_ids`` ``[1, n]``, prefilled ``chunk_size`` tokens at a time."""
    types = set(getattr(model.config, "layer_types", None) or ["full_attention"])
    if types != {"full_attention"}:
        raise ValueError(f"kvzip needs global attention in every layer; this model has {sorted(types)}")
    cache = DynamicCache()
    for start in range(0, context_ids.shape[1], chunk_size):
        chunk = context_ids[:, start : start + chunk_size]
        model.model(input_ids=chunk, use_cache=True, **{CACHE_KWARG: cache})
    return cache


@torch.no_grad()
def reconstruction_scores(
    model, cache: DynamicCache, chunks: Sequence[RepeatChunk], normalise: str = "chunk"
) -> torch.Tensor:
    """KVzip scores ``[layers, KV heads, n_context]`` (float32) of the context held by ``cache`` (a plain
    cache of exactly the context); each chunk runs over it and is cropped off again. Sinks score +inf."""
    if normalise not in NORMALISATIONS:
        raise ValueError(f"normalise must be one of {NORMALISATIONS}, got {normalise!r}")
    n_context = cache.get_seq_length()
    config = model.config
    kv_heads = config.num_key_value_heads or config.num_attention_heads
    device = next(model.parameters()).device
    scores = torch.zeros(config.num_hidden_layers, kv_heads, n_context, device=device)
    layers = [layer.self_attn for layer in model.model.layers]
    recorders = [_ScoreRecorder(scores, index, n_context, normalise) for index in range(len(layers))]
    with forward_hooks(zip(layers, recorders, strict=True), pre=False, with_kwargs=True):
        for chunk in chunks:
            for recorder in recorders:
                recorder.chunk = chunk
            ids = torch.tensor([chunk.ids], dtype=torch.long, device=device)
            model.model(input_ids=ids, use_cache=True, **{CACHE_KWARG: cache})
            cache.crop(n_context - cache.get_seq_length())  # a negative count: remove the chunk
    scores[..., :N_SINKS] = math.inf
    return scores


@torch.no_grad()
def head_scores(
    model, context_ids: torch.Tensor, chunk_size: int, pooling: int
) -> tuple[DynamicCache, torch.Tensor]:
    """The plain cache of ``context_ids`` ``[1, n]`` and the retaining heads' scores ``[layers, KV heads, n]`` of
    its entries, max-pooled over ``pooling`` neighbours as ``LocretConfig.score_pooling`` pools them (sinks
    +inf): Locret's own scores, to be kept by KVzip's uniform or global ranking."""
    with collecting_scores(model) as sinks:
        cache = prefill_plain(model, context_ids, chunk_size)
    scores = torch.stack([torch.cat(layer, dim=1)[0].T.float() for layer in sinks])
    if pooling > 1:
        layers, heads, n = scores.shape
        flat = F.max_pool1d(scores.reshape(layers * heads, 1, n), pooling, stride=1, padding=pooling // 2)
        scores = flat.view(layers, heads, n)
    scores[..., :N_SINKS] = math.inf
    return cache, scores


def recency_scores(config, n: int, device) -> torch.Tensor:
    """Scores ``[layers, KV heads, n]`` that rank newer entries higher (sinks +inf): StreamingLLM's choice,
    for any allocation."""
    kv_heads = config.num_key_value_heads or config.num_attention_heads
    scores = torch.arange(n, dtype=torch.float32, device=device).expand(config.num_hidden_layers, kv_heads, n)
    scores = scores.clone()
    scores[..., :N_SINKS] = math.inf
    return scores


def keep_mask(
    scores: torch.Tensor, budget: int, allocation: str, quota: torch.Tensor | None = None
) -> torch.Tensor:
    """Which context entries stay, ``[layers, KV heads, n]`` bool: the top ``budget`` per layer and head
    (``uniform``), the top ``budget x layers x heads`` over all of them together (``global``), or per layer
    the same number for each of its heads, that layer's share of the global ranking (``layer``: the
    non-uniform budgets a cache of one length per layer could hold), or per layer the top ``budget x heads``
    over its heads together (``head``: per-head lengths, each layer's total fixed), or per layer and head the
    top ``quota x budget`` (``profile``: fixed per-head shares ``quota`` ``[layers, KV heads]``, at least one
    entry each; ``global_quotas`` measures them), or the same ``budget`` tokens in every layer and head, those
    of the highest rank averaged over layers and heads (``token``: what a needle oracle keeps, chosen by the
    scores)."""
    if allocation not in ALLOCATIONS:
        raise ValueError(f"allocation must be one of {ALLOCATIONS}, got {allocation!r}")
    if budget < 1:
        raise ValueError(f"budget must be >= 1, got {budget}")
    if (allocation == "profile") != (quota is not None):
        raise ValueError("allocation='profile' needs the per-head quotas, and only it takes them")
    keep = torch.zeros_like(scores, dtype=torch.bool)
    if allocation == "profile":
        if quota.shape != scores.shape[:2]:
            raise ValueError(
                f"quota must be [layers, KV heads] = {list(scores.shape[:2])}, got {list(quota.shape)}"
            )
        counts = (quota * budget).round().long().clamp(1, scores.shape[-1])
        return top_mask(scores, counts.to(scores.device))
    if budget >= scores.shape[-1]:
        return keep.fill_(True)
    if allocation == "uniform":
        return keep.scatter_(-1, scores.topk(budget, dim=-1).indices, True)
    if allocation == "token":
        keep[..., token_scores(scores)[0, 0].topk(budget).indices] = True
        return keep
    if allocation == "head":
        layers = scores.shape[0]
        top = scores.reshape(layers, -1).topk(budget * scores.shape[1], dim=-1).indices
        return keep.view(layers, -1).scatter_(-1, top, True).view_as(keep)
    total = budget * scores.shape[0] * scores.shape[1]
    keep.view(-1).scatter_(0, scores.reshape(-1).topk(total).indices, True)
    if allocation == "global":
        return keep
    per_head = keep.sum(dim=(1, 2)).div(scores.shape[1], rounding_mode="floor").clamp(min=1).tolist()
    keep.fill_(False)
    for layer, count in enumerate(per_head):
        keep[layer].scatter_(-1, scores[layer].topk(count, dim=-1).indices, True)
    return keep


def token_scores(scores: torch.Tensor) -> torch.Tensor:
    """Each token's rank ``[layers, KV heads, n]`` -> its mean rank over every layer and head, the same in each:
    scores that make any per-head top-k keep the same tokens everywhere (sinks, +inf everywhere, on top)."""
    mean_rank = scores.flatten(0, 1).argsort(dim=-1).argsort(dim=-1).float().mean(dim=0)
    return mean_rank.expand_as(scores)


def global_quotas(scores: torch.Tensor, budget: int) -> torch.Tensor:
    """Each (layer, KV head)'s share of KVzip's global ranking of ``scores`` ``[layers, KV heads, n]``, as a
    multiple of ``budget`` ``[layers, KV heads]`` (float32; averaging 1 over heads unless ``budget >= n``)."""
    return keep_mask(scores, budget, "global").sum(-1).float() / budget


@contextmanager
def masked_entries(model, keep: torch.Tensor) -> Iterator[None]:
    """Inside the block, every attention layer ``l`` sees the first ``n`` cached entries only where
    ``keep[l]`` ``[KV heads, n]`` is True (for each KV head's query heads); later entries as usual."""
    hooks = [(layer.self_attn, _EntryMask(keep[index])) for index, layer in enumerate(model.model.layers)]
    with forward_hooks(hooks, pre=True, with_kwargs=True):
        yield


class _EntryMask:
    """Forward pre-hook: folds one layer's kept context entries into the attention mask it receives."""

    def __init__(self, keep: torch.Tensor) -> None:
        self.keep = keep  # [Hkv, n]

    def __call__(self, module, args, kwargs):
        hidden_states = args[0] if args else kwargs["hidden_states"]
        new = hidden_states.shape[1]
        stored = kwargs[CACHE_KWARG].get_seq_length(module.layer_idx) + new
        heads = module.config.num_attention_heads
        keep = self.keep.repeat_interleave(heads // self.keep.shape[0], dim=0)  # [H, n]
        visible = torch.ones(heads, stored, dtype=torch.bool, device=keep.device)
        visible[:, : keep.shape[1]] = keep
        visible = visible[None, :, None, :]  # [1, H, 1, S]
        mask = kwargs.get("attention_mask")
        if mask is None:
            causal = torch.ones(new, stored, dtype=torch.bool, device=keep.device).tril(stored - new)
            mask = causal[None, None] & visible
        elif mask.dtype == torch.bool:
            mask = mask[..., :stored] & visible
        else:
            mask = mask[..., :stored].masked_fill(~visible, torch.finfo(mask.dtype).min)
        return args, {**kwargs, "attention_mask": mask}


@dataclass
class Compressed:
    """A context's KVzip compression: its whole plain cache, the scores, what stays (``[L, Hkv, n]``), and
    the most entries per head held at once (the context plus the longest reconstruction input)."""

    cache: DynamicCache
    scores: torch.Tensor
    keep: torch.Tensor
    peak_entries: int


@lru_cache(maxsize=4)
def _tokenizer(name_or_path: str):
    from locret.acquire import load_tokenizer

    return load_tokenizer(name_or_path)


@dataclass
class KVzip(Method):
    """KVzip's reconstruction scores, ``allocation`` uniform (per layer and head) or global (one ranking).

    Evicted entries are masked, not freed: the cache holds every token, whatever the budget."""

    name: ClassVar[str] = "kvzip"
    description: ClassVar[str] = "KVzip: attention received while repeating the context (full prefill first)"

    allocation: str = "uniform"
    scores: str = "reconstruction"  # "heads": the retaining heads' scores; "recency": the newest first
    pooling: int = 7  # score pooling of the heads' scores (scores=heads only)
    normalise: str = "chunk"
    chunk: int = 2048  # context tokens per reconstruction input (KVzip and kvpress: about 2K)
    # "mask": KVzip's one-shot compression (evicted entries masked); "locret": the same scores drive Locret's
    # chunked evicting cache (``allocation`` uniform or head = ``budget_allocation`` "adaptive"), with
    # ``positions`` its ``position_mode``: what Locret's own eviction keeps when its scores are KVzip's.
    evict: str = "mask"
    positions: str = "repacked"
    profile: str = (
        ""  # allocation=profile: the name of a ``benchmark.head_budget_profile`` output (PROFILE_DIR)
    )
    max_passage: int = 256  # allocation=passage: the longest passage (a line longer than this is split)
    tokenizer: Any = field(default=None, repr=False)  # None: the model's own (from its directory)

    def __post_init__(self) -> None:
        if self.allocation not in METHOD_ALLOCATIONS:
            raise ValueError(f"kvzip allocation must be one of {METHOD_ALLOCATIONS}, got {self.allocation!r}")
        if not isinstance(self.max_passage, int) or self.max_passage < 1:
            raise ValueError(f"kvzip max_passage must be an integer >= 1, got {self.max_passage!r}")
        if self.normalise not in NORMALISATIONS:
            raise ValueError(f"kvzip normalise must be one of {NORMALISATIONS}, got {self.normalise!r}")
        if not isinstance(self.chunk, int) or self.chunk < 1:
            raise ValueError(f"kvzip chunk must be an integer >= 1, got {self.chunk!r}")
        if self.scores not in SCORE_SOURCES:
            raise ValueError(f"kvzip scores must be one of {SCORE_SOURCES}, got {self.scores!r}")
        if not isinstance(self.pooling, int) or self.pooling < 1 or self.pooling % 2 == 0:
            raise ValueError(f"kvzip pooling must be an odd integer >= 1, got {self.pooling!r}")
        if self.evict not in EVICTIONS:
            raise ValueError(f"kvzip evict must be one of {EVICTIONS}, got {self.evict!r}")
        if self.evict == "locret" and self.allocation not in LOCRET_ALLOCATIONS:
            raise ValueError(
                f"kvzip evict=locret takes allocation {' or '.join(LOCRET_ALLOCATIONS)}, got {self.allocation!r}"
            )
        if self.positions not in POSITION_MODES or (self.evict == "mask" and self.positions != "repacked"):
            raise ValueError(
                f"kvzip positions must be one of {POSITION_MODES}, and only with evict=locret; got {self.positions!r}"
            )
        if (self.allocation == "profile") != bool(self.profile):
            raise ValueError(
                "kvzip allocation=profile needs profile=NAME (benchmark.head_budget_profile), and only it"
            )
        if self.allocation == "profile" and self.evict != "mask":
            raise ValueError("kvzip allocation=profile runs with evict=mask only")
        self.quota = torch.tensor(load_shares(self.profile)) if self.profile else None
        self._line_ends: torch.Tensor | None = None  # allocation=passage: line_end_tokens of the tokenizer
        if self.scores == "heads":
            self.heads = TRAINED  # needs trained retaining heads (--heads, or the shipped ones)

    def params(self) -> dict:
        eviction = {"evict": self.evict, "positions": self.positions} if self.evict == "locret" else {}
        return {
            "name": self.name,
            "heads": self.heads,
            "allocation": self.allocation,
            "scores": self.scores,
            "pooling": self.pooling if self.scores == "heads" else None,
            "normalise": self.normalise,
            "chunk": self.chunk,
            **eviction,
            **({"profile": self.profile} if self.profile else {}),
            **({"max_passage": self.max_passage} if self.allocation == "passage" else {}),
        }

    def fits(self, prompt_length: int, max_new_tokens: int, model) -> bool:
        """Plain positions, the whole prompt at once: only prompts that fit the window, as the full cache."""
        return prompt_length + max_new_tokens <= model_window(model)

    def prefill_context(self, model, input_ids, config, track_positions=False):
        return None  # each question runs alone (no shared prefill)

    def text_tokenizer(self, model):
        """The ``tokenizer`` field, or when it is None the model's own (the prompts, the line breaks)."""
        return self.tokenizer if self.tokenizer is not None else _tokenizer(model.config.name_or_path)

    def prompts(self, model) -> tuple[list[int], list[int]]:
        """The first and the later chunks' reconstruction prompts, in the model's tokens."""
        tokenizer = self.text_tokenizer(model)
        return (
            tokenizer.encode(FIRST_PROMPT, add_special_tokens=False),
            tokenizer.encode(NEXT_PROMPT, add_special_tokens=False),
        )

    @torch.no_grad()
    def compress(self, model, context_ids: torch.Tensor, config: LocretConfig) -> Compressed:
        """Prefill ``context_ids`` ``[1, n]`` (chunks of ``config.chunk_size``), score it by reconstruction,
        and choose what stays (``scores=heads``: score it by the retaining heads instead)."""
        if self.scores == "heads":
            cache, scores = head_scores(model, context_ids, config.chunk_size, self.pooling)
            return Compressed(
                cache, scores, self._keep(scores, config, model, context_ids), context_ids.shape[1]
            )
        cache = prefill_plain(model, context_ids, config.chunk_size)
        if self.scores == "recency":
            scores = recency_scores(model.config, context_ids.shape[1], context_ids.device)
            return Compressed(
                cache, scores, self._keep(scores, config, model, context_ids), context_ids.shape[1]
            )
        first, later = self.prompts(model)
        chunks = repeat_chunks(context_ids[0].tolist(), first, later, self.chunk)
        scores = reconstruction_scores(model, cache, chunks, self.normalise)
        peak = context_ids.shape[1] + max(len(chunk.ids) for chunk in chunks)
        return Compressed(cache, scores, self._keep(scores, config, model, context_ids), peak)

    def _keep(
        self, scores: torch.Tensor, config: LocretConfig, model, context_ids: torch.Tensor
    ) -> torch.Tensor:
        if self.allocation != "passage":
            return keep_mask(scores, config.budget, self.allocation, self.quota)
        if self._line_ends is None:  # built once, not per prompt
            self._line_ends = line_end_tokens(self.text_tokenizer(model), model.config.vocab_size)
        passages = passage_index(context_ids[0], self._line_ends, self.max_passage)
        kept = passage_keep(token_scores(scores)[0, 0], passages, config.budget, config.n_stabilizers)
        return kept.expand_as(scores)

    @torch.no_grad()
    def generate(
        self,
        model,
        input_ids: torch.Tensor,
        config: LocretConfig,
        max_new_tokens: int,
        eos_token_id=None,
        context_cache=None,
        track_positions: bool = False,
    ) -> LocretOutput:
        """Compress the context (all but the last ``max(n_local, 1)`` tokens), then run the question and
        decode with the evicted entries masked."""
        if input_ids.shape[0] != 1:
            raise ValueError(f"kvzip runs one prompt at a time, got a batch of {input_ids.shape[0]}")
        sync = torch.cuda.synchronize if input_ids.is_cuda else (lambda: None)
        started = time.perf_counter()
        split = input_ids.shape[1] - max(config.n_local, 1)
        compressed = self.compress(model, input_ids[:, :split], config)
        if self.evict == "locret":
            return self._generate_in_locret_cache(
                model, input_ids, config, compressed, max_new_tokens, eos_token_id, started
            )
        cache, keep = compressed.cache, compressed.keep
        with masked_entries(model, keep):
            tail = input_ids[:, split:]
            logits = model(input_ids=tail, use_cache=True, logits_to_keep=1, **{CACHE_KWARG: cache}).logits[
                :, -1
            ]
            sync()
            prefill_seconds = time.perf_counter() - started

            def next_logits(tokens: torch.Tensor) -> torch.Tensor:
                return model(input_ids=tokens[:, None], use_cache=True, **{CACHE_KWARG: cache}).logits[:, -1]

            sequences, decode_seconds = decode(
                next_logits, logits, input_ids, max_new_tokens, eos_token_id=eos_token_id
            )
        kept = round(keep.sum().item() / (keep.shape[0] * keep.shape[1]))
        layer = cache.layers[0]
        entry_bytes = layer.keys[0, :, 0].numel() * (layer.keys.element_size() + layer.values.element_size())
        return LocretOutput(
            sequences=sequences,
            prompt_length=input_ids.shape[1],
            prefill_seconds=prefill_seconds,
            decode_seconds=decode_seconds,
            cache_length_after_prefill=kept + input_ids.shape[1] - split,
            cache_length_final=kept + sequences.shape[1] - split,
            peak_cache_bytes=entry_bytes * len(cache.layers) * compressed.peak_entries,
            config=config,
        )

    def _generate_in_locret_cache(
        self, model, input_ids, config, compressed: Compressed, max_new_tokens, eos_token_id, started
    ) -> LocretOutput:
        """``evict=locret``: Locret's chunked prefill and eviction over the prompt, scored by ``compressed``'s
        scores (the scoring's time counts as prefill; its whole-context peak as memory)."""
        settings = dataclasses.replace(
            config,
            budget_allocation="adaptive" if self.allocation == "head" else "uniform",
            position_mode=self.positions,
        )
        scores = token_scores(compressed.scores) if self.allocation == "token" else compressed.scores
        cache = new_cache(model, settings, scorer=GivenScores(scores))
        scoring_seconds = time.perf_counter() - started
        out = locret.generate(
            model, input_ids, settings, max_new_tokens, eos_token_id=eos_token_id, cache=cache
        )
        layer = compressed.cache.layers[0]
        entry_bytes = layer.keys[0, :, 0].numel() * (layer.keys.element_size() + layer.values.element_size())
        peak = entry_bytes * len(compressed.cache.layers) * compressed.peak_entries
        return dataclasses.replace(
            out,
            prefill_seconds=out.prefill_seconds + scoring_seconds,
            peak_cache_bytes=max(out.peak_cache_bytes, peak),
        )


@dataclass
class GivenScores(EntryScorer):
    """Scores fixed in advance, ``[layers, KV heads, n]`` by absolute position (0 past ``n``: the question and
    generated tokens, which ``evict=locret`` never ranks)."""

    scores: torch.Tensor = field(repr=False)

    def score_new(self, attention, head_input, query, key, positions) -> torch.Tensor:
        given = self.scores[attention.layer_idx].to(key.device)
        out = key.new_zeros(key.shape[:3], dtype=torch.float32)
        inside = positions < given.shape[-1]
        out[:, :, inside] = given[:, positions[inside]]
        return out
