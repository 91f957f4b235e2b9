"""What every Locret architecture shares: the attention forward with scores and an evicting cache, and the
causal-LM mixin that installs heads and routes ``generate`` through chunked prefill.

A family file only says what differs from the common path below: where the q/k/v projections come from
(separate ``q_proj``/``k_proj``/``v_proj`` by default, with their biases where the family has them; Phi-3's
fused ``qkv_proj``), whether queries and keys are normalised per head (``qk_norm``: Qwen3, Gemma 3), its own
eager attention function, and the window it passes to attention (``attention_kwargs``: each layer's
``sliding_window`` by default). Attention-logit soft-capping would be returned from ``attention_kwargs``
(``softcap``); no registered family applies it (Gemma 3's forward ignores ``attn_logit_softcapping``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import ClassVar

import torch
from torch import nn
from torch.profiler import record_function
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from ..attention import grouped_sdpa_attention, uses_grouped_sdpa
from ..cache import LocretCache
from ..compat import CACHE_KWARG
from ..config import LocretConfig
from ..heads import FoldedHeadScores, HeadInput, HeadShape, RetainingHead, folds_on_cpu
from ..prefill import prefill_prompt, resolve_config
from ..rope import RopeTable, apply_rope
from ..scorers import RetainingHeadScorer
from ..static_decode import GenerateSteps, StaticDecode

# torch.profiler event names, so profiles can attribute time to scoring and to eviction.
SCORE_EVENT = "locret.score"
EVICT_EVENT = "locret.evict"


def profiled(name: str) -> AbstractContextManager:
    """A profiler event around the block while a profiler runs; else nothing (an event costs time even when
    no profiler records it, and a prefill opens two per layer and chunk)."""
    return record_function(name) if torch.autograd._profiler_enabled() else nullcontext()


class LocretAttentionMixin:
    """Attention that scores its new KV entries and works with a pre-RoPE evicting cache.

    Without a ``LocretCache`` and without score collection it is the unmodified transformers attention.

    Keys are cached after the family's key norm (if any) and before RoPE: exactly the keys the attention
    uses, un-rotated. The retaining head's input ``[Q|K|V]`` is the projections' raw output, before any norm,
    in every family (for Phi-3 it is the fused projection's output as it is): one definition whatever the
    family, the norms only rescale each head's vector, and no normed copy has to be concatenated. The CIS
    labels (``locret.train.labels``) use ``project_qkv`` too, so they come from the same normed keys and
    queries the attention uses.
    """

    retaining_head: RetainingHead
    locret_rope: RopeTable
    eager_attention: staticmethod  # the architecture's own eager attention function
    qk_norm: ClassVar[bool] = False  # True: the family's ``q_norm``/``k_norm`` act on every head's vector
    score_sink: list[torch.Tensor] | None = None

    def projections(self, hidden_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Flat raw ``q [B,T,H*D]``, ``k, v [B,T,Hkv*D]``: the retaining head's input, before any norm."""
        return self.q_proj(hidden_states), self.k_proj(hidden_states), self.v_proj(hidden_states)

    def qkv_linears(self) -> list[nn.Linear]:
        """The linears whose stacked outputs are ``projections`` (``[Q|K|V]``), for the folded head."""
        return [self.q_proj, self.k_proj, self.v_proj]

    def split_heads(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor):
        """Flat projections -> pre-RoPE ``q [B,H,T,D]``, ``k, v [B,Hkv,T,D]`` (q and k normed where the family
        norms them)."""
        shape = (*q.shape[:-1], -1, self.head_dim)
        q, k, v = (x.view(shape).transpose(1, 2) for x in (q, k, v))
        if self.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        return q, k, v

    def project_qkv(self, hidden_states: torch.Tensor):
        """Return pre-RoPE ``q [B,H,T,D]``, ``k, v [B,Hkv,T,D]`` (q and k normed where the family norms them)
        and the head input ``[B,T,(H+2Hkv)D]``."""
        projections = self.projections(hidden_states)
        return *self.split_heads(*projections), torch.cat(projections, dim=-1)

    def retaining_scores(self, head_input: HeadInput) -> torch.Tensor:
        """The retaining head's scores ``[B, T, Hkv]``: folded into the q/k/v projections on a CPU chunk
        (``locret.heads.folds_on_cpu``), else on ``[Q|K|V]``."""
        if folds_on_cpu(self.retaining_head, head_input):
            return self.retaining_head.forward_folded(head_input.hidden_states, self.qkv_linears())
        return self.retaining_head(head_input.features())

    def chunk_scores(self, cache: LocretCache, head_input: HeadInput, query, key):
        """The new entries' scores ``[B, Hkv, T]`` for the cache, from its scorer; while the plain retaining
        heads score a CPU prefill chunk (``folds_on_cpu``), their folded ``fc1`` output, which the cache
        finishes for all layers at once after the last layer (``FoldedHeadScores``). Why: the folded GEMM
        reads the chunk's hidden states while they are in the CPU's cache, and thirty float32 tails cost a
        SmolLM2 chunk about 0.5 ms more than one stacked tail (bf16, 2 threads, Intel Xeon). (Deferring the
        GEMMs too, as 0.3.x did for wider heads, kept every layer's hidden states until then and measured no
        faster with the width-32 heads.)"""
        if (
            cache.prefilling
            and type(cache.scorer) is RetainingHeadScorer
            and folds_on_cpu(self.retaining_head, head_input)
        ):
            head = self.retaining_head
            return FoldedHeadScores(head, head.folded_fc1(head_input.hidden_states, self.qkv_linears()))
        seen = cache.layers[self.layer_idx].seen
        positions = torch.arange(seen, seen + key.shape[-2], device=key.device)
        return cache.scorer.score_new(self, head_input, query, key, positions)

    def attention_kwargs(self) -> dict:
        """Extra arguments of the attention function: the layer's window (None: global attention)."""
        return {"sliding_window": getattr(self, "sliding_window", None)}

    def forward(
        self, hidden_states, position_embeddings=None, attention_mask=None, past_key_values=None, **kwargs
    ):
        past_key_values = kwargs.pop(CACHE_KWARG, past_key_values)  # named ``cache`` from transformers 5.24
        cache = past_key_values if isinstance(past_key_values, LocretCache) else None
        if cache is None and self.score_sink is None:
            return super().forward(
                hidden_states,
                position_embeddings=position_embeddings,
                attention_mask=attention_mask,
                **{CACHE_KWARG: past_key_values},
                **kwargs,
            )
        batch, length = hidden_states.shape[:2]
        head_input = HeadInput(hidden_states, self.projections(hidden_states))
        query, key, value = self.split_heads(*head_input.projections)
        if self.score_sink is not None:
            self.score_sink.append(self.retaining_head(head_input.features()))
        if cache is not None:
            with profiled(SCORE_EVENT):
                scores = self.chunk_scores(cache, head_input, query, key)
            key, value = cache.layers[self.layer_idx].update(key, value, scores=scores)
            query, key = self._rotate_with_cache(query, key, cache)
            layer = cache.layers[self.layer_idx]
            held = layer.held_entries()
            if cache.config.budget_allocation != "uniform":
                # Each layer has its own slots (heads of different lengths; a profile's layers are first
                # evicted at different chunks) and the model's mask is layer 0's; without padded batches
                # (refused) that mask is only causal, which is built here over this layer's slots.
                self._check_global_attention()
                pads = layer.head_pads
                if pads is None:
                    pads = torch.zeros(batch, key.shape[1], dtype=torch.long, device=key.device)
                if attends_heads_apart(self.config._attn_implementation, pads):
                    causal = (
                        None
                        if length == 1
                        else cache.causal_mask(length, key.shape[-2], query.dtype, query.device)
                    )
                    output = self._attend_heads_apart(query, key, value, pads[0], causal, **kwargs)
                    return self._finish(cache, output, query, key, batch, length), None
                if held is None:
                    held = torch.ones(batch, 1, key.shape[-2], dtype=torch.bool, device=key.device)
                attention_mask = None
            if held is not None:
                attention_mask = mask_pads(attention_mask, held, length, query.shape[1])
        else:
            cos, sin = position_embeddings
            query, key = (
                apply_rope(query, cos[:, None], sin[:, None]),
                apply_rope(key, cos[:, None], sin[:, None]),
            )
            if past_key_values is not None:
                key, value = past_key_values.update(key, value, self.layer_idx)
        implementation = self.config._attn_implementation
        if cache is not None and uses_grouped_sdpa(implementation, query):
            interface = grouped_sdpa_attention
        else:
            interface = ALL_ATTENTION_FUNCTIONS.get_interface(implementation, self.eager_attention)
        output, weights = interface(
            self,
            query,
            key,
            value,
            attention_mask,
            dropout=0.0 if not self.training else self.attention_dropout,
            scaling=self.scaling,
            **self.attention_kwargs(),
            **kwargs,
        )
        if cache is not None:
            return self._finish(cache, output, query, key, batch, length), weights
        return self.o_proj(output.reshape(batch, length, -1).contiguous()), weights

    def _finish(self, cache: LocretCache, output, query, key, batch: int, length: int) -> torch.Tensor:
        """The scorer's look at the attention, the eviction, then the output projection."""
        with profiled(EVICT_EVENT):
            cache.scorer.after_attention(cache.layers[self.layer_idx], query, key, self.scaling)
            cache.evict(self.layer_idx)
        return self.o_proj(output.reshape(batch, length, -1).contiguous())

    def _attend_heads_apart(
        self, query, key, value, pads: torch.Tensor, causal: torch.Tensor | None, **kwargs
    ) -> torch.Tensor:
        """SDPA for one sequence whose KV heads hold different numbers of entries (``budget_allocation``
        "adaptive" / "profile", left pads ``pads`` ``[Hkv]``): each KV head with its group of query heads over
        its own entries only, output ``[1, T, H, D]``; ``causal`` (``LocretCache.causal_mask``, None for one
        new token) over all the layer's slots, of which a head that starts at slot p sees columns p onwards.
        Why: in one call over the padded slots the pads and a per-query-head mask cost SmolLM2's 4K profile
        about half a chunk's prefill time more."""
        group = query.shape[1] // key.shape[1]
        interface = ALL_ATTENTION_FUNCTIONS["sdpa"]
        outputs = []
        for head, pad in enumerate(pads.tolist()):
            output, _ = interface(
                self,
                query[:, head * group : (head + 1) * group],
                key[:, head : head + 1, pad:],
                value[:, head : head + 1, pad:],
                None if causal is None else causal[None, None, :, pad:],
                dropout=0.0 if not self.training else self.attention_dropout,
                scaling=self.scaling,
                **kwargs,
            )
            outputs.append(output)
        return torch.cat(outputs, dim=2)

    def _check_global_attention(self) -> None:
        """A per-head allocation replaces the model's mask by a causal one, so a sliding window is refused."""
        if self.attention_kwargs().get("sliding_window") is not None:
            raise ValueError(
                "budget_allocation 'adaptive' and 'profile' need global attention in every layer; this layer "
                "has a sliding window (use budget_allocation='uniform')"
            )

    def _rotate_with_cache(self, query: torch.Tensor, key: torch.Tensor, cache: LocretCache):
        """RoPE for the new queries and all stored keys, by the cache's position mode."""
        layer = cache.layers[self.layer_idx]
        new, stored = query.shape[-2], key.shape[-2]
        if cache.config.position_mode == "repacked":
            cos, sin = self.locret_rope.table(stored, query.dtype, query.device)
            if layer.real_lengths is None:
                return apply_rope(query, cos[-new:], sin[-new:]), apply_rope(key, cos, sin)
            # a padded batch: each row counts only its own entries
            slots = torch.arange(stored, device=query.device)[None, :] - layer.pad_counts()[:, None]
            cos, sin = cos[slots.clamp(min=0)][:, None], sin[slots.clamp(min=0)][:, None]
            return apply_rope(query, cos[..., -new:, :], sin[..., -new:, :]), apply_rope(key, cos, sin)
        cos, sin = self.locret_rope.table(layer.seen, query.dtype, query.device)
        if layer.real_lengths is None:
            query_cos, query_sin = cos[-new:], sin[-new:]
        else:  # a padded batch: each row's own positions
            rows = (
                torch.arange(layer.seen - new, layer.seen, device=query.device)[None, :]
                - layer.shifts[:, None]
            )
            query_cos, query_sin = cos[rows.clamp(min=0)][:, None], sin[rows.clamp(min=0)][:, None]
        return (
            apply_rope(query, query_cos, query_sin),
            apply_rope(key, cos[layer.positions], sin[layer.positions]),
        )


def attends_heads_apart(attn_implementation: str | None, head_pads: torch.Tensor) -> bool:
    """Whether a layer with per-head pads ``[B, Hkv]`` attends one KV head at a time
    (``_attend_heads_apart``): SDPA and one sequence; other attention functions and batches use the padded
    slots with ``mask_pads``."""
    return attn_implementation == "sdpa" and head_pads.shape[0] == 1


def mask_pads(
    attention_mask: torch.Tensor | None, held: torch.Tensor, new: int, query_heads: int
) -> torch.Tensor:
    """The model's mask with the pad slots masked (``LocretLayer.held_entries`` ``held`` ``[B, 1 or Hkv, S]``:
    a padded batch's rows, an adaptive allocation's KV heads, each for its group of ``query_heads``); without
    a mask, the causal mask of the ``new`` tokens over the stored entries as ``LocretLayer.get_mask_sizes``
    describes."""
    if held.shape[1] > 1:
        held = held.repeat_interleave(query_heads // held.shape[1], dim=1)
    real = held[:, :, None, :]  # [B, 1 or H, 1, S]
    if attention_mask is None:
        stored = real.shape[-1]
        slots = torch.arange(stored, device=real.device)
        causal = slots[None, :] <= torch.arange(stored - new, stored, device=real.device)[:, None]
        return real & causal
    if attention_mask.dtype == torch.bool:
        return attention_mask[..., :, : real.shape[-1]] & real
    return attention_mask[..., :, : real.shape[-1]].masked_fill(~real, torch.finfo(attention_mask.dtype).min)


class LocretForCausalLMMixin:
    """Adds retaining heads to a transformers causal LM and Locret-aware ``generate``.

    Subclasses set ``locret_attention_class`` (the architecture's attention subclass) and ``config_class`` (the
    family's config with ``model_type = "locret_<base type>"`` and a ``retaining_head_size``).
    """

    locret_attention_class: type
    _keys_to_ignore_on_load_missing = [r"retaining_head"]
    _keep_in_fp32_modules_strict = ["retaining_head"]  # a bf16/fp16 load keeps the heads as trained

    def __init__(self, config) -> None:
        super().__init__(config)
        self.install_retaining_heads()

    def install_retaining_heads(self) -> None:
        """Turn every decoder layer's attention into the Locret subclass and give it a fresh float32 head."""
        shape = HeadShape.from_config(self.config)
        first = next(self.parameters())
        for layer in self.model.layers:
            attention = layer.self_attn
            attention.__class__ = self.locret_attention_class
            head = RetainingHead(shape.in_features, shape.hidden_size, shape.num_kv_heads, shape.hidden_act)
            head.reset_parameters(self.config.initializer_range)
            attention.retaining_head = head.to(device=first.device, dtype=torch.float32)
        self.install_rope()

    def rope_layer_type(self, layer_idx: int) -> str | None:
        """Which of the rotary module's frequency sets a layer uses; None: its only one (see ``RopeTable``)."""
        return None

    def install_rope(self) -> None:
        """Give every layer the cos/sin table of its own rotary frequencies (again after ``rotary_emb`` was
        rebuilt, e.g. after ``to_empty``); layers with the same frequencies share one table."""
        tables: dict[str | None, RopeTable] = {}
        for index, layer in enumerate(self.model.layers):
            kind = self.rope_layer_type(index)
            if kind not in tables:
                tables[kind] = RopeTable(self.model.rotary_emb, self.config, kind)
            layer.self_attn.locret_rope = tables[kind]

    @property
    def retaining_heads(self) -> list[RetainingHead]:
        return [layer.self_attn.retaining_head for layer in self.model.layers]

    def save_pretrained(self, save_directory, *args, **kwargs):
        """transformers' ``save_pretrained``, with the heads' recommended settings and scorer
        (``locret_inference_config``, ``locret_scorer_choice``) written into ``config.json`` as
        ``locret_inference`` and ``locret_scorer``, so that ``locret.from_pretrained`` of the checkpoint runs
        as this model does (an adapter carries them in its own JSON)."""
        from ..adapter import inference_dict  # the adapter module reads models' configs, not the reverse

        choice = getattr(self, "locret_scorer_choice", None)
        self.config.locret_inference = inference_dict(getattr(self, "locret_inference_config", None))
        self.config.locret_scorer = None if choice is None else choice.to_dict()
        return super().save_pretrained(save_directory, *args, **kwargs)

    @property
    def head_shape(self) -> HeadShape:
        return HeadShape.from_config(self.config)

    def generate(
        self,
        inputs=None,
        generation_config=None,
        locret_config: LocretConfig | None = None,
        static_decode: StaticDecode = None,
        **kwargs,
    ):
        """``transformers`` ``generate``, with Locret's chunked evicting prefill; decoding then uses
        transformers' own loop (sampling, beam search, ``num_return_sequences``, streamers, stopping
        criteria all work).

        The settings: ``locret_config``, else those of a ``LocretCache`` passed as ``past_key_values``, else
        the ones the heads recommend (``locret_inference_config``, from their adapter). With none of these it
        is transformers' plain ``generate`` (full cache). The prompt is prefilled once; the cache is then
        repeated for every beam or returned sequence, as transformers repeats the inputs. ``static_decode`` is
        ``locret.generate``'s: batch-1 steps of one token run on ``locret.static_decode``'s buffers
        (``GenerateSteps``) where supported."""
        cache = kwargs.pop("past_key_values", None)  # transformers 5.24 renamed it ``cache``
        cache = kwargs.pop("cache", None) if cache is None else cache
        if locret_config is None and not isinstance(cache, LocretCache):
            if cache is not None:
                kwargs[CACHE_KWARG] = cache
            locret_config = getattr(self, "locret_inference_config", None)
            if locret_config is None:
                return super().generate(inputs, generation_config, **kwargs)
        locret_config = resolve_config(self, locret_config, cache if isinstance(cache, LocretCache) else None)
        input_ids = inputs if inputs is not None else kwargs.pop("input_ids", None)
        cache = prefill_prompt(
            self, input_ids, locret_config, cache=cache, attention_mask=kwargs.get("attention_mask")
        )
        settings = generation_config if generation_config is not None else self.generation_config
        expand = max(
            kwargs.get("num_beams", settings.num_beams) or 1,
            kwargs.get("num_return_sequences", settings.num_return_sequences) or 1,
        )
        if expand > 1:
            cache.batch_repeat_interleave(expand)  # transformers repeats input_ids, not a given cache
        kwargs[CACHE_KWARG] = cache
        max_new = kwargs.get("max_new_tokens", settings.max_new_tokens)
        if max_new is None:
            max_new = kwargs.get("max_length", settings.max_length) - input_ids.shape[1]
        cache.static_steps = GenerateSteps(self, cache, max_new - 1, static_decode)
        try:
            return super().generate(input_ids, generation_config, **kwargs)
        finally:
            cache.static_steps.finish()
            cache.static_steps = None

    def __call__(self, *args, **kwargs):
        """The model's call, except for the one-token steps ``generate`` runs on static buffers (``__call__``,
        not ``forward``: transformers checks generate's arguments against ``forward``'s signature)."""
        steps = getattr(kwargs.get(CACHE_KWARG, kwargs.get("past_key_values")), "static_steps", None)
        if steps is not None:
            output = steps.forward(kwargs.get("input_ids", args[0] if args else None), kwargs)
            if output is not None:
                return output
        return super().__call__(*args, **kwargs)

    def prepare_inputs_for_generation(self, *args, **kwargs):
        """transformers' inputs, but without the 2-D mask and the position ids (both from the attention mask)
        when the cache holds a padded batch: they count tokens seen, not entries kept; the cache masks each
        row's own pad entries and the attention gives each row its own positions."""
        inputs = super().prepare_inputs_for_generation(*args, **kwargs)
        cache = inputs.get(CACHE_KWARG)
        if isinstance(cache, LocretCache) and cache.layers[0].real_lengths is not None:
            inputs["attention_mask"] = inputs["position_ids"] = None
        return inputs


@contextmanager
def collecting_scores(model) -> Iterator[list[list[torch.Tensor]]]:
    """Record every layer's retaining-head scores ``[B, T, Hkv]`` during the forwards run inside the block.

    Yields one list per layer. Used for training: the scores keep their autograd graph, the backbone
    (frozen) does not need one.
    """
    attentions = [layer.self_attn for layer in model.model.layers]
    sinks: list[list[torch.Tensor]] = [[] for _ in attentions]
    for attention, sink in zip(attentions, sinks, strict=True):
        attention.score_sink = sink
    try:
        yield sinks
    finally:
        for attention in attentions:
            attention.score_sink = None
