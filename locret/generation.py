"""Chunked prefill with eviction, and a lean decoding loop that reports what it measured."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

from .cache import LocretCache
from .compat import CACHE_KWARG
from .config import LocretConfig
from .prefill import check_inputs, new_cache, prefill_prompt, resolve_config
from .static_decode import StaticDecode, static_decoder_for

__all__ = [
    "LocretOutput",
    "check_inputs",
    "decode",
    "default_eos",
    "generate",
    "new_cache",
    "prefill_prompt",
    "resolve_config",
]


def default_eos(model) -> list[int]:
    """The model's end-of-sequence token ids from its generation config, as transformers' generate stops."""
    generation_config = getattr(model, "generation_config", None)
    eos = getattr(generation_config, "eos_token_id", None)
    if eos is None:
        return []
    return [int(eos)] if isinstance(eos, int) else [int(token) for token in eos]


@dataclass
class LocretOutput:
    """Generated tokens and what it took: times, and cache sizes (entries per KV head, bytes)."""

    sequences: torch.Tensor
    prompt_length: int
    prefill_seconds: float
    decode_seconds: float
    cache_length_after_prefill: int
    cache_length_final: int
    peak_cache_bytes: int
    config: LocretConfig | None = None  # the settings that ran (None: a method without one, e.g. LongHeads)
    static_decode: bool = False  # True: the steps ran on locret.static_decode's fixed-size buffers
    # The cache after generation, as transformers' ``generate`` returns it with ``return_dict_in_generate``:
    # what was kept (``track_positions``: from where in the prompt) and what to continue from.
    past_key_values: LocretCache | None = field(default=None, repr=False)

    @property
    def new_tokens(self) -> torch.Tensor:
        return self.sequences[:, self.prompt_length :]

    @property
    def prefill_tokens_per_second(self) -> float:
        return self.prompt_length / self.prefill_seconds if self.prefill_seconds else float("nan")

    @property
    def decode_tokens_per_second(self) -> float:
        generated = self.sequences.shape[1] - self.prompt_length
        return generated / self.decode_seconds if self.decode_seconds else float("nan")


def _sampler(
    do_sample: bool, temperature: float, top_k: int | None, top_p: float | None
) -> LogitsProcessorList:
    warpers = LogitsProcessorList()
    if do_sample:
        if temperature != 1.0:
            warpers.append(TemperatureLogitsWarper(temperature))
        if top_k:
            warpers.append(TopKLogitsWarper(top_k))
        if top_p is not None and top_p < 1.0:
            warpers.append(TopPLogitsWarper(top_p))
    return warpers


@torch.no_grad()
def decode(
    next_logits: Callable[[torch.Tensor], torch.Tensor],
    logits: torch.Tensor,
    input_ids: torch.Tensor,
    max_new_tokens: int,
    *,
    eos_token_id: int | list[int] | None = None,
    warpers: LogitsProcessorList | None = None,
    do_sample: bool = False,
    streamer=None,
) -> tuple[torch.Tensor, float]:
    """The decoding loop shared by every method: pick a token from ``logits``, append it, ask
    ``next_logits(tokens [B])`` for the next ``[B, V]`` logits. Returns the sequences and the seconds spent.

    Stops after ``max_new_tokens`` or once every row has produced an EOS token.
    """
    eos = torch.tensor(
        [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id or ()), device=input_ids.device
    )
    warpers = warpers if warpers is not None else LogitsProcessorList()
    sequences = input_ids
    finished = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
    started = time.perf_counter()
    for step in range(max_new_tokens):
        scores = warpers(sequences, logits.float())
        if do_sample:
            next_tokens = torch.multinomial(torch.softmax(scores, dim=-1), 1).squeeze(1)
        else:
            next_tokens = scores.argmax(dim=-1)
        sequences = torch.cat([sequences, next_tokens[:, None]], dim=1)
        if streamer is not None:
            streamer.put(next_tokens.cpu())
        if eos.numel():
            finished |= torch.isin(next_tokens, eos)
            if bool(finished.all()):
                break
        if step + 1 < max_new_tokens:
            logits = next_logits(next_tokens)
    if input_ids.is_cuda:
        torch.cuda.synchronize()
    if streamer is not None:
        streamer.end()
    return sequences, time.perf_counter() - started


@torch.no_grad()
def generate(
    model,
    input_ids: torch.Tensor,
    config: LocretConfig | None = None,
    max_new_tokens: int = 32,
    *,
    attention_mask: torch.Tensor | None = None,
    eos_token_id: int | list[int] | None = None,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    streamer=None,
    cache: LocretCache | None = None,
    progress: bool = False,
    static_decode: StaticDecode = None,
) -> LocretOutput:
    """Locret end to end: evicting chunked prefill, the un-evicted local tail, then decoding.

    ``config`` None uses the cache's config, else the settings the model's heads recommend
    (``model.locret_inference_config``), else ``LocretConfig()``; ``LocretOutput.config`` says which ran.
    Greedy by default. Stops at ``max_new_tokens`` or when every row has produced an EOS token:
    ``eos_token_id`` None takes the model's ``generation_config.eos_token_id`` (as transformers does), an
    explicit id or list wins, and ``eos_token_id=[]`` never stops early. Pass an
    empty ``cache`` to choose another scorer (a baseline) or to inspect what survived afterwards, or a copy of
    one that holds this prompt's prefilled beginning to skip that part (see ``prefill_prompt``);
    ``prefill_seconds`` then counts only what was left. A cache built with another config than ``config``
    is a ValueError.

    A left-padded batch (``attention_mask`` with zeros first) runs every row's prefill alone and decodes the
    rows together; each row's tokens are those of its own batch-1 run (see ``prefill_padded``).

    ``static_decode`` picks the decode steps (``locret.static_decode``): None (default) runs them over
    fixed-size buffers wherever that is supported (batch 1, the retaining heads' scores, a Llama-style
    family; else the eager steps), True insists (a ValueError says why it cannot), False runs the eager
    steps, ``"compile"`` the static ones through ``torch.compile``. Both give the same tokens and leave the
    same cache.
    """
    config = resolve_config(model, config, cache)
    if eos_token_id is None:
        eos_token_id = default_eos(model)
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    sync = torch.cuda.synchronize if input_ids.is_cuda else (lambda: None)

    cache_given = cache is not None
    started = time.perf_counter()
    cache = prefill_prompt(
        model, input_ids, config, cache=cache, attention_mask=attention_mask, progress=progress
    )
    tail = input_ids[:, cache.get_seq_length() :]
    logits = model(input_ids=tail, use_cache=True, logits_to_keep=1, **{CACHE_KWARG: cache}).logits[:, -1]
    sync()
    prefill_seconds = time.perf_counter() - started
    length_after_prefill = cache.stored_length()

    decode_started = time.perf_counter()
    # A cache made here is discarded: its new entries need scores only if decoding evicts.
    decoder = static_decoder_for(model, cache, max_new_tokens - 1, static_decode, score=cache_given)
    setup_seconds = time.perf_counter() - decode_started

    def next_logits(tokens: torch.Tensor) -> torch.Tensor:
        if decoder is not None:
            return decoder.step(tokens)
        return model(input_ids=tokens[:, None], use_cache=True, **{CACHE_KWARG: cache}).logits[:, -1]

    sequences, decode_seconds = decode(
        next_logits,
        logits,
        input_ids,
        max_new_tokens,
        eos_token_id=eos_token_id,
        warpers=_sampler(do_sample, temperature, top_k, top_p),
        do_sample=do_sample,
        streamer=streamer,
    )
    if decoder is not None:
        decoder.write_back()
    return LocretOutput(
        sequences=sequences,
        prompt_length=input_ids.shape[1],
        prefill_seconds=prefill_seconds,
        decode_seconds=setup_seconds + decode_seconds,
        cache_length_after_prefill=length_after_prefill,
        cache_length_final=cache.stored_length(),
        peak_cache_bytes=cache.peak_nbytes(),
        config=config,
        static_decode=decoder is not None,
        past_key_values=cache,
    )
