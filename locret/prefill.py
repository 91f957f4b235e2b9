"""Chunked prefill with eviction, and the input checks every entry point shares.

Its own module so that both ``locret.generation`` and the models' ``generate`` import it without importing
each other; it imports nothing from ``locret.models``.
"""

from __future__ import annotations

import torch
from tqdm.auto import tqdm
from transformers.models.auto.configuration_auto import CONFIG_MAPPING

from .cache import LocretCache
from .compat import CACHE_KWARG
from .config import LocretConfig
from .scorers import EntryScorer, RetainingHeadScorer


def supported_families() -> list[str]:
    """Base model types with a Locret class, as ``locret.models.register_auto_classes`` registered them
    (``locret_llama`` -> ``llama``): the registry ``LOCRET_CLASSES``, read without importing the models."""
    return sorted(name.removeprefix("locret_") for name in CONFIG_MAPPING if name.startswith("locret_"))


def check_inputs(model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> None:
    """Reject what Locret cannot run, with a message that says what is allowed."""
    if not hasattr(model, "retaining_heads"):
        raise ValueError(
            f"{type(model).__name__} has no retaining heads: load it with locret.from_pretrained(...) "
            f"(supported architectures: {', '.join(supported_families())})"
        )
    if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2 or input_ids.dtype != torch.long:
        raise ValueError("input_ids must be a 2-D LongTensor [batch, length]")
    if input_ids.shape[0] < 1 or input_ids.shape[1] < 1:
        raise ValueError(f"input_ids is empty (shape {tuple(input_ids.shape)}): give at least one token")
    if attention_mask is not None:
        if attention_mask.shape != input_ids.shape:
            raise ValueError(
                f"attention_mask must have input_ids' shape {tuple(input_ids.shape)}, got {tuple(attention_mask.shape)}"
            )
        real = attention_mask.bool()
        if not bool((real[:, 1:] >= real[:, :-1]).all()):
            raise ValueError("only left-padded batches are supported: every row's padding must come first")


def pad_lengths(attention_mask: torch.Tensor | None) -> list[int] | None:
    """Each row's left pad tokens; None when no row is padded (or no mask was given)."""
    if attention_mask is None or bool(attention_mask.all()):
        return None
    return (attention_mask.shape[1] - attention_mask.bool().sum(dim=1)).tolist()


def new_cache(
    model, config: LocretConfig, scorer: EntryScorer | None = None, track_positions: bool = False
) -> LocretCache:
    """An empty cache for ``model`` (one layer per decoder layer) that evicts as ``config`` says, by
    ``scorer``, else by the scorer the model's heads recommend (``recommended_scorer``)."""
    if scorer is None:
        scorer = recommended_scorer(model, config)
    return LocretCache(config, model.config.num_hidden_layers, scorer=scorer, track_positions=track_positions)


def recommended_scorer(model, config: LocretConfig) -> EntryScorer:
    """A fresh scorer of the kind the model's heads adapter recommends (``model.locret_scorer_choice``),
    else the retaining heads' own scores. A recommended scorer that cannot run ``config`` is a ValueError
    that says how to run these settings anyway: silently scoring another way would change what is kept."""
    choice = getattr(model, "locret_scorer_choice", None)
    if choice is None:
        return RetainingHeadScorer()
    scorer = choice.build()
    try:
        scorer.check_config(config)
    except ValueError as err:
        raise ValueError(
            f"the retaining heads recommend the {choice.name!r} scorer {choice.settings}, which cannot run "
            f"these settings: {err}. Start from their settings (dataclasses.replace(model.locret_inference_"
            "config, ...)), or pass a cache with another scorer (locret.new_cache(model, config, "
            "locret.scorers.RetainingHeadScorer()) for the heads' own scores)"
        ) from None
    return scorer


def resolve_config(model, config: LocretConfig | None, cache: LocretCache | None = None) -> LocretConfig:
    """The settings a run uses: the explicit ``config``, else the cache's, else the ones the model's heads
    recommend (``model.locret_inference_config``, from their adapter), else ``LocretConfig()``.

    A cache was built for one config; running it with another would mix the two (budget from the cache,
    chunking from the argument), so an explicit config that differs from the cache's in anything but
    ``n_local`` (each question's own tail) is a ValueError (``LocretCache.check_settings``)."""
    if cache is not None:
        if config is None:
            return cache.config
        cache.check_settings(config)
        return config
    if config is not None:
        return config
    recommended = getattr(model, "locret_inference_config", None)
    return recommended if recommended is not None else LocretConfig()


@torch.no_grad()
def prefill_prompt(
    model,
    input_ids: torch.Tensor,
    config: LocretConfig | None,
    *,
    cache: LocretCache | None = None,
    attention_mask: torch.Tensor | None = None,
    progress: bool = False,
) -> LocretCache:
    """Prefill all but the last ``max(n_local, 1)`` tokens in chunks, evicting after each chunk.

    The remaining tail is left for the caller's first forward (at least one token is needed for logits); the
    cache is told to keep the next ``n_local`` tokens forever. A ``cache`` that already holds the prefill of
    ``input_ids[:, :k]`` resumes at token ``k``: several questions on one document share its prefill by each
    starting from a copy (``copy.deepcopy``) of the document's cache. Nothing checks that those ``k`` tokens
    are this prompt's beginning; that is the caller's promise, as with ``past_key_values`` in transformers.
    ``config`` is chosen by ``resolve_config``: a given ``cache`` evicts by its own config, and ``config`` may
    differ from it only in ``n_local`` (each question's own tail), else this is a ValueError.
    """
    check_inputs(model, input_ids, attention_mask)
    config = resolve_config(model, config, cache)
    shifts = pad_lengths(attention_mask)
    if shifts is not None:
        return prefill_padded(model, input_ids, config, shifts, cache=cache, progress=progress)
    cache = cache if cache is not None else new_cache(model, config)
    end = max(input_ids.shape[1] - max(config.n_local, 1), 0)
    seen = cache.get_seq_length()
    if seen > end:
        raise ValueError(
            f"the cache already holds {seen} tokens but this prompt prefills only {end}: pass an empty cache, "
            "or one prefilled with this prompt's beginning"
        )
    starts = range(seen, end, config.chunk_size)
    cache.scorer.check_config(config)
    cache.prefilling = True
    try:
        for start in tqdm(
            starts, desc="locret prefill", unit="chunk", disable=not progress or len(starts) < 2
        ):
            prefill_chunk(model, cache, input_ids, start, min(start + config.chunk_size, end))
    finally:
        cache.prefilling = False
    cache.protect_next(config.n_local)
    return cache


def prefill_chunk(model, cache: LocretCache, input_ids: torch.Tensor, start: int, stop: int) -> None:
    """Run the chunk ``input_ids[:, start:stop]`` into ``cache`` (which holds tokens ``:start``) and evict.

    A scorer that scores the chunk from its forward's output or a pass of its own over it
    (``SurprisalScorer``, ``LineScorer``, ``ReconstructionScorer``) does so between the forward and the
    eviction; it may read the chunk's neighbours in ``input_ids`` (the token after it, a few before it)."""
    chunk = input_ids[:, start:stop]
    if not cache.scorer.rescores_chunks:
        model.model(input_ids=chunk, use_cache=True, **{CACHE_KWARG: cache})
        return
    with cache.hold_eviction(), cache.scorer.chunk_pass():
        output = model.model(input_ids=chunk, use_cache=True, **{CACHE_KWARG: cache})
    cache.scorer.rescore_chunk(model, cache, input_ids, start, stop, output.last_hidden_state)
    cache.evict_together(cache.config.budget)


def prefill_padded(
    model, input_ids: torch.Tensor, config: LocretConfig, shifts: list[int], *, cache=None, progress=False
) -> LocretCache:
    """Prefill a left-padded batch: every row alone, without its padding (so it is chunked and evicts exactly
    as in its own batch-1 run), then one batched cache (``LocretCache.from_rows``) for the tail and decoding.
    Each row needs more than ``max(n_local, 1)`` real tokens, so that the batched tail holds no padding."""
    if cache is not None:
        raise ValueError(
            "a padded batch builds its own cache: pass cache=None (or run its rows one at a time)"
        )
    LocretCache.check_padded_batch_config(config)  # before the rows' prefills, not after
    tail = max(config.n_local, 1)
    if input_ids.shape[1] - max(shifts) <= tail:
        raise ValueError(
            f"every row of a padded batch needs more than max(n_local, 1) = {tail} real tokens "
            f"(the shortest has {input_ids.shape[1] - max(shifts)}): run shorter rows one at a time"
        )
    rows = [
        prefill_prompt(model, input_ids[row : row + 1, shift:], config, progress=progress)
        for row, shift in enumerate(shifts)
    ]
    return LocretCache.from_rows(rows, shifts)
